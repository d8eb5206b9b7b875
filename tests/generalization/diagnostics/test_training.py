"""The diagnostics' retraining runs on deepscope's one trainer and one fresh copy, with the same numbers.

``_reference_fit`` is the diagnostics' own loop as it was before they moved onto
:func:`deepscope.models.train` (issue 14): the numbers are pinned against it, bit for bit.
"""

import copy

import pytest
import torch
from torch import nn

from deepscope.generalization.diagnostics._training import error_rate, fit, fresh_copy
from deepscope.generalization.diagnostics.regularisation import random_shift
from deepscope.guard import bitwise_equal
from deepscope.testing import make_fixture


def _reference_fit(model, train, test, *, epochs, lr, batch_size, weight_decay=0.0, seed=0, augment=None,
                   stop_at_train_accuracy=None, validation=None):  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        generator = torch.Generator(device="cpu").manual_seed(seed)
        torch.manual_seed(seed)
        x, y = train
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        train_accuracy, test_accuracy = [1 - error_rate(model, x, y)], []
        if test is not None:
            test_accuracy.append(1 - error_rate(model, *test))
        best_error = best_state = best_epoch = None
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.randperm(len(x), generator=generator).to(x.device)
            for start in range(0, len(x), batch_size):
                index = order[start : start + batch_size]
                if len(index) < 2:
                    continue
                inputs = x[index] if augment is None else augment(x[index], generator)
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(inputs), y[index]).backward()
                optimizer.step()
            model.eval()
            train_accuracy.append(1 - error_rate(model, x, y))
            if test is not None:
                test_accuracy.append(1 - error_rate(model, *test))
            if validation is not None:
                error = error_rate(model, *validation)
                if best_error is None or error < best_error:
                    best_error, best_state, best_epoch = error, copy.deepcopy(model.state_dict()), epoch
            if stop_at_train_accuracy is not None and train_accuracy[-1] >= stop_at_train_accuracy:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        return train_accuracy, test_accuracy, best_epoch


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"stop_at_train_accuracy": 0.4},
        {"validation": "test"},
        {"weight_decay": 0.01},
        {"augment": random_shift},
    ],
    ids=["plain", "stop", "validation", "weight_decay", "augment"],
)
def test_fit_gives_the_numbers_of_the_previous_loop_bit_for_bit(kind, options):
    fixture = make_fixture(kind)
    problem = fixture.problem()
    if kind == "mlp" and "augment" in options:
        pytest.skip("augmentation shifts spatial axes: the mlp has none")
    x, y = problem.tensors("train")
    test = problem.tensors("test")
    options = {**options, "validation": test} if "validation" in options else options
    reference_model, model = fresh_copy(problem, 3), fresh_copy(problem, 3)
    expected = _reference_fit(reference_model, (x, y), test, epochs=6, lr=1e-2, batch_size=5, seed=7, **options)
    history = fit(model, (x, y), test, epochs=6, lr=1e-2, batch_size=5, seed=7, **options)
    assert (history.train_accuracy, history.test_accuracy, history.best_epoch) == expected
    assert history.model is model and not model.training
    for name, value in reference_model.state_dict().items():
        assert bitwise_equal(model.state_dict()[name], value), name
    assert all(p.grad is None for p in model.parameters())


def test_fresh_copy_is_the_shared_initial_copy():
    fixture = make_fixture("cnn")
    problem = fixture.problem()
    copy_ = fresh_copy(problem, 0)
    for name, value in problem.init_state.items():
        assert bitwise_equal(copy_.state_dict()[name], value.to(copy_.state_dict()[name].dtype)), name


def test_fit_on_integer_token_ids_matches_the_previous_loop():
    """Token ids go to the model unchanged (the trainer used to refuse non-float inputs)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(4 * 6, 3))
    x, y = torch.randint(0, 10, (32, 6)), torch.randint(0, 3, (32,))
    reference_model, trained = copy.deepcopy(model), copy.deepcopy(model)
    expected = _reference_fit(reference_model, (x, y), None, epochs=3, lr=1e-2, batch_size=8, seed=1)
    history = fit(trained, (x, y), None, epochs=3, lr=1e-2, batch_size=8, seed=1)
    assert (history.train_accuracy, history.test_accuracy, history.best_epoch) == expected
    for name, value in reference_model.state_dict().items():
        assert bitwise_equal(trained.state_dict()[name], value), name
