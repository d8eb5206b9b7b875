"""AttnLRP: full relevance accounting on tiny HF BERT / GPT-2 / ViT, exact conservation, and each rule by hand."""

import hf_models
import pytest
import torch
from torch import nn

from deepscope.attribution import attn_lrp, layer_gradient_x_activation
from deepscope.errors import InvalidParameterError


def _logits(output):
    return output.logits


def _random_biases(model, seed=0):
    """HF initialises biases and LayerNorm β to 0: give them values so that the bias bookkeeping is exercised."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return model


def _zero_biases(model):
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
    return model


def _cases():
    tokens, _ = hf_models.token_batch(3, seq_len=8, seed=1)
    pixels, _ = hf_models.image_batch(2, seed=1)
    return {
        "bert": (hf_models.tiny_bert, tokens),
        "gpt2": (hf_models.tiny_gpt2, tokens),
        "vit": (hf_models.tiny_vit, pixels.double()),
    }


@pytest.mark.parametrize("name", ["bert", "gpt2", "vit"])
@pytest.mark.parametrize("attention", ["attnlrp", "cp"])
def test_every_share_of_the_output_is_accounted_for(name, attention):
    build, inputs = _cases()[name]
    model = _random_biases(build(dtype=torch.float64))
    result = attn_lrp(model, inputs, target=1, attention=attention, output_fn=_logits)
    d = result.diagnostics
    kept = sum(d[f"kept_{kind}"] for kind in ("bias", "epsilon", "softmax", "activation", "constant"))
    # Σ R + Σ kept = F(x): every operation of these models has a rule, so nothing is left untracked.
    # float64 sums of O(1) terms: 1e-9 of |F| is far above rounding (~1e-15) and far below any share.
    scale = float(d["explained"].abs().max())
    assert float(d["untracked"].abs().max()) < 1e-9 * scale
    assert torch.allclose(result.values.sum(-1) + kept, d["explained"], atol=1e-9 * scale, rtol=0)
    assert float(d["kept_bias"].abs().max()) > 1e-6 * scale  # the random biases do keep a share
    if attention == "cp":
        assert float(d["kept_softmax"].abs().max()) == 0.0
    # the rules change the backward pass only: the decomposed attention gives the same outputs
    assert d["forward_error"] < 1e-12
    batch = inputs["input_ids"].shape[0] if isinstance(inputs, dict) else inputs.shape[0]
    assert result.values.dim() == 2 and result.values.shape[0] == batch  # one score per token (or patch)


@pytest.mark.parametrize("name", ["bert", "gpt2", "vit"])
def test_bias_free_cp_lrp_conserves_exactly(name):
    build, inputs = _cases()[name]
    model = _zero_biases(build(dtype=torch.float64))
    layer = {"bert": "bert.embeddings", "gpt2": None, "vit": "vit.embeddings"}[name]
    if name == "gpt2":  # the position embedding is added after wte: make it 0 so nothing is added on the way
        with torch.no_grad():
            model.transformer.wpe.weight.zero_()
    result = attn_lrp(model, inputs, target=2, layer=layer, attention="cp", epsilon=0.0, output_fn=_logits)
    # no bias, ε = 0, attention weights constant: every rule conserves, Σ R = F(x) to float64 rounding
    assert float(result.diagnostics["conservation_error"].max()) < 1e-9
    # AttnLRP's softmax rule does not conserve: the gap is exactly its kept share
    full = attn_lrp(model, inputs, target=2, layer=layer, epsilon=0.0, output_fn=_logits)
    d = full.diagnostics
    assert torch.allclose(
        full.values.sum(-1) + d["kept_softmax"], d["explained"], atol=1e-9 * float(d["explained"].abs().max())
    )


def test_tokens_are_scored_per_position_and_the_sdpa_model_equals_eager():
    model = hf_models.tiny_bert(dtype=torch.float64)
    inputs, _ = hf_models.token_batch(2, seq_len=6, seed=3)
    fused = attn_lrp(model, inputs, target=0, output_fn=_logits)
    eager = attn_lrp(hf_models.eager_copy(model), inputs, target=0, output_fn=_logits)
    assert fused.values.shape == (2, 6)
    # the eager path goes through matmul/softmax, the default one through the decomposed SDPA: same rules
    assert torch.allclose(fused.values, eager.values, atol=1e-12 * float(eager.values.abs().max()))


class Plain(nn.Module):
    """Embedding, bias-free linear layers, ReLU and mean pooling: no attention, no LayerNorm, no smooth nonlinearity."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(20, 6)
        self.hidden = nn.Linear(6, 8, bias=False)
        self.head = nn.Linear(8, 3, bias=False)

    def forward(self, ids):
        return self.head(torch.relu(self.hidden(self.embed(ids))).mean(1))


def test_lrp0_equals_gradient_times_activation_without_attention():
    model = Plain().double()
    ids = torch.randint(0, 20, (4, 5))
    lrp = attn_lrp(model, ids, target=[0, 1, 2, 0], epsilon=0.0)
    gxa = layer_gradient_x_activation(model, ids, target=[0, 1, 2, 0])
    # LRP-0 through linear layers and ReLU is gradient × input (Ancona et al., 2018): equal to rounding
    assert torch.allclose(lrp.diagnostics["layer_attributions"], gxa.diagnostics["layer_attributions"], atol=1e-14)
    assert float(lrp.diagnostics["conservation_error"].max()) < 1e-12


class Rules(nn.Module):
    """F = w · op(h) for one operation, h the embedding output: each rule checked against its formula."""

    def __init__(self, op):
        super().__init__()
        torch.manual_seed(1)
        self.embed = nn.Embedding(10, 4)
        self.w = nn.Parameter(torch.randn(4))
        self.mix = nn.Parameter(torch.randn(4, 4))
        self.op = op

    def forward(self, ids):
        h = self.embed(ids)  # (n, tokens, 4)
        if self.op == "softmax":
            y = torch.softmax(h, dim=-1)
        elif self.op == "layer_norm":
            y = nn.functional.layer_norm(h, (4,))
        elif self.op == "product":
            y = h * (h @ self.mix)
        else:
            y = nn.functional.gelu(h)
        return (y * self.w).sum((1, 2)).unsqueeze(1)


@pytest.mark.parametrize("op", ["softmax", "layer_norm", "product", "gelu"])
def test_each_rule_matches_its_formula(op):
    model = Rules(op).double()
    ids = torch.randint(0, 10, (3, 5))
    result = attn_lrp(model, ids, target=0, epsilon=0.0).diagnostics["layer_attributions"]
    h = model.embed(ids).detach()
    w, mix = model.w.detach(), model.mix.detach()
    if op == "softmax":  # R_x = x ⊙ (R̃ − s Σ R̃), R̃ = s ⊙ w (Achtibat et al., 2024, eq. 13)
        s = torch.softmax(h, -1)
        relevance = s * w
        expected = h * (relevance - s * relevance.sum(-1, keepdim=True))
    elif op == "layer_norm":  # σ constant: R = h ⊙ C(w/σ), Σ R = w · LN(h)
        sigma = torch.sqrt(h.var(-1, unbiased=False, keepdim=True) + 1e-5)
        expected = h * (w / sigma - (w / sigma).mean(-1, keepdim=True))
        assert torch.allclose(expected.sum(), model(ids).sum(), atol=1e-10)
    elif op == "product":  # uniform: each factor gets half of R = (h ⊙ hM) ⊙ w
        expected = 0.5 * h * (h @ mix) * w + 0.5 * h * ((h * w) @ mix.t())
        assert torch.allclose(expected.sum(), model(ids).sum(), atol=1e-10)
    else:  # identity rule: R_x = R_y = gelu(h) ⊙ w
        expected = nn.functional.gelu(h) * w
    assert torch.allclose(result, expected, atol=1e-12)


def test_refusals_and_the_model_is_left_alone():
    model = Plain()
    ids = torch.randint(0, 20, (2, 5))
    with pytest.raises(InvalidParameterError, match="attention"):
        attn_lrp(model, ids, attention="full")
    with pytest.raises(InvalidParameterError, match="epsilon"):
        attn_lrp(model, ids, epsilon=-1.0)
    bert = hf_models.tiny_bert()
    before = {k: v.clone() for k, v in bert.state_dict().items()}
    attn_lrp(bert, hf_models.token_batch(2)[0], output_fn=_logits)
    assert all(torch.equal(before[k], v) for k, v in bert.state_dict().items())
    assert all(p.requires_grad and p.grad is None for p in bert.parameters())
    assert not any(module._forward_hooks for module in bert.modules())
    assert not nn.modules.module._global_forward_hooks


def test_a_batchnorm_cnn_is_fully_accounted_for():
    from deepscope.testing import make_fixture

    fixture = make_fixture("cnn")
    model = fixture.model.double()
    result = attn_lrp(model, fixture.inputs[:4].double(), target=0, layer="0")
    d = result.diagnostics
    # BatchNorm (eval) keeps its offset as "bias", ReLU and max pooling pass relevance unchanged
    assert float(d["untracked"].abs().max()) < 1e-9 * float(d["explained"].abs().max())
    assert float(d["kept_bias"].abs().max()) > 0


def test_several_targets_and_chunks_give_the_single_runs():
    model = _random_biases(hf_models.tiny_gpt2(dtype=torch.float64))
    inputs, _ = hf_models.token_batch(3, seq_len=6, seed=5)
    both = attn_lrp(model, inputs, target=[[0], [2]], output_fn=_logits, max_batch=2)
    for t, target in enumerate((0, 2)):
        single = attn_lrp(model, inputs, target=target, output_fn=_logits)
        assert torch.allclose(both.values[t], single.values, atol=1e-12)
        for key in ("kept_bias", "kept_softmax", "untracked"):
            assert torch.allclose(both.diagnostics[key][t], single.diagnostics[key], atol=1e-12)


def test_tied_embeddings_of_a_language_model():
    model = hf_models.tiny_gpt2_lm(dtype=torch.float64)
    inputs, _ = hf_models.token_batch(2, seq_len=5, seed=6)
    inputs["attention_mask"][:] = 1  # the next-token logits of the last position
    result = attn_lrp(model, inputs, target=7, output_fn=lambda out: out.logits[:, -1])
    d = result.diagnostics
    assert float(d["untracked"].abs().max()) < 1e-9 * float(d["explained"].abs().max())
    assert model.lm_head.weight is model.transformer.wte.weight


class OneHead(nn.Module):
    """One attention head on an embedding, F = Σ w ⊙ softmax(q kᵀ / 2) v: small enough to propagate by hand."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.embed = nn.Embedding(10, 4)
        self.q, self.k, self.v = (nn.Linear(4, 4, bias=False) for _ in range(3))
        self.w = nn.Parameter(torch.randn(4))

    def forward(self, ids):
        h = self.embed(ids)
        s = torch.softmax(self.q(h) @ self.k(h).transpose(-1, -2) / 2, dim=-1)
        return ((s @ self.v(h)) * self.w).sum((1, 2)).unsqueeze(1)


def _relevance_form_by_hand(model, ids):
    """AttnLRP written in relevance form, layer by layer (Achtibat et al., 2024, eqs. 9, 13, 15), ε = 0."""
    h = model.embed(ids).detach()
    wq, wk, wv, w = (p.detach() for p in (model.q.weight, model.k.weight, model.v.weight, model.w))
    q, k, v = h @ wq.T, h @ wk.T, h @ wv.T
    scores = q @ k.transpose(-1, -2) / 2
    s = torch.softmax(scores, -1)
    out = s @ v
    r_out = out * w  # F = Σ out ⊙ w
    # out_id = Σ_j s_ij v_jd: each product term gets its share, split half to s and half to v
    share = torch.einsum("nij,njd->nijd", s, v) / out.unsqueeze(2) * r_out.unsqueeze(2)
    r_s, r_v = 0.5 * share.sum(3), 0.5 * share.sum(1)
    r_scores = scores * (r_s - s * r_s.sum(-1, keepdim=True))  # the softmax rule
    # scores_ij = Σ_e q_ie k_je / 2: same for the query-key product
    share = torch.einsum("nie,nje->nije", q, k) / 2 / scores.unsqueeze(3) * r_scores.unsqueeze(3)
    r_q, r_k = 0.5 * share.sum(2), 0.5 * share.sum(1)

    def linear(r, z, weight):  # z = h Wᵀ, LRP-0: R_h = h ⊙ Wᵀ(R / z)
        return h * ((r / z) @ weight)

    return linear(r_q, q, wq) + linear(r_k, k, wk) + linear(r_v, v, wv)


def test_one_attention_head_against_attnlrp_written_out_by_hand():
    model = OneHead().double()
    ids = torch.randint(0, 10, (3, 5), generator=torch.Generator().manual_seed(0))
    result = attn_lrp(model, ids, target=0, epsilon=0.0)
    expected = _relevance_form_by_hand(model, ids)
    # two float64 computations of the same sums (divisions by activations of O(0.1)): rounding only
    assert torch.allclose(result.diagnostics["layer_attributions"], expected, atol=1e-10)
    assert torch.allclose(result.values, expected.sum(-1), atol=1e-10)


def test_a_llama_style_model_rmsnorm_modules_gated_mlp_rotary_and_grouped_heads():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=hf_models.VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        num_labels=3,
        pad_token_id=hf_models.PAD_ID,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForSequenceClassification(config).double().eval()
    inputs, _ = hf_models.token_batch(2, seq_len=6, seed=7)
    d = attn_lrp(model, inputs, target=0, output_fn=_logits).diagnostics
    # LlamaRMSNorm (x · rsqrt(mean x²), a product of two activations) gets the identity rule as a
    # whole; without it half the relevance would leak into the rsqrt branch, untracked (~50% of F)
    assert float(d["untracked"].abs().max()) < 1e-9 * float(d["explained"].abs().max())


def test_operations_without_a_rule_are_reported_not_hidden():
    class Exp(nn.Module):  # exp has no rule: its input-output gap is nobody's share
        def __init__(self):
            super().__init__()
            torch.manual_seed(2)
            self.embed = nn.Embedding(6, 3)

        def forward(self, ids):
            return torch.exp(self.embed(ids)).sum((1, 2)).unsqueeze(1)

    result = attn_lrp(Exp().double(), torch.randint(0, 6, (2, 4)), target=0)
    d = result.diagnostics
    assert float(d["untracked"].abs().max()) > 0.01 * float(d["explained"].abs().max())
    assert "untracked" in d["warning"]
    clean = attn_lrp(Plain().double(), torch.randint(0, 20, (2, 5)), target=0).diagnostics
    assert "warning" not in clean
