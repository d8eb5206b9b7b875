"""Layer gradient × activation against Captum's LayerGradientXActivation and Euler's theorem."""

import hf_models
import pytest
import torch
from torch import nn

from deepscope.attribution import layer_gradient_x_activation

captum_attr = pytest.importorskip("captum.attr")


def test_bert_dict_inputs_match_captum():
    model = hf_models.tiny_bert(dtype=torch.float64)
    inputs, _ = hf_models.token_batch(3, seq_len=6, seed=2)
    ours = layer_gradient_x_activation(model, inputs, target=2, output_fn=lambda out: out.logits)
    forward = lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits  # noqa: E731
    reference = (
        captum_attr.LayerGradientXActivation(forward, model.bert.embeddings.word_embeddings)
        .attribute(inputs["input_ids"], target=2, additional_forward_args=(inputs["attention_mask"],))
        .detach()
    )
    # one gradient per example, the same graph: float64 rounding only
    assert torch.allclose(ours.diagnostics["layer_attributions"], reference, atol=1e-12 * float(reference.abs().max()))
    assert torch.allclose(ours.values, reference.sum(-1), atol=1e-12 * float(reference.abs().max()))
    assert ours.diagnostics["layer"] == "bert.embeddings.word_embeddings"


def test_bias_free_linear_read_out_sums_to_the_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(9, 4), nn.Flatten(), nn.Linear(12, 3, bias=False)).double()
    ids = torch.randint(0, 9, (5, 3))
    result = layer_gradient_x_activation(model, ids, target=[0, 1, 2, 0, 1])
    # F is linear and homogeneous in the embedding output: Σ h ∂F/∂h = F(x) (Euler)
    assert float(result.diagnostics["residual"].abs().max()) < 1e-12
    assert torch.allclose(result.values.sum(1), model(ids).gather(1, result.target.unsqueeze(1)).squeeze(1))


def test_frozen_parameters_and_chunks():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Embedding(9, 4), nn.Flatten(), nn.Linear(12, 2)).double().requires_grad_(False)
    ids = torch.randint(0, 9, (5, 3))
    whole = layer_gradient_x_activation(model, ids, target=1)
    chunked = layer_gradient_x_activation(model, ids, target=1, max_batch=2)
    assert torch.allclose(whole.values, chunked.values)
    assert not any(p.requires_grad for p in model.parameters())
