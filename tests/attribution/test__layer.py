"""The layer methods' shared parts: finding the layer, the hook, token baselines, per-token sums."""

import hf_models
import pytest
import torch
from torch import nn

from deepscope.attribution._layer import find_layer, input_baseline, layer_hook, layer_reference, per_token
from deepscope.errors import DataError, InvalidParameterError, UnsupportedModelError


def test_find_layer_defaults_to_the_input_embedding():
    bert = hf_models.tiny_bert()
    assert find_layer(bert, None, "m") == ("bert.embeddings.word_embeddings", bert.bert.embeddings.word_embeddings)
    plain = nn.Sequential(nn.Embedding(4, 2), nn.Flatten())
    assert find_layer(plain, None, "m")[0] == "0"
    assert find_layer(plain, "1", "m")[1] is plain[1]
    with pytest.raises(UnsupportedModelError, match="2 nn.Embedding"):
        find_layer(nn.Sequential(nn.Embedding(4, 2), nn.Embedding(4, 2)), None, "m")
    with pytest.raises(InvalidParameterError, match="submodule"):
        find_layer(plain, nn.Linear(2, 2), "m")


def test_the_hook_replaces_and_is_removed_even_on_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    x = torch.randn(3, 2)
    with layer_hook(model[0], "0", "m") as state:
        state.replacement = torch.zeros(3, 2)
        assert torch.allclose(model(x), model[1].bias.expand(3, 1))
        state.captured.clear()
        state.replacement = torch.zeros(4, 2)
        with pytest.raises(UnsupportedModelError, match="shape"):
            model(x)
    assert not model[0]._forward_hooks


def test_token_baselines_keep_special_tokens_and_hold_the_mask():
    ids = torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]])
    batch = {"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}
    reference = input_baseline(batch, 4, "m", keep_tokens=(2, 3))
    assert torch.equal(reference["input_ids"], torch.tensor([[2, 4, 4, 3], [2, 4, 3, 4]]))
    assert reference["attention_mask"] is batch["attention_mask"]
    assert torch.equal(input_baseline(ids, None, "m"), torch.zeros_like(ids))
    assert torch.equal(input_baseline(ids, torch.tensor([1, 1, 1, 1]), "m"), torch.ones_like(ids))
    assert torch.equal(input_baseline(torch.ones(2, 3), 0.5, "m"), torch.full((2, 3), 0.5))
    with pytest.raises(InvalidParameterError, match="token id"):
        input_baseline(ids, torch.zeros(2, 4), "m")


def test_layer_reference_and_per_token():
    activations = torch.randn(2, 3, 4)
    assert layer_reference(torch.ones(3, 4), activations, "m").shape == (2, 3, 4)
    with pytest.raises(DataError, match="NaN"):
        layer_reference(torch.full((3, 4), float("nan")), activations, "m")
    values = torch.randn(1, 2, 3, 4)
    assert torch.allclose(per_token(values), values.sum(-1))
    assert per_token(values[..., 0]).shape == (1, 2, 3)


def test_an_in_place_step_after_the_layer_works_for_every_layer_method():
    from deepscope.attribution import attn_lrp, layer_gradient_x_activation, layer_integrated_gradients

    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.embed = nn.Embedding(6, 3)
            self.position = nn.Parameter(torch.randn(4, 3))
            self.head = nn.Linear(12, 2, bias=False)

        def forward(self, ids):
            h = self.embed(ids)
            h += self.position  # in place on the layer's output, as some models add positions
            return self.head(h.flatten(1))

    model = InPlace().double()
    ids = torch.randint(0, 6, (2, 4))
    exact = layer_gradient_x_activation(model, ids, target=1)
    lig = layer_integrated_gradients(model, ids, target=1, steps=2)
    lrp = attn_lrp(model, ids, target=1, epsilon=0.0)
    # F is linear in h: gradient × activation, IG from h' = embed(0) and LRP-0 agree with the closed form
    w = model.head.weight[1].detach().view(4, 3)
    h = model.embed(ids).detach()
    assert torch.allclose(exact.diagnostics["layer_attributions"], h * w)
    assert torch.allclose(lrp.diagnostics["layer_attributions"], h * w)
    assert torch.allclose(lig.diagnostics["layer_attributions"], (h - model.embed.weight[0].detach()) * w)


def test_token_ids_outside_the_embedding_are_refused_before_any_forward_pass():
    from deepscope.attribution import attn_lrp, layer_gradient_x_activation, layer_integrated_gradients

    model = nn.Sequential(nn.Embedding(5, 2), nn.Flatten(), nn.Linear(6, 2))
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(1))
    bad = torch.tensor([[1, 2, 7]])
    for method in (layer_integrated_gradients, layer_gradient_x_activation, attn_lrp):
        with pytest.raises(DataError, match=r"token ids must lie in \[0, 4\].*'0' \(5 rows\).*\[1, 7\]: 1 id"):
            method(model, {"input_ids": bad} if method is attn_lrp else bad)
    assert calls == []
    with pytest.raises(DataError, match="baseline ids in"):
        layer_integrated_gradients(model, torch.tensor([[1, 2, 3]]), baseline=9)
