"""Layer integrated gradients against Captum's LayerIntegratedGradients (same layer, baseline, rule, steps)."""

import hf_models
import pytest
import torch
from torch import nn

from deepscope.attribution import layer_integrated_gradients
from deepscope.errors import InvalidParameterError, UnsupportedModelError

captum_attr = pytest.importorskip("captum.attr")

CLS, SEP = 2, 3


def _logits(output):
    return output.logits


def _captum(model, layer, inputs, baseline_ids, target, steps):
    forward = lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits  # noqa: E731
    lig = captum_attr.LayerIntegratedGradients(forward, layer)
    return lig.attribute(
        inputs["input_ids"],
        baselines=baseline_ids,
        target=target,
        additional_forward_args=(inputs["attention_mask"],),
        n_steps=steps,
        method="gausslegendre",
    )


def _tokens(n=4, seq_len=8):
    inputs, _ = hf_models.token_batch(n, seq_len=seq_len, seed=1)
    inputs["input_ids"][:, 0] = CLS
    return inputs


@pytest.mark.parametrize("which", ["embeddings", "word_embeddings"])
def test_bert_matches_captum(which):
    model = hf_models.tiny_bert(dtype=torch.float64)
    inputs = _tokens()
    layer = model.bert.embeddings if which == "embeddings" else None  # None: get_input_embeddings()
    ours = layer_integrated_gradients(
        model, inputs, target=1, layer=layer, baseline=hf_models.PAD_ID, keep_tokens=(CLS,), steps=12, output_fn=_logits
    )
    baseline_ids = torch.where(inputs["input_ids"] == CLS, CLS, hf_models.PAD_ID)
    captum_layer = model.bert.embeddings if which == "embeddings" else model.bert.embeddings.word_embeddings
    reference = _captum(model, captum_layer, inputs, baseline_ids, 1, 12)
    # float64, the same nodes and weights: only the batching of path points differs (48 rows here, 12
    # per chunk in Captum), which changes the attention kernel's summation order. The attributions
    # (~1e-5 at random init) are differences of O(1) activations, so rounding of 1e-16 there shows
    # up as ~1e-13 absolute here: 1e-6 of the largest attribution leaves a margin of 100x.
    scale = float(reference.abs().max())
    assert scale > 0
    assert torch.allclose(ours.diagnostics["layer_attributions"], reference, atol=1e-6 * scale, rtol=0)
    assert torch.allclose(ours.values, reference.sum(-1), atol=1e-6 * scale, rtol=0)
    assert ours.values.shape == inputs["input_ids"].shape


def test_gpt2_default_attention_matches_captum_with_several_targets():
    model = hf_models.tiny_gpt2(dtype=torch.float64)
    inputs = _tokens(3)
    ours = layer_integrated_gradients(
        model, inputs, target=[[0], [2]], baseline=hf_models.PAD_ID, steps=8, output_fn=_logits
    )
    for t, target in enumerate((0, 2)):
        reference = _captum(model, model.transformer.wte, inputs, torch.zeros_like(inputs["input_ids"]), target, 8)
        scale = float(reference.abs().max())
        assert torch.allclose(ours.values[t], reference.sum(-1), atol=1e-6 * scale, rtol=0)  # as for BERT


def test_completeness_converges_with_steps():
    model = hf_models.tiny_bert(dtype=torch.float64)
    inputs = _tokens(2)
    coarse = layer_integrated_gradients(model, inputs, target=0, steps=2, output_fn=_logits)
    fine = layer_integrated_gradients(model, inputs, target=0, steps=64, output_fn=_logits)
    # Gauss-Legendre on a smooth path: 64 nodes integrate far below float32 noise
    assert float(fine.diagnostics["completeness_error"].max()) < 1e-6
    assert float(fine.diagnostics["completeness_error"].max()) <= float(coarse.diagnostics["completeness_error"].max())
    assert torch.allclose(fine.values.sum(1), fine.diagnostics["delta"], rtol=1e-6, atol=0)


class Bag(nn.Module):
    """An embedding followed by a linear read-out: LIG is exactly (h − h') · W, whatever the steps."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(12, 3)
        self.head = nn.Linear(5 * 3, 2)

    def forward(self, ids):
        return self.head(self.embed(ids).flatten(1))


def test_linear_embedding_model_is_exact_and_matches_captum():
    model = Bag().double()
    ids = torch.randint(1, 12, (4, 5))
    ours = layer_integrated_gradients(model, ids, target=1, baseline=0, steps=3)
    h = model.embed(ids).detach()
    h0 = model.embed(torch.zeros_like(ids)).detach()
    exact = (h - h0) * model.head.weight[1].detach().view(5, 3)
    assert torch.allclose(ours.diagnostics["layer_attributions"], exact, atol=1e-12)
    assert float(ours.diagnostics["completeness_error"].max()) < 1e-10
    reference = captum_attr.LayerIntegratedGradients(model, model.embed).attribute(
        ids, baselines=torch.zeros_like(ids), target=1, n_steps=3, method="gausslegendre"
    )
    assert torch.allclose(ours.diagnostics["layer_attributions"], reference, atol=1e-12)


def test_layer_baseline_equals_the_baseline_input_it_comes_from():
    model = Bag().double()
    ids = torch.randint(1, 12, (3, 5))
    mask_id = 7
    from_input = layer_integrated_gradients(model, ids, target=0, baseline=mask_id, steps=4)
    from_layer = layer_integrated_gradients(
        model, ids, target=0, layer_baseline=model.embed.weight[mask_id].detach().expand(5, 3), steps=4
    )
    assert torch.allclose(from_input.values, from_layer.values, atol=1e-12)


def test_float_inputs_at_a_hidden_layer_match_captum():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    ours = layer_integrated_gradients(model, x, target=1, layer="1", steps=10)
    reference = captum_attr.LayerIntegratedGradients(model, model[1]).attribute(
        x, baselines=torch.zeros_like(x), target=1, n_steps=10, method="gausslegendre"
    )
    assert ours.values.shape == (5, 6)
    assert torch.allclose(ours.values, reference, atol=1e-12)


def test_refusals():
    model = Bag()
    ids = torch.randint(1, 12, (2, 5))
    with pytest.raises(InvalidParameterError, match="layer_baseline"):
        layer_integrated_gradients(model, ids, baseline=0, layer_baseline=torch.zeros(5, 3))
    with pytest.raises(InvalidParameterError, match="token id"):
        layer_integrated_gradients(model, ids, baseline=0.5)
    with pytest.raises(InvalidParameterError, match="layer"):
        layer_integrated_gradients(model, ids, layer="nope")
    with pytest.raises(InvalidParameterError, match="layer_baseline"):
        layer_integrated_gradients(model, ids, layer_baseline=torch.zeros(4, 3))
    with pytest.raises(UnsupportedModelError, match="no nn.Embedding"):
        layer_integrated_gradients(nn.Linear(3, 2), torch.randn(2, 3))
    with pytest.raises(InvalidParameterError, match="input_key"):
        layer_integrated_gradients(hf_models.tiny_bert(), _tokens(2), input_key="ids", output_fn=_logits)


def test_a_layer_called_twice_is_refused():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 2)

        def forward(self, ids):
            return (self.embed(ids) + self.embed(ids)).sum(1)

    with pytest.raises(UnsupportedModelError, match="more than once"):
        layer_integrated_gradients(Twice(), torch.randint(0, 5, (2, 3)), target=0)


def test_the_model_and_its_hooks_are_left_as_they_were():
    model = hf_models.tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layer_integrated_gradients(model, _tokens(2), target=0, steps=2, output_fn=_logits)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(module._forward_hooks for module in model.modules())


def test_chunks_that_split_examples_and_steps_give_the_same_result():
    model = Bag().double()
    ids = torch.randint(1, 12, (3, 5))
    whole = layer_integrated_gradients(model, ids, target=[0, 1, 0], steps=7)
    chunked = layer_integrated_gradients(model, ids, target=[0, 1, 0], steps=7, max_batch=2)  # 21 rows in 2s
    assert torch.allclose(whole.diagnostics["layer_attributions"], chunked.diagnostics["layer_attributions"])
    assert torch.equal(whole.diagnostics["steps"], torch.full((3,), 7))


def test_the_adaptive_mode_refines_until_the_tolerance():
    model = hf_models.tiny_bert(dtype=torch.float64)
    inputs = _tokens(3)
    adaptive = layer_integrated_gradients(
        model, inputs, target=0, steps=None, tol=1e-6, initial_steps=2, max_batch=7, output_fn=_logits
    )
    d = adaptive.diagnostics
    assert bool(d["converged"].all()) and float(d["completeness_error"].max()) < 1e-6
    assert int(d["steps"].min()) >= 2 and adaptive.options["tol"] == 1e-6
    reference = layer_integrated_gradients(model, inputs, target=0, steps=128, output_fn=_logits)
    # both integrate the same smooth path; completeness within 1e-6 bounds the sum, the per-token
    # values agree to the quadrature error of the coarser rule (a few 1e-6 of the largest score)
    scale = float(reference.values.abs().max())
    assert torch.allclose(adaptive.values, reference.values, atol=1e-4 * scale, rtol=0)
    with pytest.raises(InvalidParameterError, match="tol"):
        layer_integrated_gradients(model, inputs, steps=8, tol=0.1, output_fn=_logits)


def _sharp_tanh_bag():
    """Embedding → two tanh layers with weights ×4: path integrands that need 31–127 nodes at tol 1e-3."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Embedding(20, 8), nn.Flatten(), nn.Linear(48, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)
    ).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(4.0)
    return model, torch.randint(1, 20, (6, 6))


def test_the_nested_adaptive_mode_reuses_nodes_and_costs_fewer_evaluations_than_doubling():
    model, ids = _sharp_tanh_bag()
    nested = layer_integrated_gradients(model, ids, target=0, baseline=0, steps=None, tol=1e-3)
    doubling = layer_integrated_gradients(model, ids, target=0, baseline=0, steps=None, tol=1e-3, rule="gausslegendre")
    fixed = layer_integrated_gradients(model, ids, target=0, baseline=0, steps=1)
    overhead = fixed.model_evaluations - ids.shape[0]  # the passes at the input and baseline, not the path
    assert nested.options["rule"] == "fejer2"
    for result in (nested, doubling):
        d = result.diagnostics
        assert bool(d["converged"].all()) and float(d["completeness_error"].max()) < 1e-3
    used = nested.diagnostics["steps"]
    assert set(used.tolist()) <= {7, 15, 31, 63, 127, 255, 511, 1023}
    # reuse: an example that stops at m nodes cost exactly m path points (doubling from 8 costs 8 + 16 + ... + m)
    assert nested.model_evaluations - overhead == int(used.sum())
    doubled = doubling.diagnostics["steps"]
    assert doubling.model_evaluations - overhead == int(sum(2 * s - 8 for s in doubled.tolist()))
    # on this model: 378 path points against 656 (the rules need similar node counts, doubling pays twice)
    assert nested.model_evaluations < 0.7 * doubling.model_evaluations
    # the integral itself, against 512 Gauss-Legendre nodes (completeness < 1e-8): tol = 1e-3 bounds the
    # sum; the per-token values of this smooth path follow it (worst relative L1 1.4e-3, bound 1e-2)
    reference = layer_integrated_gradients(model, ids, target=0, baseline=0, steps=512)
    assert float(reference.diagnostics["completeness_error"].max()) < 1e-8
    for result in (nested, doubling):
        error = (result.values - reference.values).abs().sum(1) / reference.values.abs().sum(1)
        assert float(error.max()) < 1e-2


def test_at_an_identity_input_layer_the_nested_mode_is_integrated_gradients():
    from deepscope.attribution import integrated_gradients

    torch.manual_seed(1)
    body = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    with torch.no_grad():
        for parameter in body.parameters():
            parameter.mul_(3.0)
    model = nn.Sequential(nn.Identity(), body)
    x = torch.randn(7, 5, dtype=torch.float64)
    ours = layer_integrated_gradients(model, x, target=[[0], [2]], layer="0", steps=None, tol=1e-4)
    ig = integrated_gradients(body, x, target=[[0], [2]], steps=None, tol=1e-4)
    # the same path, nodes, weights and stopping rule: the same node counts, values to rounding
    assert torch.equal(ours.diagnostics["steps"], ig.diagnostics["steps"])
    assert torch.allclose(ours.values, ig.values, rtol=0, atol=1e-12)
    assert int(ours.diagnostics["steps"].max()) > 7  # some example was refined
