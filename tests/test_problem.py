import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from deepscope import Problem
from deepscope.data import DatasetSplits
from deepscope.errors import DataError, InvalidParameterError
from deepscope.testing import make_fixture


def small_data(n=20, d=3, classes=2):
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, d, generator=generator), torch.randint(0, classes, (n,), generator=generator)


def test_tensors_dataset_and_loader_iterate_identically():
    x, y = small_data()
    model = nn.Linear(3, 2)
    sources = [(x, y), (x.numpy(), y.numpy()), TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=7)]
    evaluations = [Problem(model, s, batch_size=6).evaluate() for s in sources]
    for evaluation in evaluations:
        assert evaluation.n == 20
        # same examples, different batch boundaries: the means agree to float32 round-off
        assert evaluation.loss == pytest.approx(evaluations[0].loss, rel=1e-6)
        assert evaluation.accuracy == evaluations[0].accuracy


def test_evaluate_matches_direct_computation():
    x, y = small_data()
    model = nn.Linear(3, 2)
    problem = Problem(model, (x, y), (x[:5], y[:5]), batch_size=4)
    with torch.no_grad():
        output = model(x)
    expected = nn.functional.cross_entropy(output, y).item()
    assert problem.evaluate().loss == pytest.approx(expected, rel=1e-6)
    assert problem.evaluate().accuracy == pytest.approx((output.argmax(1) == y).float().mean().item())
    assert problem.evaluate("test").n == 5
    assert problem.num_classes == 2


def test_functional_view_substitutes_parameters_without_touching_model():
    x, y = small_data()
    model = nn.Linear(3, 2)
    problem = Problem(model, (x, y))
    zeros = {name: torch.zeros_like(p) for name, p in problem.parameters().items()}
    assert torch.equal(problem.forward(zeros, x), torch.zeros(20, 2))
    assert problem.loss(zeros, x, y).item() == pytest.approx(np.log(2), rel=1e-6)
    assert model.weight.abs().sum() > 0


def test_max_samples_and_tensors():
    x, y = small_data()
    problem = Problem(nn.Linear(3, 2), (x, y), batch_size=8)
    xs, ys = problem.tensors(max_samples=11)
    assert xs.shape == (11, 3) and torch.equal(ys, y[:11])
    assert sum(len(b[0]) for b in problem.batches(max_samples=11)) == 11


def test_mse_and_callable_losses():
    x = torch.randn(10, 3)
    y = torch.randn(10)
    problem = Problem(nn.Linear(3, 1), (x, y), loss="mse")
    assert problem.num_classes is None and problem.evaluate().accuracy is None
    custom = Problem(nn.Linear(3, 1), (x, y), loss=lambda out, target: (out.squeeze(1) - target).abs().mean())
    assert custom.evaluate().loss > 0


def test_problem_keeps_model_flags_and_from_dataset():
    fixture = make_fixture("mlp")
    problem = fixture.problem()
    assert fixture.model.training
    splits = DatasetSplits("toy", *small_data(), *small_data(8), num_classes=2)
    problem = Problem.from_dataset(nn.Linear(3, 2), splits)
    assert len(problem.test) == 8


@pytest.mark.parametrize(
    "data, message",
    [
        ((torch.randn(5, 3), torch.zeros(4, dtype=torch.long)), "as many targets as inputs"),
        ((torch.full((5, 3), float("nan")), torch.zeros(5, dtype=torch.long)), "NaN or infinite values in 5 example"),
        ((torch.randn(0, 3), torch.zeros(0, dtype=torch.long)), "empty"),
        ((torch.randn(5, 3), torch.full((5,), 7)), r"Labels must lie in \[0, 1\].*Got labels in \[7, 7\]"),
        ((torch.randn(5, 3), torch.zeros(5)), "labels must be integers"),
        ((torch.randn(5, 4), torch.zeros(5, dtype=torch.long)), "cannot take the training inputs of shape \\(4,\\)"),
        ("not data", "a pair \\(X, y\\)"),
    ],
)
def test_bad_data_gives_clear_errors(data, message):
    with pytest.raises(DataError, match=message):
        Problem(nn.Linear(3, 2), data)


def test_bad_parameters_give_standard_messages():
    x, y = small_data()
    with pytest.raises(InvalidParameterError, match="The 'loss' parameter of Problem must be one of"):
        Problem(nn.Linear(3, 2), (x, y), loss="hinge")
    with pytest.raises(InvalidParameterError, match="The 'model' parameter of Problem must be a torch.nn.Module"):
        Problem("model", (x, y))
    with pytest.raises(InvalidParameterError, match="'batch_size' parameter of Problem must be an int >= 1. Got 0"):
        Problem(nn.Linear(3, 2), (x, y), batch_size=0)
    with pytest.raises(DataError, match="no test data"):
        Problem(nn.Linear(3, 2), (x, y)).evaluate("test")
    with pytest.raises(DataError, match="init_state\\['weight'\\] has shape"):
        Problem(nn.Linear(3, 2), (x, y), init_state={"weight": torch.zeros(1), "bias": torch.zeros(2)})


def test_nan_in_loader_batch_is_reported_on_iteration():
    x, y = small_data()
    x[15] = float("nan")
    problem = Problem(nn.Linear(3, 2), DataLoader(TensorDataset(x, y), batch_size=10))
    with pytest.raises(DataError, match="Batch 1 of the train data contains NaN"):
        problem.evaluate()


# ---------------------------------------------------------------------------------- labels everywhere


def _late_bad_labels(n=200, bad_at=150, value=5):
    x, y = small_data(n)
    y[bad_at] = value
    return x, y


def test_an_out_of_range_label_late_in_tensor_data_is_found_at_construction():
    x, y = _late_bad_labels()  # far beyond the 64-example probe batch
    with pytest.raises(DataError, match=r"Labels must lie in \[0, 1\].*\[0, 5\] \(the train data\): 1 label"):
        Problem(nn.Linear(3, 2), (x, y), batch_size=16)
    good = small_data(20)
    with pytest.raises(DataError, match=r"\(the test data\)"):
        Problem(nn.Linear(3, 2), good, _late_bad_labels())


def test_an_out_of_range_label_late_in_a_loader_is_found_by_every_consumer():
    from deepscope.curvature import hessian_vector_product

    x, y = _late_bad_labels()
    problem = Problem(nn.Linear(3, 2), DataLoader(TensorDataset(x, y), batch_size=50))  # batch 0 is clean
    message = r"Labels must lie in \[0, 1\].*\(batch 3 of the train data\)"
    with pytest.raises(DataError, match=message):
        problem.evaluate()
    with pytest.raises(DataError, match=message):
        problem.tensors()
    with pytest.raises(DataError, match=message):  # the curvature loss path
        hessian_vector_product(problem)
    assert len(problem.tensors(max_samples=150)[0]) == 150  # the clean prefix stays usable


def test_float_labels_for_a_classifier_with_several_outputs_are_refused():
    x, _ = small_data()
    real = torch.randn(20)
    with pytest.raises(DataError, match=r"labels must be integers.*Got dtype torch.float32.*loss='mse'"):
        Problem(nn.Linear(3, 3), (x, real))
    with pytest.raises(DataError, match=r"1 value\(s\) per example but the model has 3 output\(s\).*cross_entropy"):
        Problem(nn.Linear(3, 3), (x, real), loss="mse")
    splits = DatasetSplits("toy", x, real, x[:4], real[:4], task="regression")
    with pytest.raises(DataError, match=r"1 value\(s\) per example but the model has 3"):
        Problem.from_dataset(nn.Linear(3, 3), splits)


class _IntThenFloatLabels(torch.utils.data.Dataset):
    """Integer labels for the first 10 examples, float labels after (as a careless pipeline gives)."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], (torch.tensor(1) if i < 10 else torch.tensor(1.0))


def test_float_labels_late_in_a_loader_are_refused():
    x, _ = small_data()
    problem = Problem(nn.Linear(3, 3), DataLoader(_IntThenFloatLabels(x), batch_size=10))
    with pytest.raises(DataError, match=r"labels must be integers.*float32 \(batch 1 of the train data\)"):
        problem.evaluate()


def test_label_shape_and_bce_range_are_checked():
    x, y = small_data()
    with pytest.raises(DataError, match=r"shape \(n_examples,\).*Got labels of shape \(20, 1\)"):
        Problem(nn.Linear(3, 2), (x, y.unsqueeze(1)))
    with pytest.raises(DataError, match=r"bce_with_logits' must lie in \[0, 1\]. Got values in \[0, 3\]"):
        Problem(nn.Linear(3, 1), (x, torch.arange(20.0) % 4), loss="bce_with_logits")
    assert Problem(nn.Linear(3, 1), (x, (torch.arange(20.0) % 2)), loss="bce_with_logits").evaluate().n == 20


# ---------------------------------------------------------------------------------- non-finite weights


def test_nan_weights_are_refused_naming_the_parameter_and_layer():
    from deepscope.errors import NonFiniteError

    x, y = small_data()
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[2].bias[1] = float("inf")
    with pytest.raises(NonFiniteError, match=r"Problem: .*'2\.bias' \(layer '2', Linear\) has 1 of 2 values NaN"):
        Problem(model, (x, y))


def test_a_nan_buffer_is_refused_but_an_infinite_mask_buffer_is_allowed():
    from deepscope.errors import NonFiniteError

    x, y = small_data()
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).eval()
    model[1].running_var[0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"'1\.running_var' \(layer '1', BatchNorm1d\)"):
        Problem(model, (x, y))

    class Masked(nn.Linear):
        def __init__(self):
            super().__init__(3, 2)
            self.register_buffer("mask", torch.tensor([0.0, float("-inf")]))

        def forward(self, x):
            return super().forward(x) + self.mask.clamp(min=-1e4)

    assert Problem(Masked(), (x, y)).evaluate().n == 20


# ---------------------------------------------------------------------------------- inputs never modified


class DoubleInPlace(nn.Module):
    def forward(self, x):
        return x.mul_(2.0)


def test_an_inplace_first_layer_never_changes_the_callers_data_or_repeated_forwards():
    x, y = small_data()
    before = x.clone()
    model = nn.Sequential(DoubleInPlace(), nn.Linear(3, 2))
    for source in [(x, y), TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=8)]:
        problem = Problem(model, source, batch_size=8)
        problem.evaluate()
        problem.tensors()
        assert torch.equal(x, before)
    problem = Problem(model, (x, y), batch_size=8)
    batch, _ = next(problem.batches())
    params = problem.parameters(trainable_only=False)
    assert torch.equal(problem.forward(params, batch), problem.forward(params, batch))
    assert torch.equal(batch, before[:8])


class _TupleOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, x):
        return self.linear(x), x.sum(1)


def test_output_fn_picks_the_scores_for_forward_loss_and_evaluate():
    x, y = small_data()
    model = _TupleOutput()
    problem = Problem(model, (x, y), output_fn=lambda out: out[0], batch_size=6)
    assert problem.output_shape == (2,) and problem.num_classes == 2
    with torch.no_grad():
        logits = model.linear(x)
        assert torch.equal(problem.forward(problem.parameters(), x), logits)
        assert torch.equal(problem.run(x), logits)
    assert problem.evaluate().loss == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert problem.output_fn is not None


def test_a_tuple_output_without_output_fn_and_a_non_callable_output_fn_are_refused():
    x, y = small_data()
    with pytest.raises(DataError, match="must return a tensor. Got tuple: pass Problem\\(\\.\\.\\., output_fn="):
        Problem(_TupleOutput(), (x, y))
    with pytest.raises(InvalidParameterError, match="output_fn"):
        Problem(_TupleOutput(), (x, y), output_fn=0)


def test_a_regression_output_fn_needs_one_row_per_example():
    x, _ = small_data()
    with pytest.raises(InvalidParameterError, match="one row per example \\(20\\).*gave shape \\(2,\\)"):
        Problem(_TupleOutput(), (x, torch.randn(20, 2)), loss="mse", output_fn=lambda out: out[0][0])
