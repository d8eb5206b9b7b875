"""The AttnLRP rule mode: the forward values it produces, the per-example ledger, each rule's backward."""

import pytest
import torch
import torch.nn.functional as F

from deepscope.attribution._attn_rules import KINDS, Ledger, ModifiedGradient, RuleMode, identity_rule


def _leaf(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).requires_grad_(True)


def test_the_ledger_splits_by_example_also_for_flattened_rows():
    ledger = Ledger(2, 4, torch.float64, torch.device("cpu"))
    ledger.start, ledger.rows, ledger.target = 1, 2, 1
    ledger.add("bias", torch.ones(2 * 3, 5))  # (examples × tokens, features), as GPT-2's addmm sees them
    assert torch.equal(ledger.totals["bias"], torch.tensor([[0.0, 0, 0, 0], [0, 15, 15, 0]], dtype=torch.float64))
    assert set(ledger.totals) == set(KINDS)


@pytest.mark.parametrize(
    "options",
    [{}, {"is_causal": True}, {"mask": "bool"}, {"mask": "float"}, {"scale": 0.3}, {"enable_gqa": True}],
)
def test_decomposed_attention_gives_the_fused_values(options):
    q, k, v = _leaf(2, 4, 5, 3, seed=1), _leaf(2, 4, 5, 3, seed=2), _leaf(2, 4, 5, 3, seed=3)
    kwargs = {key: value for key, value in options.items() if key != "mask"}
    if options.get("enable_gqa"):
        k, v = k[:, :2].detach().requires_grad_(True), v[:, :2].detach().requires_grad_(True)
    if options.get("mask") == "bool":
        kwargs["attn_mask"] = torch.rand(5, 5, generator=torch.Generator().manual_seed(4)) > 0.3
        kwargs["attn_mask"][:, 0] = True  # no query row fully masked
    elif options.get("mask") == "float":
        kwargs["attn_mask"] = torch.randn(2, 1, 5, 5, dtype=torch.float64)
    expected = F.scaled_dot_product_attention(q, k, v, **kwargs)
    ledger = Ledger(1, 2, torch.float64, torch.device("cpu"))
    with RuleMode(ledger, 0.0, cp=False):
        got = F.scaled_dot_product_attention(q, k, v, **kwargs)
    assert torch.allclose(got, expected, atol=1e-12)
    # conservation through the attention: Σ over q, k, v of x ⊙ g + the softmax's and the mask's shares = Σ out ⊙ g
    g = torch.randn_like(got)
    grads = torch.autograd.grad(got, (q, k, v), g)
    total = sum(float((x.detach() * gx).sum()) for x, gx in zip((q, k, v), grads))
    kept = float(ledger.totals["softmax"].sum() + ledger.totals["constant"].sum())
    assert total + kept == pytest.approx(float((got.detach() * g).sum()), abs=1e-10)


def test_the_identity_rule_passes_relevance_unchanged_and_handles_zero():
    x = torch.tensor([[-1.0, 0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    ledger = Ledger(1, 1, torch.float64, torch.device("cpu"))
    y = ModifiedGradient.apply(x, F.gelu, identity_rule(ledger))
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert torch.allclose(x.detach() * gx, F.gelu(x.detach()) * torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    assert float(ledger.totals["activation"].abs().sum()) == 0.0  # gelu(0) = 0: nothing kept


def test_linear_rules_record_the_bias_and_epsilon_shares():
    x = _leaf(3, 4)
    weight, bias = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    ledger = Ledger(1, 3, torch.float64, torch.device("cpu"))
    with RuleMode(ledger, 0.1, cp=False):
        y = F.linear(x, weight, bias)
    assert torch.allclose(y, F.linear(x, weight, bias))
    (gx,) = torch.autograd.grad(y.sum(), x)
    kept = ledger.totals["bias"] + ledger.totals["epsilon"]
    assert torch.allclose((x * gx).sum(1) + kept[0], y.sum(1).detach(), atol=1e-12)
    z = y.detach()  # the ε-rule by hand: g_x = Wᵀ (z / (z + ε sign z))
    assert torch.allclose(gx, (z / (z + 0.1 * torch.where(z >= 0, 1.0, -1.0))) @ weight, atol=1e-12)


def test_cp_mode_holds_the_attention_weights_constant():
    x = _leaf(2, 3)
    with RuleMode(Ledger(1, 2, torch.float64, torch.device("cpu")), 0.0, cp=True):
        s = torch.softmax(x, -1)
    assert not s.requires_grad


def test_rms_norm_holds_the_scale_constant():
    if not hasattr(F, "rms_norm"):
        pytest.skip("torch without F.rms_norm")
    x = _leaf(2, 4)
    w = torch.randn(4, dtype=torch.float64)
    with RuleMode(Ledger(1, 2, torch.float64, torch.device("cpu")), 0.0, cp=False):
        y = F.rms_norm(x, (4,), w, 1e-6)
    (gx,) = torch.autograd.grad((y * 1.0).sum(), x)
    assert torch.allclose((x * gx).sum(1), y.sum(1).detach(), atol=1e-12)  # x/rms with rms constant is linear
