"""math_attention: double backward and forward-mode AD through HF's default (sdpa) attention.

Oracle: the same tiny BERT (same weights) built with ``attn_implementation="eager"``, whose
attention is plain matmul/softmax. In float64 the math kernel and the eager path compute
``softmax(QKᵀ/√d + mask)V`` with different operation orders, so they agree to rounding: relative
1e-9 leaves ~6 orders of magnitude above float64's 1e-16 for the few hundred accumulated ops.
"""

import hf_models
import pytest
import torch
from torch.func import functional_call, jvp

from deepscope._attention import NOTE, math_attention


def _loss_fn(model, inputs, labels):
    def loss(params):
        logits = functional_call(model, params, (), inputs).logits
        return torch.nn.functional.cross_entropy(logits, labels)

    return loss


def _hvp(model, inputs, labels, vector):
    params = {name: value.detach().clone().requires_grad_() for name, value in model.named_parameters()}
    loss = _loss_fn(model, inputs, labels)(params)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    dot = sum((grad * vector[name]).sum() for grad, name in zip(grads, params))
    return torch.autograd.grad(dot, list(params.values()))


def _jvp(model, inputs, labels, vector):
    params = {name: value.detach() for name, value in model.named_parameters()}
    return jvp(_loss_fn(model, inputs, labels), (params,), (vector,))[1]


@pytest.fixture(scope="module")
def bert():
    model = hf_models.tiny_bert(dtype=torch.float64)
    assert model.config._attn_implementation == "sdpa"
    inputs, labels = hf_models.token_batch(4, seq_len=8, seed=1)
    generator = torch.Generator().manual_seed(2)
    vector = {
        name: torch.randn(value.shape, generator=generator, dtype=value.dtype)
        for name, value in model.named_parameters()
    }
    return model, inputs, labels, vector


def test_hvp_fails_on_fused_attention_without_math_attention(bert):
    model, inputs, labels, vector = bert
    with pytest.raises(RuntimeError, match="scaled_dot_product"):
        _hvp(model, inputs, labels, vector)


def test_jvp_fails_on_fused_attention_without_math_attention(bert):
    model, inputs, labels, vector = bert
    with pytest.raises(RuntimeError, match="scaled_dot_product"):
        _jvp(model, inputs, labels, vector)


def test_hvp_under_math_attention_equals_eager_attention(bert):
    model, inputs, labels, vector = bert
    with math_attention() as attention:
        got = _hvp(model, inputs, labels, vector)
    assert attention.seen
    want = _hvp(hf_models.eager_copy(model), inputs, labels, vector)
    for one, other in zip(got, want):
        torch.testing.assert_close(one, other, rtol=1e-9, atol=1e-12)
    assert max(float(one.abs().max()) for one in got) > 1e-3  # a non-trivial Hessian-vector product


def test_jvp_under_math_attention_equals_eager_attention(bert):
    model, inputs, labels, vector = bert
    with math_attention() as attention:
        got = _jvp(model, inputs, labels, vector)
    assert attention.seen
    want = _jvp(hf_models.eager_copy(model), inputs, labels, vector)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    assert abs(float(want)) > 1e-6


def test_seen_is_false_without_attention():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with math_attention() as attention:
        model(torch.randn(4, 3))
    assert not attention.seen


def test_previous_backend_selection_restored_on_exit_and_on_error():
    assert torch.backends.cuda.flash_sdp_enabled()
    with math_attention():
        assert not torch.backends.cuda.flash_sdp_enabled()
        assert torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.flash_sdp_enabled()
    with pytest.raises(ValueError, match="boom"), math_attention():
        raise ValueError("boom")
    assert torch.backends.cuda.flash_sdp_enabled()
    assert torch.backends.cuda.mem_efficient_sdp_enabled()


def test_note_names_the_kernel_and_the_reason():
    assert "math kernel" in NOTE and "double-backward" in NOTE and "forward-mode" in NOTE


def test_without_watching_the_math_kernel_is_still_selected(bert):
    model, inputs, labels, vector = bert
    with math_attention(watch=False) as attention:
        assert not torch.backends.cuda.flash_sdp_enabled()
        got = _hvp(model, inputs, labels, vector)
    assert not attention.seen  # not watched, so not reported
    want = _hvp(hf_models.eager_copy(model), inputs, labels, vector)
    for one, other in zip(got, want):
        torch.testing.assert_close(one, other, rtol=1e-9, atol=1e-12)


class _SelfAttention(torch.nn.Module):
    """torch's own multi-head attention: need_weights=False runs SDPA, True the explicit softmax."""

    def __init__(self, need_weights: bool):
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x):
        return self.attention(x, x, x, need_weights=self.need_weights)[0].sum()


def test_torch_multihead_attention_is_seen_and_differentiated_twice():
    """Oracle: the same weights through MHA's explicit-softmax path (need_weights=True); float64
    rounding over a few hundred operations: relative 1e-9."""
    torch.manual_seed(0)
    fused, explicit = _SelfAttention(False).double(), _SelfAttention(True).double()
    explicit.load_state_dict(fused.state_dict())
    x = torch.randn(3, 4, 8, dtype=torch.float64)

    def hvp(module):
        params = [p.detach().requires_grad_() for p in module.parameters()]
        names = [name for name, _ in module.named_parameters()]
        out = torch.func.functional_call(module, dict(zip(names, params)), (x,))
        grads = torch.autograd.grad(out, params, create_graph=True)
        second = torch.autograd.grad(sum((g * g).sum() for g in grads), params, allow_unused=True)
        return [torch.zeros_like(p) if h is None else h for h, p in zip(second, params)]  # bias: linear

    with pytest.raises(RuntimeError, match="scaled_dot_product"):
        hvp(fused)
    with math_attention() as attention:
        got = hvp(fused)
    assert attention.seen
    with math_attention() as attention:
        want = hvp(explicit)
    assert not attention.seen  # the explicit path runs no SDPA: no note needed
    for one, other in zip(got, want):
        torch.testing.assert_close(one, other, rtol=1e-9, atol=1e-12)
