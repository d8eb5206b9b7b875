"""Measures and spectral metrics on tiny HuggingFace models with their DEFAULT (fused sdpa) attention.

Oracles: the eager-attention copy of the same model (same weights: forward-mode and per-example
gradient measures must agree to float32 rounding, 1e-4 relative over a jvp or a 16-example sum);
the tied GPT-2 weight counted once by hand (unique parameters, Frobenius norms of the 2-D weights
computed directly); a hand-tied Linear network against the same network without its duplicate.
"""

from __future__ import annotations

import math

import hf_models
import pytest
import torch
from torch import nn

from deepscope import Problem
from deepscope.generalization import measures, spectral_metrics
from deepscope.generalization._measures._context import build_context
from deepscope.generalization._measures.fisher_rao import fisher_rao_norm, gradient_noise

pytest.importorskip("transformers")

_SMALL = {"max_samples": 12, "sharpness_samples": 2, "bisection_steps": 2}


def _bert():
    model = hf_models.tiny_bert()
    x, y = hf_models.token_batch(12)
    return model, x, y, (lambda out: out.logits)


def _gpt2_lm():
    model = hf_models.tiny_gpt2_lm()
    x, _ = hf_models.token_batch(12)
    y = torch.randint(0, hf_models.VOCAB, (12,), generator=torch.Generator().manual_seed(1))
    return model, x, y, (lambda out: out.logits[:, -1])  # next-token scores after the last position


def _vit():
    model = hf_models.tiny_vit()
    x, y = hf_models.image_batch(12)
    return model, x, y, (lambda out: out.logits)


def _problem(model, x, y, select, init=True):
    state = {k: v.clone() * 0.9 for k, v in model.state_dict().items()} if init else None
    return Problem(model, (x, y), output_fn=select, init_state=state)


_ALL_BUT_SHARPNESS = ("norm", "margin", "gradient", "spectral")


@pytest.mark.parametrize("build", [_bert, _gpt2_lm, _vit], ids=["bert", "gpt2_lm_tied", "vit"])
def test_every_family_runs_with_default_attention(build):
    _every_family(build, _ALL_BUT_SHARPNESS)  # sharpness: the token test below (BERT) and the slow one


@pytest.mark.slow
@pytest.mark.parametrize("build", [_gpt2_lm, _vit], ids=["gpt2_lm_tied", "vit"])
def test_every_family_with_sharpness_runs_with_default_attention(build):
    _every_family(build, ("norm", "margin", "sharpness", "gradient", "spectral"))


def _every_family(build, families):
    model, x, y, select = build()
    assert model.config._attn_implementation == "sdpa"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = measures(_problem(model, x, y, select), families=families, **_SMALL)
    assert set(result.family_seconds) == set(families)
    assert result.declined == {}
    finite = {row["name"] for row in result.rows() if math.isfinite(row["value"])}
    for name in ("parameter_norm", "l2_distance", "fisher_rao_norm", "gradient_noise"):
        assert name in finite
    if "sharpness" in families:
        assert "pac_bayes_sigma" in finite
    assert "math kernel" in result.note  # the jvp ran on the math attention kernel
    assert all(row["forward_passes"] is not None for row in result.rows())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    spectra = spectral_metrics(model, min_eigenvalues=4)
    assert all(layer.num_eigenvalues > 0 for layer in spectra.layers)


def test_token_ids_stay_integers_and_sharpness_perturbs_parameters_only():
    model, x, y, select = _bert()
    ctx = build_context(_problem(model, x, y, select), max_samples=None, seed=0)
    assert ctx.x["input_ids"].dtype == torch.int64 and torch.equal(ctx.x["input_ids"], x["input_ids"])
    result = measures(_problem(model, x, y, select), families=("sharpness",), **_SMALL)
    assert result.value("pac_bayes_sigma") > 0
    norms = measures(_problem(model, x, y, select), families=("norm",))
    path = next(m for m in norms.measures if m.name == "path_norm")
    assert math.isnan(path.value) and "float tensor inputs" in path.note


@pytest.mark.parametrize("build", [_bert, _gpt2_lm, _vit], ids=["bert", "gpt2_lm_tied", "vit"])
def test_derivative_measures_equal_the_eager_attention_copy(build):
    model, x, y, select = build()
    fused = build_context(_problem(model, x, y, select), max_samples=None, seed=0)
    eager = build_context(_problem(hf_models.eager_copy(model), x, y, select), max_samples=None, seed=0)
    assert fisher_rao_norm(fused) == pytest.approx(fisher_rao_norm(eager), rel=1e-4)
    assert gradient_noise(fused)[0] == pytest.approx(gradient_noise(eager)[0], rel=1e-4)
    assert fused.cache.get("math_attention") and not eager.cache.get("math_attention")


def test_gpt2_tied_embedding_is_counted_once_by_hand():
    model, x, y, select = _gpt2_lm()
    problem = _problem(model, x, y, select)
    result = measures(problem, families=("norm",))
    unique = list(model.parameters())  # parameters() yields a tied tensor once
    assert result.value("parameter_count") == sum(p.numel() for p in unique)
    assert result.value("parameter_count") < sum(v.numel() for k, v in model.state_dict().items())  # twice there
    assert result.value("parameter_norm") == pytest.approx(sum(float(p.detach().double().pow(2).sum()) for p in unique))
    init = problem.init_state
    distance = sum(float((p.detach().double() - init[n].double()).pow(2).sum()) for n, p in model.named_parameters())
    assert result.value("l2_distance") == pytest.approx(distance)
    assert "lm_head.weight is transformer.wte.weight" in result.note
    # the 2-D weights the norm measures see: 8 Conv1D (transposed Linear) + the tied lm_head, once
    matrices = [m.weight for m in model.modules() if type(m).__name__ == "Conv1D"] + [model.lm_head.weight]
    by_hand = sum(math.log(float(w.detach().double().pow(2).sum())) for w in matrices)
    assert result.value("log_product_frobenius") == pytest.approx(by_hand, rel=1e-9)
    spectra = spectral_metrics(model, min_eigenvalues=4)
    assert [layer.name for layer in spectra.layers][-1] == "lm_head" and len(spectra.layers) == len(matrices)


class _Tied(nn.Module):
    """a → ReLU → b (b.weight IS a.weight) → ReLU → c; ``untied`` drops b's weight from the count."""

    def __init__(self, tie: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)
        if tie:
            self.b.weight = self.a.weight

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def test_a_tied_linear_weight_is_one_parameter_and_one_layer():
    x, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    model = _Tied().eval()
    result = measures(Problem(model, (x, y)), families=("norm", "spectral"))
    # by hand: a's weight (once), the three biases and c's weight
    count = 36 + 6 + 6 + 18 + 3
    assert result.value("parameter_count") == count == sum(p.numel() for p in model.parameters())
    layers = [model.a.weight, model.c.weight]  # b is a's weight again: not a second layer
    by_hand = sum(math.log(float(w.detach().double().pow(2).sum())) for w in layers)
    assert result.value("log_product_frobenius") == pytest.approx(by_hand, rel=1e-9)
    assert "b.weight is a.weight" in result.note
    spectra = spectral_metrics(model, min_eigenvalues=2)
    assert [layer.name for layer in spectra.layers] == ["a", "c"]
    untied = _Tied(tie=False)  # the same weights, b with its own matrix: three layers
    assert [layer.name for layer in spectral_metrics(untied, min_eigenvalues=2).layers] == ["a", "b", "c"]
    assert spectra.layers[0] == spectral_metrics(untied, min_eigenvalues=2).layers[0]


class _Wrapped(nn.Module):
    """The issue's wrapper: ``m`` is GPT-2 with its tied head, forward returns next-token logits."""

    def __init__(self) -> None:
        super().__init__()
        self.m = hf_models.tiny_gpt2_lm()

    def forward(self, input_ids, attention_mask):
        return self.m(input_ids=input_ids, attention_mask=attention_mask).logits[:, -1]


def test_the_reported_wrapper_keyerror_is_gone():
    """Issue 12: ``KeyError: 'm.lm_head.weight'`` (the state_dict name of the tied weight, which
    named_parameters() lists once as m.transformer.wte.weight)."""
    model = _Wrapped().eval()
    x, _ = hf_models.token_batch(8)
    y = torch.randint(0, hf_models.VOCAB, (8,), generator=torch.Generator().manual_seed(2))
    result = measures(Problem(model, (x, y)), families=("norm", "margin", "gradient", "spectral"))
    assert "m.lm_head.weight is m.transformer.wte.weight" in result.note
    assert result.value("parameter_count") == sum(p.numel() for p in model.parameters())
    assert math.isfinite(result.value("fisher_rao_norm"))
