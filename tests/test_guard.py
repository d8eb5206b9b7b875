import contextlib

import pytest
import torch
from torch import nn

from deepscope import model_guard
from deepscope.errors import DeepscopeError, InvalidParameterError, UnsupportedModelError
from deepscope.guard import bitwise_equal, current_guard_report, stochastic_modules
from deepscope.testing import check_model_untouched, fingerprint_differences, make_fixture, model_fingerprint


def vandalise(model, inputs):
    """Everything an analysis must not leave behind."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = torch.ones_like(p)
        p.register_hook(lambda g: g)
    model.register_forward_hook(lambda m, a, o: None)
    model[0].register_forward_pre_hook(lambda m, a: None)
    model.train()
    model(inputs)  # BatchNorm running stats move
    model[-1].weight = nn.Parameter(torch.zeros_like(model[-1].weight))
    model.add_module("extra", nn.Identity())
    torch.nn.modules.module.register_module_forward_hook(lambda m, a, o: None)
    model.eval()


@pytest.mark.parametrize("kind", ["mlp", "cnn", "sequence", "relu_mlp"])
def test_guard_restores_everything(kind):
    fixture = make_fixture(kind)
    before = model_fingerprint(fixture.model)
    with model_guard(fixture.model):
        vandalise(fixture.model, fixture.inputs)
    assert fingerprint_differences(before, model_fingerprint(fixture.model)) == []
    assert not torch.nn.modules.module._global_forward_hooks


def test_guard_restores_on_error():
    fixture = make_fixture("mlp")
    before = model_fingerprint(fixture.model)
    with pytest.raises(RuntimeError, match="boom"):
        with model_guard(fixture.model):
            vandalise(fixture.model, fixture.inputs)
            raise RuntimeError("boom")
    assert fingerprint_differences(before, model_fingerprint(fixture.model)) == []


def test_guard_switches_to_eval_and_reports():
    fixture = make_fixture("mlp")
    assert fixture.model.training
    with model_guard(fixture.model) as report:
        assert not any(m.training for m in fixture.model.modules())
        assert current_guard_report(fixture.model) is report
        assert report.switched_to_eval == ["1", "3"]
        assert "eval semantics" in report.note
        # deterministic: Dropout inactive inside the guard
        assert torch.equal(fixture.model(fixture.inputs), fixture.model(fixture.inputs))
    assert fixture.model.training and current_guard_report(fixture.model) is None


def test_guard_train_and_refuse_modes():
    fixture = make_fixture("mlp")
    with model_guard(fixture.model, mode="train") as report:
        assert fixture.model.training and report.switched_to_eval == []
    with pytest.raises(UnsupportedModelError, match="train-mode stochastic"):
        with model_guard(fixture.model, mode="refuse"):
            pass
    fixture.model.eval()
    assert stochastic_modules(fixture.model) == []
    with model_guard(fixture.model, mode="refuse"):
        pass


def test_guard_does_not_bump_version_when_nothing_changed():
    """A user's pending autograd graph must survive an analysis that only reads the weights."""
    model = nn.Linear(3, 1)
    loss = (model(torch.randn(4, 3)) ** 2).sum()
    versions = [p._version for p in model.parameters()]
    with model_guard(model):
        model(torch.randn(2, 3))
    assert [p._version for p in model.parameters()] == versions
    loss.backward()  # would raise if the saved weights had been modified in place


def test_guard_nested_is_free_and_validates():
    model = nn.Linear(2, 2)
    with model_guard(model) as outer:
        with model_guard(model) as inner:
            assert inner is outer
    with pytest.raises(InvalidParameterError, match="'model' parameter of model_guard must be a torch.nn.Module"):
        with model_guard("not a model"):
            pass
    with pytest.raises(InvalidParameterError, match="'mode' parameter"):
        with model_guard(model, mode="sideways"):
            pass


def test_bitwise_equal_handles_nan_and_signed_zero():
    nan = torch.tensor([float("nan")])
    assert bitwise_equal(nan, nan.clone())
    assert not bitwise_equal(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert not bitwise_equal(torch.zeros(2), torch.zeros(3))
    assert bitwise_equal(None, None) and not bitwise_equal(None, torch.zeros(1))


def test_check_model_untouched_detects_a_leaky_function():
    fixture = make_fixture("mlp")

    def leaky(model):
        with torch.no_grad():
            model[0].weight.mul_(2)

    with pytest.raises(AssertionError, match="changed the caller's model"):
        check_model_untouched(leaky, fixture.model, fixture.model)


def test_guard_restores_large_mixed_dtype_and_retyped_tensors():
    """Tensors above the flat-copy size, bfloat16 and float64 groups, a retyped and a reshaped ``.data``."""
    model = nn.Sequential(nn.Linear(300, 300), nn.Linear(300, 4).to(torch.bfloat16), nn.Linear(4, 2).double())
    model.register_buffer("steps", torch.tensor(3))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    before = model_fingerprint(model)
    grad_objects = [p.grad for p in model.parameters()]
    with model_guard(model):
        with torch.no_grad():
            model[0].weight.mul_(-1)  # 90,000 elements: compared and restored on its own
            model[1].bias.add_(1)  # bfloat16 group
            model[2].weight.data = model[2].weight.data.float()  # dtype changed behind .data
            model[0].bias.data = model[0].bias.data.reshape(30, 10)  # shape changed, same elements
            model.steps.add_(1)
            for p in model.parameters():
                p.grad.mul_(2)  # the caller's grad tensors changed in place
    assert fingerprint_differences(before, model_fingerprint(model)) == []
    assert all(p.grad is g for p, g in zip(model.parameters(), grad_objects))
    assert model[2].weight.dtype == torch.float64 and model[0].bias.shape == (300,)
    assert model[2].weight.data.untyped_storage().nbytes() == model[2].weight.numel() * 8  # not a view of a shared copy


def test_bitwise_equal_handles_low_precision_bool_and_non_contiguous():
    x = torch.randn(4, 6)
    assert bitwise_equal(x.t(), x.clone().t()) and not bitwise_equal(x.t(), x.t().contiguous().mul(-1))
    h = x.to(torch.bfloat16)
    assert bitwise_equal(h, h.clone()) and not bitwise_equal(h, -h)
    flags = x > 0
    assert bitwise_equal(flags, flags.clone()) and not bitwise_equal(flags, ~flags)


def test_guard_restores_a_single_small_parameter():
    """A group of one tensor: its flat copy must be new memory, not a view of the parameter."""
    model = nn.Linear(3, 1, bias=False)
    before = model.weight.detach().clone()
    with model_guard(model):
        with torch.no_grad():
            model.weight.mul_(2)
    assert bitwise_equal(model.weight.detach(), before)


def test_a_sparse_gradient_is_kept_and_restored():
    # nn.Embedding(sparse=True) leaves a sparse .grad; comparing it used torch.equal, which has no
    # sparse kernel, so every guarded analysis of such a model raised NotImplementedError on exit
    model = torch.nn.Sequential(torch.nn.Embedding(10, 3, sparse=True))
    model(torch.tensor([[1, 2]])).sum().backward()
    grad = model[0].weight.grad
    with model_guard(model):
        model(torch.tensor([[3]])).sum().backward()  # accumulates into the sparse grad
    assert model[0].weight.grad.layout == torch.sparse_coo
    assert torch.equal(model[0].weight.grad.to_dense(), grad.to_dense())
    with model_guard(model):
        model[0].weight.grad = None
    assert model[0].weight.grad is grad


# ---- models that carry their own graph (issue 12: TorchScript crashed every analysis on exit)
def _scripted():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))
    return torch.jit.script(net)


def _vandalise_script(model, inputs):
    """What an analysis may do to a ScriptModule: its attribute views accept no new names."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    for p in model.parameters():
        p.requires_grad_(False)
        p.grad = torch.ones_like(p)
    model.train()
    model(inputs)  # BatchNorm running stats move
    model._modules["3"]._parameters["weight"] = nn.Parameter(torch.zeros(2, 4))  # swapped behind the view
    model.eval()


def test_guard_restores_a_scripted_model():
    model, inputs = _scripted(), torch.randn(8, 3)
    model(inputs).sum().backward()  # the caller's grads, kept
    before = model_fingerprint(model)
    weight = model._modules["3"]._parameters["weight"]
    with model_guard(model) as report:
        assert report.switched_to_eval == ["1", "2"]  # BatchNorm and Dropout, recognised by their class name
        assert torch.equal(model(inputs), model(inputs))  # eval semantics inside
        _vandalise_script(model, inputs)
    assert fingerprint_differences(before, model_fingerprint(model)) == []
    assert model._modules["3"]._parameters["weight"] is weight
    assert all(m.training for m in model.modules())


def test_guard_restores_a_scripted_model_on_error():
    model, inputs = _scripted(), torch.randn(8, 3)
    before = model_fingerprint(model)
    with pytest.raises(RuntimeError, match="boom"), model_guard(model):
        _vandalise_script(model, inputs)
        raise RuntimeError("boom")
    assert fingerprint_differences(before, model_fingerprint(model)) == []


def test_an_analysis_leaves_a_scripted_model_untouched():
    from deepscope import Problem
    from deepscope.attribution import integrated_gradients
    from deepscope.curvature import hessian_eigenvalues

    torch.manual_seed(0)
    eager = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 2))
    model = torch.jit.script(eager)
    x, y = torch.randn(16, 3), torch.arange(16) % 2
    check_model_untouched(lambda: integrated_gradients(model, x[:4], 0, steps=16), model)
    # torch.func cannot call a ScriptModule with other weights, so the curvature analyses fail on it;
    # the model must come out untouched all the same (check_model_untouched raises AssertionError if not)
    with contextlib.suppress(RuntimeError, DeepscopeError):
        check_model_untouched(lambda: hessian_eigenvalues(Problem(model, (x, y), loss="cross_entropy"), k=1), model)
    # the scripted model gives the eager model's numbers (same weights, both in eval semantics)
    scripted = integrated_gradients(model, x[:4], 0, steps=16).values
    assert torch.allclose(scripted, integrated_gradients(eager, x[:4], 0, steps=16).values, atol=1e-6)


def test_guard_restores_an_exported_program_module():
    torch.manual_seed(0)
    eager = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    batch = torch.export.Dim("batch")
    model = torch.export.export(eager, (torch.randn(2, 4),), dynamic_shapes=({0: batch},)).module()
    inputs = torch.randn(6, 4)
    before = model_fingerprint(model)
    with model_guard(model):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(-1)
        model(inputs).sum().backward()
        model.register_forward_hook(lambda m, a, o: None)
    assert fingerprint_differences(before, model_fingerprint(model)) == []
    assert torch.equal(model(inputs), eager(inputs))


def test_tied_parameters_are_snapshotted_and_restored_once():
    """GPT-2 style: the output layer's weight is the embedding's (one tensor under two names)."""
    from deepscope.guard import _module_list, _Snapshot

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(7, 4)
            self.head = nn.Linear(4, 7, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, ids):
            return self.head(self.embed(ids)).mean(1)

    model = Tied()
    shared = model.embed.weight
    before = model_fingerprint(model)
    assert len(_Snapshot(_module_list(model)).tensors) == 1  # one copy of the one tensor
    with model_guard(model):
        with torch.no_grad():
            model.head.weight.mul_(3)  # seen through both names
        model(torch.tensor([[1, 2, 3]])).sum().backward()  # one gradient, accumulated from both uses
        model.head.weight = nn.Parameter(torch.zeros(7, 4))  # untied inside the guard
    assert model.head.weight is shared and model.embed.weight is shared and shared.grad is None
    assert fingerprint_differences(before, model_fingerprint(model)) == []
