"""Curvature on HuggingFace models with their DEFAULT attention (sdpa), token/dict inputs and output_fn.

Oracles:
* the eager-attention copy of the same model (same weights; plain matmul/softmax attention): the
  same Hutch++ run with the same seed sees the same operator up to float64 rounding, so traces
  agree to relative 1e-7 (~8 orders above 1e-16 for ~30 products of ~1e4 operations each); each
  Lanczos run stops once its error bound is below ``tol·|λ|``, possibly one step apart, so the
  two top eigenvalues agree within 2·tol relative. Exception: HF's eager ViT attention computes its
  softmax in float32 (``softmax(..., dtype=torch.float32)``), so its products differ from the
  float64 math kernel by ~1e-7 relative, which Hutch++'s QR of the sketch can amplify: 1e-5 there;
* a dense Hessian of an attention block built by ``torch.func.hessian`` (forward-over-reverse
  through the eager model: no HessianOperator, no math kernel), whose ``eigvalsh``/trace the
  Lanczos and exact-trace results must match (Lanczos tol 1e-10 on the residual bound -> relative
  1e-7 is slack for the converged values);
* for tied parameters (GPT-2's ``lm_head.weight`` is ``transformer.wte.weight``), central finite
  differences of the gradient of the real module, perturbed in place (the tie moves both uses):
  error O(ε²) ≈ 1e-10 relative for ε = 1e-5 in float64, so relative 1e-5 is safe.

All in float64 so that the comparisons test the method, not float32 round-off.
"""

import copy

import hf_models
import pytest
import torch

from deepscope import Problem
from deepscope._attention import NOTE
from deepscope.curvature import (
    dense_hessian,
    gauss_newton_vector_product,
    hessian_by_layer,
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
    hessian_vector_product,
    loss_interpolation,
)
from deepscope.curvature.hvp import HessianOperator

F64 = torch.float64


def _logits(out):
    return out.logits


def _last_token(out):
    return out.logits[:, -1]


def _problems(model, data):
    """The Problem on the sdpa model and on its eager-attention copy."""
    assert model.config._attn_implementation == "sdpa"
    eager = hf_models.eager_copy(model)
    return Problem(model, data, output_fn=_logits), Problem(eager, data, output_fn=_logits)


def _token_model(builder):
    model = builder(dtype=F64, hidden=16, layers=1, init_range=0.3)
    return model, hf_models.token_batch(6, seq_len=6, seed=1)


def _vit_model(builder):
    return builder(dtype=F64, hidden=16, layers=1, init_range=0.3), hf_models.image_batch(4, seed=1)


# relative agreement of the sdpa and eager runs (see the module docstring)
AGREEMENT = {"bert": 1e-7, "gpt2": 1e-7, "vit": 1e-5}

CASES = {
    "bert": (hf_models.tiny_bert, _token_model),
    "gpt2": (hf_models.tiny_gpt2, _token_model),
    "vit": (hf_models.tiny_vit, _vit_model),
}


def _case(name):
    builder, make = CASES[name]
    model, (x, y) = make(builder)
    return model, ({"pixel_values": x} if name == "vit" else x, y)


@pytest.mark.parametrize("name", sorted(CASES))
def test_top_eigenvalues_and_trace_on_sdpa_equal_the_eager_copy(name):
    model, data = _case(name)
    sdpa, eager = _problems(model, data)
    got = hessian_eigenvalues(sdpa, tol=1e-6, max_iter=60)
    want = hessian_eigenvalues(eager, tol=1e-6, max_iter=60)
    assert got.converged and want.converged
    torch.testing.assert_close(
        torch.tensor(got.eigenvalues), torch.tensor(want.eigenvalues), rtol=2e-6 + AGREEMENT[name], atol=1e-10
    )
    assert max(abs(v) for v in got.eigenvalues) > 1e-2  # a non-trivial spectrum
    assert NOTE.split(" ran")[0].capitalize() in got.note and NOTE not in want.note.lower()
    trace_sdpa = hessian_trace(sdpa, max_hvps=24, seed=3)
    trace_eager = hessian_trace(eager, max_hvps=24, seed=3)
    assert trace_sdpa.trace == pytest.approx(trace_eager.trace, rel=AGREEMENT[name])
    assert "math kernel" in trace_sdpa.note and "math kernel" not in trace_eager.note


# the query and key weights of the first attention layer (GPT-2 keeps q, k, v in one c_attn matrix)
BLOCKS = {
    "bert": ("bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.0.attention.self.key.weight"),
    "gpt2": ("transformer.h.0.attn.c_attn.weight",),
    "vit": ("vit.layers.0.attention.q_proj.weight", "vit.layers.0.attention.k_proj.weight"),
}


def _dense_oracle(model, inputs, labels, names):
    """∇²L over the named block by torch.func.hessian through the EAGER copy (jacfwd of jacrev)."""
    eager = hf_models.eager_copy(model)
    base = {name: value.detach() for name, value in eager.named_parameters()}
    shapes = [base[name].shape for name in names]
    sizes = [shape.numel() for shape in shapes]

    def loss(flat):
        pieces = dict(zip(names, [p.reshape(s) for p, s in zip(flat.split(sizes), shapes)]))
        logits = torch.func.functional_call(eager, {**base, **pieces}, (), dict(inputs)).logits
        return torch.nn.functional.cross_entropy(logits, labels)

    flat = torch.cat([base[name].reshape(-1) for name in names])
    return torch.func.hessian(loss)(flat)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_attention_block_eigenvalues_and_trace_equal_a_dense_hessian(name):
    builder = CASES[name][0]
    model = builder(dtype=F64, hidden=8, layers=1, init_range=0.4)
    inputs, labels = hf_models.token_batch(4, seed=1) if name != "vit" else hf_models.image_batch(4, seed=1)
    inputs = inputs if name != "vit" else {"pixel_values": inputs}
    names = list(BLOCKS[name])
    oracle = _dense_oracle(model, inputs, labels, names)
    n = oracle.shape[0]
    assert n in (128, 192)
    want = torch.linalg.eigvalsh(oracle)
    problem = Problem(model, (inputs, labels), output_fn=_logits)
    top = hessian_eigenvalues(problem, k=3, tol=1e-10, parameter_names=names)
    rtol = 1e-7 + AGREEMENT[name]
    torch.testing.assert_close(torch.tensor(top.eigenvalues, dtype=F64), want.flip(0)[:3], rtol=rtol, atol=1e-10)
    assert float(want.abs().max()) > 1e-2 and "math kernel" in top.note
    # 2 × sketch >= n: hessian_trace takes the exact trace from n products with unit vectors
    trace = hessian_trace(problem, parameter_names=names, sketch_size=n // 2)
    assert trace.standard_error == 0.0
    assert trace.trace == pytest.approx(float(torch.trace(oracle)), rel=1e-9 + AGREEMENT[name], abs=1e-10)
    dense = dense_hessian(problem, parameter_names=names)
    torch.testing.assert_close(dense, oracle, rtol=1e-8 + AGREEMENT[name], atol=1e-11 + AGREEMENT[name])


def test_gauss_newton_and_forward_over_reverse_run_through_sdpa_as_through_eager():
    model, data = _case("bert")
    sdpa, eager = _problems(model, data)
    n = sum(p.numel() for p in model.parameters())
    vector = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=F64)
    for function, options in (
        (gauss_newton_vector_product, {}),  # forward-mode (jvp) through the model
        (hessian_vector_product, {"method": "forward_over_reverse"}),
    ):
        got, want = function(sdpa, vector, **options), function(eager, vector, **options)
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-11)
        assert float(want.norm()) > 1e-3
    # many products: only the first one watches for attention, the later ones must still use the math kernel
    for options in ({"method": "forward_over_reverse"}, {"kind": "gauss_newton"}):
        got_top = hessian_eigenvalues(sdpa, tol=1e-6, max_iter=20, **options)
        want_top = hessian_eigenvalues(eager, tol=1e-6, max_iter=20, **options)
        assert got_top.n_hvps > 2 and "math kernel" in got_top.note
        assert got_top.eigenvalues[0] == pytest.approx(want_top.eigenvalues[0], rel=2e-6)
    torch.testing.assert_close(
        hessian_vector_product(sdpa, vector, method="forward_over_reverse"),
        hessian_vector_product(sdpa, vector, method="double_backward"),
        rtol=1e-8,
        atol=1e-11,
    )


def test_density_by_layer_and_interpolation_run_on_token_problems():
    model, data = _case("gpt2")
    sdpa, eager = _problems(model, data)
    density = hessian_density(sdpa, n_vectors=1, n_steps=8)
    assert density.mean_eigenvalue == pytest.approx(hessian_density(eager, n_vectors=1, n_steps=8).mean_eigenvalue)
    assert "math kernel" in density.note
    layers = hessian_by_layer(sdpa, max_iter=6, max_hvps=6)
    assert "score" in layers.layers and len(layers.layers) == len(layers.traces)
    start = {name: torch.zeros_like(value) for name, value in sdpa.parameters().items()}
    line = loss_interpolation(sdpa, start=start, n_points=3)
    assert line.losses[-1] == pytest.approx(sdpa.evaluate().loss, rel=1e-9)


def test_a_shuffled_loader_of_dict_pairs_is_drawn_once():
    model, (inputs, labels) = _case("bert")
    pairs = [({name: value[i] for name, value in inputs.items()}, labels[i]) for i in range(len(labels))]
    loader = torch.utils.data.DataLoader(pairs, batch_size=2, shuffle=True)
    problem = Problem(model, loader, output_fn=_logits)
    operator = HessianOperator.from_problem(problem, max_samples=4)
    vector = torch.ones(operator.n_params, dtype=F64)
    torch.testing.assert_close(operator.matvec(vector), operator.matvec(vector), rtol=0, atol=0)


def _tied_gradient(model, inputs, labels):
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(_last_token(model(**inputs)), labels)
    (gradient,) = torch.autograd.grad(loss, [model.transformer.wte.weight])
    return gradient


def test_tied_embedding_hessian_vector_product_equals_finite_differences_of_the_real_module():
    model = hf_models.tiny_gpt2_lm(dtype=F64, hidden=8, layers=1, init_range=0.3)
    inputs, _ = hf_models.token_batch(4, seq_len=6, seed=2)
    labels = torch.tensor([5, 17, 33, 90])
    problem = Problem(model, (inputs, labels), output_fn=_last_token)
    assert "lm_head.weight" not in problem.parameters()
    unique = sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once
    listed = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert HessianOperator.from_problem(problem).n_params == unique < listed
    name = "transformer.wte.weight"
    vector = torch.randn(model.transformer.wte.weight.numel(), generator=torch.Generator().manual_seed(1), dtype=F64)
    got = hessian_vector_product(problem, vector, parameter_names=[name])
    epsilon, shifted = 1e-5, []
    for sign in (1, -1):
        moved = copy.deepcopy(model)  # the copy keeps the tie: lm_head moves with the embedding
        with torch.no_grad():
            moved.transformer.wte.weight += sign * epsilon * vector.view_as(moved.transformer.wte.weight)
        assert moved.lm_head.weight is moved.transformer.wte.weight
        shifted.append(_tied_gradient(moved, inputs, labels).reshape(-1))
    want = (shifted[0] - shifted[1]) / (2 * epsilon)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-8)
    # the tie matters: untying the output layer (a separate copy of the weight) changes the product
    untied = copy.deepcopy(model)
    untied.lm_head.weight = torch.nn.Parameter(untied.lm_head.weight.detach().clone())
    untied_problem = Problem(untied, (inputs, labels), output_fn=_last_token)
    other = hessian_vector_product(untied_problem, vector, parameter_names=[name])
    assert float((other - want).norm()) > 1e-3 * float(want.norm())
