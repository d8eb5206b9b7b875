"""Every registered analysis that takes a Problem honours ``output_fn`` and token / dict inputs (issue 12, item 1).

The list is read from the registry at run time, so an analysis added later is covered without
editing this file. Each runs (with its ``example_kwargs``, the same seed) on one small network
seen through several wrappers that compute the same function:

* ``plain``: a float tensor in, the logits out: the reference;
* ``dict_out``: the same network returning ``{"logits": ..., "features": ...}``, read through
  ``Problem(..., output_fn=lambda out: out["logits"])``;
* ``dict_in``: the same network called as ``model(x=..., mask=...)`` on a dict of inputs (the
  integer mask is all ones, so the function is unchanged), branching on the mask's values as
  HuggingFace models do (which ``torch.func.vmap`` cannot trace);
* ``ids`` / ``ids_dict_out``: integer token ids through an ``nn.Embedding`` (the ids' reference),
  and the same model returning a dict read through ``output_fn``.

The oracle is the reference wrapper: a wrapper whose outputs are the reference's must give the
reference's result (every number equal; the weights and the data are the same, so only the
floating-point order of the same operations could differ: 1e-6 relative), or refuse with a
DeepscopeError saying why. A raw TypeError / AttributeError / KeyError, or a different number,
fails. The reference itself must run. The whole file takes about 10 s (every analysis with its
small ``example_kwargs``), so nothing is marked slow.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from deepscope.errors import DeepscopeError
from deepscope.problem import Problem
from deepscope.registry import load_all_analyses

ANALYSES = load_all_analyses()
PROBLEM_ANALYSES = sorted(name for name, spec in ANALYSES.items() if spec.takes == "problem")
LOGITS = lambda out: out["logits"]  # noqa: E731
TIMING = ("seconds", "wall", "time", "elapsed")  # fields that measure the clock, not the model


class Net(nn.Module):
    """6 features -> 3 classes; ``x * mask`` when a mask is given (ones: the same function)."""

    def __init__(self, dict_out: bool = False):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
        self.dict_out = dict_out

    def forward(self, x, mask=None):
        if mask is not None and bool((mask == 0).all()):  # branches on a mask's values, as HF models do:
            x = x * 0  # torch.func.vmap cannot trace this, so analyses that vectorise must fall back
        logits = self.net(x if mask is None else x * mask)
        return {"logits": logits, "features": torch.relu(logits)} if self.dict_out else logits


class Tokens(nn.Module):
    """Integer ids (batch, 5) -> embedding (vocabulary 7, width 4) -> mean over tokens -> 3 classes."""

    def __init__(self, dict_out: bool = False):
        super().__init__()
        self.embed = nn.Embedding(7, 4)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        self.dict_out = dict_out

    def forward(self, ids):
        logits = self.net(self.embed(ids).mean(dim=1))
        return {"logits": logits} if self.dict_out else logits


def _data(kind: str):
    generator = torch.Generator().manual_seed(0)
    if kind.startswith("ids"):
        x = torch.randint(0, 7, (48, 5), generator=generator)
        y = (x[:, 0] % 3).long()
    else:
        x = torch.randn(48, 6, generator=generator)
        y = ((x[:, 0] > 0).long() + (x[:, 1] > 1).long()).long()
    if kind == "dict_in":
        x = {"x": x, "mask": torch.ones(48, 6, dtype=torch.long)}
    return x, y


def _problem(kind: str) -> Problem:
    torch.manual_seed(1)
    model = (Tokens if kind.startswith("ids") else Net)(dict_out=kind.endswith("dict_out"))
    torch.manual_seed(2)
    init = (Tokens if kind.startswith("ids") else Net)().state_dict()
    x, y = _data(kind)

    def part(start, stop):
        if isinstance(x, dict):
            return {name: value[start:stop] for name, value in x.items()}
        return x[start:stop]

    return Problem(
        model,
        (part(0, 32), y[:32]),
        (part(32, 48), y[32:]),
        init_state=init,
        batch_size=16,
        output_fn=LOGITS if kind.endswith("dict_out") else None,
    )


def _run(name: str, kind: str):
    spec = ANALYSES[name]
    problem = _problem(kind)
    torch.manual_seed(0)
    return spec.function(problem, **dict(spec.example_kwargs))


def _numbers(value, path=""):
    """``(path, number)`` pairs of every number in a result, timing fields and free text left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        for key, item in value.items():
            if not any(word in str(key) for word in TIMING):
                yield from _numbers(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{path}[{index}]")
    elif isinstance(value, torch.Tensor):
        for index, item in enumerate(value.detach().double().reshape(-1).tolist()):
            yield f"{path}[{index}]", item
    elif isinstance(value, (bool, int, float)) and not isinstance(value, str):
        yield path, float(value)
    elif hasattr(value, "tolist") and not isinstance(value, str):  # numpy arrays and scalars
        yield from _numbers(value.tolist(), path)


def _same(result, reference) -> None:
    got, want = dict(_numbers(result)), dict(_numbers(reference))
    assert got.keys() == want.keys(), sorted(set(got) ^ set(want))[:5]
    for path, expected in want.items():
        actual = got[path]
        if math.isnan(expected):
            assert math.isnan(actual), path
        else:
            # the same weights, data and operations: only summation order may differ
            assert actual == pytest.approx(expected, rel=1e-6, abs=1e-9), path


def test_every_problem_analysis_is_listed():
    # the parametrisation below is built from the registry: it cannot miss one
    assert {"pac_bayes_certificate", "learning_curve", "gradient_noise_scale"} <= set(PROBLEM_ANALYSES)


@pytest.mark.parametrize("name", PROBLEM_ANALYSES)
def test_float_inputs_dict_output_and_dict_inputs_match_the_plain_model(name):
    reference = _run(name, "plain")
    _same(_run(name, "dict_out"), reference)
    try:
        result = _run(name, "dict_in")
    except DeepscopeError as error:
        assert str(error).strip(), f"{name} refused dict inputs without saying why"
    else:
        _same(result, reference)


@pytest.mark.parametrize("name", PROBLEM_ANALYSES)
def test_token_ids_run_or_refuse_and_output_fn_changes_nothing(name):
    try:
        reference = _run(name, "ids")
    except DeepscopeError as error:
        # e.g. a path norm or input-space quantity that is not defined for integer ids: it must say so
        assert str(error).strip(), f"{name} refused token ids without saying why"
        with pytest.raises(type(error)):
            _run(name, "ids_dict_out")
        return
    _same(_run(name, "ids_dict_out"), reference)
