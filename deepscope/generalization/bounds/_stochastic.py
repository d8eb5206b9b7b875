"""The stochastic predictor certified by a PAC-Bayes bound: a diagonal Gaussian over the weights.

Each prediction draws weights ``w = μ + σ ⊙ ε`` (ε ~ N(0, I)) and runs the network with them
(``torch.func.functional_call`` on a private deep copy of the model, so the caller's module is
never used or changed). Inputs may be a tensor, integer token ids or a dict of tensors
(:mod:`deepscope._inputs`); ``output_fn`` picks the scores from a model returning a dict or tuple.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from deepscope import _inputs
from deepscope._outputs import OutputFn, check_output_fn, select_output
from deepscope._validation import check_int
from deepscope.errors import DataError, invalid_parameter
from deepscope.results import Result

__all__ = ["GaussianPosterior", "StochasticError"]


@dataclasses.dataclass(frozen=True)
class StochasticError(Result):
    """Monte-Carlo estimate of the 0-1 error of the stochastic predictor on some data.

    Attributes:
        error: mean over weight samples of the error on all examples.
        standard_error: standard error of that mean over the weight samples.
        samples: weight samples drawn; n: examples; forward_passes: samples × n.
    """

    error: float
    standard_error: float
    samples: int
    n: int
    forward_passes: int


def _rows_at(x: _inputs.Inputs, index: int) -> _inputs.Inputs:
    """Example ``index`` without its batch dimension (what ``vmap`` hands a per-example function)."""
    return {k: v[index] for k, v in x.items()} if _inputs.is_mapping(x) else x[index]  # type: ignore[union-attr,index]


class GaussianPosterior:
    """A diagonal Gaussian over the parameters of ``model``: the certified stochastic predictor.

    Args:
        model: the network (a deep copy is kept; it is run in eval mode).
        mean: parameter means by name.
        std: parameter standard deviations by name (same shapes).
        buffers: buffers used in every forward pass (BatchNorm statistics).
        output_fn: picks the scores from the model's output (a dict, tuple, ``ModelOutput``); None: the output.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> q = GaussianPosterior(net, dict(net.named_parameters()), {k: torch.full_like(v, 0.01) for k, v in net.named_parameters()})
        >>> sorted(q.sample())
        ['bias', 'weight']
    """

    def __init__(
        self,
        model: nn.Module,
        mean: dict[str, torch.Tensor],
        std: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor] | None = None,
        output_fn: OutputFn | None = None,
    ) -> None:
        import copy

        check_output_fn(output_fn, "GaussianPosterior")
        self.output_fn = output_fn

        self.model = copy.deepcopy(model).eval()
        for hooks in ("_forward_hooks", "_forward_pre_hooks"):
            for module in self.model.modules():
                getattr(module, hooks).clear()  # the caller's hooks stay on the caller's model
        self.mean = {k: v.detach().clone() for k, v in mean.items()}
        self.std = {k: v.detach().clone() for k, v in std.items()}
        self.buffers = {k: v.detach().clone() for k, v in (buffers or {}).items()}

    def __repr__(self) -> str:
        count = sum(v.numel() for v in self.mean.values())
        mean_std = sum(float(v.sum()) for v in self.std.values()) / max(count, 1)
        return f"GaussianPosterior({count} parameters, mean std {mean_std:.3g})"

    def sample(self, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One draw of the weights ``μ + σ ⊙ ε``."""
        drawn = {}
        for name, mu in self.mean.items():
            noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
            drawn[name] = mu + self.std[name] * noise
        return drawn

    def forward(self, params: dict[str, torch.Tensor], x: _inputs.Inputs) -> torch.Tensor:
        """The network's scores with the given weights (``model(**x)`` for named inputs; ``output_fn`` applied)."""
        state = (params, self.buffers)
        if _inputs.is_mapping(x):
            output = torch.func.functional_call(self.model, state, (), dict(x), strict=False)
        else:
            output = torch.func.functional_call(self.model, state, (x,), strict=False)
        return select_output(output, self.output_fn, "GaussianPosterior")

    def predict(self, x: _inputs.Inputs, generator: torch.Generator | None = None) -> torch.Tensor:
        """Class predictions of one weight sample, ``(batch,)``."""
        with torch.no_grad():
            return self.forward(self.sample(generator), x).argmax(dim=-1)

    def errors_per_sample(
        self, x: _inputs.Inputs, y: torch.Tensor, samples: int, generator: torch.Generator, batch_size: int = 4096
    ) -> torch.Tensor:
        """The 0-1 error on ``(x, y)`` of each of ``samples`` weight draws, ``(samples,)``."""
        errors = torch.empty(samples, dtype=torch.float64)
        with torch.no_grad():
            for s in range(samples):
                params = self.sample(generator)
                wrong = 0
                for start in range(0, len(y), batch_size):
                    out = self.forward(params, _inputs.slice_rows(x, start, start + batch_size))
                    wrong += int((out.argmax(dim=-1) != y[start : start + batch_size]).sum())
                errors[s] = wrong / len(y)
        return errors

    def errors_per_example_draws(
        self, x: _inputs.Inputs, y: torch.Tensor, passes: int, generator: torch.Generator, max_floats: int = 4_000_000
    ) -> tuple[int, int]:
        """``(errors, draws)``: every example classified by its own weight draw, ``passes`` times.

        The ``n · passes`` indicators are independent with mean exactly the stochastic empirical
        risk, so a Chernoff-kl bound applies with ``draws = n · passes`` (Hoeffding 1963), far
        tighter than one network draw per pass. Draws are vectorised with ``torch.func.vmap`` (a model
        vmap cannot trace, e.g. one whose forward branches on an attention mask's values, is run one
        example at a time on the same draws); ``max_floats`` bounds the memory of the per-example weights of one chunk.
        """
        count = sum(v.numel() for v in self.mean.values())
        chunk = max(1, min(len(y), max_floats // max(count, 1)))

        def single(params, example):
            one = {k: v[None] for k, v in example.items()} if _inputs.is_mapping(example) else example[None]
            return self.forward(params, one).squeeze(0)

        vectorised = torch.func.vmap(single)
        looped = [False]  # set once vmap refuses the model (data-dependent control flow, as HF attention masks)

        def batched(params, xs):
            if not looped[0]:
                try:
                    return vectorised(params, xs)
                except RuntimeError as error:
                    if "vmap" not in str(error):
                        raise
                    looped[0] = True
            # the same draws, one example at a time: same indicators, slower
            return torch.stack(
                [
                    single({k: v[i] for k, v in params.items()}, _rows_at(xs, i))
                    for i in range(len(next(iter(params.values()))))
                ]
            )

        errors = 0
        with torch.no_grad():
            for _ in range(passes):
                for start in range(0, len(y), chunk):
                    xs = _inputs.slice_rows(x, start, start + chunk)
                    size = len(y[start : start + chunk])
                    params = {}
                    for name, mu in self.mean.items():
                        noise = torch.randn((size, *mu.shape), generator=generator, dtype=mu.dtype).to(mu.device)
                        params[name] = mu + self.std[name] * noise
                    errors += int((batched(params, xs).argmax(dim=-1) != y[start : start + chunk]).sum())
        return errors, passes * len(y)

    def stochastic_error(self, data: Any, samples: int = 100, seed: int = 0) -> StochasticError:
        """Monte-Carlo 0-1 error of the stochastic predictor on ``data = (X, y)``.

        Args:
            data: a pair ``X: (n, *features)`` (a tensor, token ids or a dict of tensors), ``y: (n,)`` integer labels.
            samples: weight samples (each evaluated on all of ``data``).
            seed: seed of the weight samples.
        """
        samples = check_int(samples, "samples", "GaussianPosterior.stochastic_error", minimum=1)
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise invalid_parameter("data", "GaussianPosterior.stochastic_error", "a pair (X, y) of tensors", data)
        x = data[0] if _inputs.is_mapping(data[0]) else torch.as_tensor(data[0])
        y = torch.as_tensor(data[1])
        n = _inputs.batch_length(x)
        if n == 0 or n != len(y):
            raise DataError(f"stochastic_error needs as many labels as inputs, at least one. Got {n} and {len(y)}.")
        first = next(iter(self.mean.values()))
        x, y = _inputs.move(x, first.device, first.dtype, copy=False), y.to(first.device).long()
        generator = torch.Generator(device="cpu").manual_seed(seed)
        errors = self.errors_per_sample(x, y, samples, generator)
        spread = float(errors.std()) / math.sqrt(samples) if samples > 1 else math.nan
        return StochasticError(float(errors.mean()), spread, samples, n, samples * n)
