import time

import pytest
import torch
from torch import nn

from deepscope.errors import DataError, DeepscopeError, InvalidParameterError
from deepscope.guard import bitwise_equal
from deepscope.models import build, train
from deepscope.testing import check_model_untouched, make_fixture


def fixture_data(kind="mlp"):
    fixture = make_fixture(kind)
    half = len(fixture.inputs) // 2
    data = ((fixture.inputs[:half], fixture.targets[:half]), (fixture.inputs[half:], fixture.targets[half:]))
    return fixture, data


def test_same_seed_gives_bit_identical_weights_and_history():
    # the fixture has Dropout and BatchNorm, so both shuffling and dropout randomness are exercised
    fixture, data = fixture_data()
    first = train(fixture.model, data, epochs=3, batch_size=5, seed=7)
    second = train(fixture.model, data, epochs=3, batch_size=5, seed=7)
    assert first.history.to_dict() == second.history.to_dict()
    # 16 examples in batches of 5 (5, 5, 5, 1): the single-example batch is skipped (BatchNorm), 3 steps per epoch
    assert first.history.steps == 9
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert bitwise_equal(a, b), name


def test_different_seeds_give_different_weights():
    fixture, data = fixture_data()
    first = train(fixture.model, data, epochs=2, batch_size=5, seed=0)
    second = train(fixture.model, data, epochs=2, batch_size=5, seed=1)
    assert not all(torch.equal(a, b) for a, b in zip(first.model.parameters(), second.model.parameters()))


def test_callers_model_and_random_state_are_untouched():
    fixture, data = fixture_data("cnn")
    rng_before = torch.get_rng_state()
    run = check_model_untouched(train, fixture.model, fixture.model, data, epochs=2, batch_size=4)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert run.model is not fixture.model
    assert fixture.model.training and not run.model.training
    assert all(p.grad is None for p in run.model.parameters())
    # init_state is the caller's weights; the frozen first parameter stayed frozen and unchanged
    for name, value in fixture.model.state_dict().items():
        assert bitwise_equal(run.init_state[name], value), name
    first_name, first_param = next(iter(run.model.named_parameters()))
    assert not first_param.requires_grad
    assert torch.equal(first_param, fixture.model.state_dict()[first_name])


def test_reaches_high_accuracy_on_digits_quickly(digits):
    torch.manual_seed(0)
    model = build("cnn2d", digits.input_shape, digits.num_classes)
    started = time.perf_counter()
    run = train(model, digits, epochs=4, lr=3e-3)
    elapsed = time.perf_counter() - started
    assert run.history.test_accuracy[-1] > 0.90
    assert run.history.test_accuracy[-1] > run.history.test_accuracy[0] + 0.5
    assert run.history.n_train == 1347 and run.history.n_test == 450
    assert elapsed < 60  # generous: ~1 s alone on one core; the machine is shared


def test_full_batch_sgd_step_matches_the_formula():
    # oracle: one full-batch step of SGD with weight decay is w - lr * (∇L(w) + wd * w) exactly
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [model.weight, model.bias])
    run = train(model, ((x, y), None), epochs=1, optimizer="sgd", lr=0.1, weight_decay=0.01, batch_size=10)
    expected = [p - 0.1 * (g + 0.01 * p) for p, g in zip([model.weight, model.bias], grads)]
    # the batch is shuffled, so the mean gradient is summed in another order: float32 round-off
    torch.testing.assert_close(run.model.weight, expected[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(run.model.bias, expected[1], rtol=1e-6, atol=1e-7)
    assert run.history.test_loss == [None, None]
    assert run.history.generalization_gap is None


def test_callable_optimizer_equals_the_named_one():
    fixture, data = fixture_data()
    named = train(fixture.model, data, epochs=2, optimizer="sgd", lr=0.05, momentum=0.9)
    custom = train(fixture.model, data, epochs=2, optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9))
    assert all(bitwise_equal(a, b) for a, b in zip(named.model.parameters(), custom.model.parameters()))
    with pytest.raises(InvalidParameterError, match="optimizer"):
        train(fixture.model, data, optimizer=lambda p: "not an optimizer")


def test_monitor_protocol():
    class RecordingMonitor:
        def __init__(self):
            self.attached, self.steps = None, []

        def attach(self, model, loss_fn):
            self.attached = (model, loss_fn)

        def step(self, *, loss, lr, inputs, targets):
            self.steps.append((loss, lr, inputs.shape[0], targets.shape[0]))

        def result(self):
            return {"steps": len(self.steps)}

    fixture, data = fixture_data()
    monitor = RecordingMonitor()
    run = train(fixture.model, data, epochs=2, batch_size=6, lr=0.01, monitor=monitor)
    assert monitor.attached[0] is run.model
    assert float(monitor.attached[1](torch.zeros(1, 3), torch.tensor([0]))) == pytest.approx(1.0986, abs=1e-4)
    # 16 examples in batches of 6 -> 3 steps per epoch (6, 6, 4)
    assert len(monitor.steps) == run.history.steps == 6
    assert all(lr == 0.01 and isinstance(loss, float) and n == m for loss, lr, n, m in monitor.steps)
    assert run.monitor == run.history.monitor == {"steps": 6}


def test_regression_uses_mse_and_loss_gap():
    x = torch.randn(40, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    run = train(nn.Sequential(nn.Linear(3, 1), nn.Flatten(0)), ((x[:30], y[:30]), (x[30:], y[30:])), epochs=5, lr=0.05)
    assert run.config["loss"] == "mse"
    assert run.history.train_accuracy == [None] * 6
    assert run.history.train_loss[-1] < run.history.train_loss[0]
    assert run.history.generalization_gap.metric == "loss"


def test_zero_epochs_only_evaluates():
    fixture, data = fixture_data()
    run = train(fixture.model, data, epochs=0)
    assert run.history.epoch == [0] and run.history.steps == 0
    assert all(bitwise_equal(run.model.state_dict()[k], v) for k, v in run.init_state.items())


def test_divergence_is_reported():
    fixture, data = fixture_data()
    with pytest.raises(DeepscopeError, match="diverged"):
        train(fixture.model, data, epochs=1, loss=lambda output, target: output.sum() * float("nan"))


@pytest.mark.parametrize(
    "change,error,match",
    [
        (lambda x, y: ((x, y + 5), None), DataError, r"labels must lie in \[0, 2\]"),
        (lambda x, y: ((x[:, :4], y), None), DataError, "cannot take the training inputs of shape"),
        (lambda x, y: ((x.masked_fill(x > 2, float("nan")), y), None), DataError, "NaN"),
        (lambda x, y: ((x[:0], y[:0]), None), DataError, "empty"),
        (lambda x, y: ((x, y[:-1]), None), DataError, "targets"),
        (lambda x, y: ((x, y.float()), None), DataError, "labels must be integers"),
        (lambda x, y: ((x, y), (x[:, :4], y)), DataError, "differ in shape"),
        (lambda x, y: (x, y, x), DataError, "dataset"),
    ],
)
def test_bad_data_gives_clear_errors(change, error, match):
    fixture, _ = fixture_data()
    x, y = fixture.inputs, fixture.targets
    data = change(x, y)
    if match == "labels must be integers":
        with pytest.raises(error, match=match):
            train(fixture.model, data, loss="cross_entropy")
        return
    with pytest.raises(error, match=match):
        train(fixture.model, data)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"epochs": -1}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"seed": -1}, "seed"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"monitor": object()}, "monitor"),
    ],
)
def test_bad_options_name_the_parameter(kwargs, name):
    fixture, data = fixture_data()
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of train"):
        train(fixture.model, data, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize(
    "dataset,arch,epochs,lr,threshold",
    [
        # thresholds sit well below the measured accuracies (0.99, 1.0, 0.97, 0.95, 0.94) and far above chance
        ("breast_cancer", "mlp", 20, 1e-3, 0.9),
        ("planted_image", "cnn2d", 10, 1e-3, 0.9),
        ("planted_motifs", "cnn1d", 10, 1e-3, 0.9),
        ("digits", "resnet", 5, 3e-3, 0.9),
        ("planted_motifs", "transformer", 10, 3e-3, 0.85),
    ],
)
def test_every_architecture_learns_its_typical_dataset(dataset, arch, epochs, lr, threshold):
    from deepscope.datasets import load

    data = load(dataset, seed=0)
    torch.manual_seed(0)
    run = train(build(arch, data.input_shape, data.num_classes), data, epochs=epochs, lr=lr)
    assert run.history.test_accuracy[-1] > threshold


def test_stop_loss_stops_at_the_first_epoch_under_the_threshold():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    full = train(model, ((x, y), None), epochs=40, lr=1e-2, seed=0)
    threshold = full.history.train_loss[10]
    first = next(i for i, value in enumerate(full.history.train_loss) if value <= threshold)
    stopped = train(model, ((x, y), None), epochs=40, lr=1e-2, seed=0, stop_loss=threshold)
    assert stopped.config["stopped_by"] == "stop_loss"
    assert stopped.config["epochs_run"] == first
    # Same seed, same steps: the stopped run is the full run's prefix, bit for bit.
    assert stopped.history.train_loss == full.history.train_loss[: first + 1]
    never = train(model, ((x, y), None), epochs=3, lr=1e-2, seed=0, stop_loss=1e-12)
    assert never.config["stopped_by"] == "max_epochs" and never.config["epochs_run"] == 3


def test_stop_loss_must_be_positive():
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    with pytest.raises(DeepscopeError, match="stop_loss"):
        train(torch.nn.Linear(2, 2), ((x, y), None), epochs=1, stop_loss=-1.0)


def test_after_epoch_sees_every_epoch_and_can_stop_the_run():
    fixture, data = fixture_data()
    full = train(fixture.model, data, epochs=5, lr=1e-2, seed=0)
    seen = []

    def after_epoch(model, epoch):
        assert not model.training  # called after the evaluation, in eval mode
        seen.append(epoch)
        return epoch == 2

    stopped = train(fixture.model, data, epochs=5, lr=1e-2, seed=0, after_epoch=after_epoch)
    assert seen == [0, 1, 2]
    assert stopped.config["stopped_by"] == "after_epoch" and stopped.config["epochs_run"] == 2
    # same seed, same steps: the stopped run is the full run's prefix, bit for bit
    assert stopped.history.train_loss == full.history.train_loss[:3]
    last = train(fixture.model, data, epochs=2, lr=1e-2, seed=0, after_epoch=lambda model, epoch: epoch == 2)
    assert last.config["stopped_by"] == "after_epoch" and last.config["epochs_run"] == 2
    at_start = train(fixture.model, data, epochs=2, lr=1e-2, seed=0, after_epoch=lambda model, epoch: True)
    assert at_start.config["epochs_run"] == 0 and at_start.history.steps == 0


def test_augment_transforms_every_batch_with_the_seeded_generator():
    fixture, data = fixture_data()
    calls = []

    def augment(inputs, generator):
        calls.append(len(inputs))
        return inputs + 0.1 * torch.randn(inputs.shape, generator=generator)

    first = train(fixture.model, data, epochs=2, lr=1e-2, seed=3, batch_size=4, augment=augment)
    second = train(fixture.model, data, epochs=2, lr=1e-2, seed=3, batch_size=4, augment=augment)
    plain = train(fixture.model, data, epochs=2, lr=1e-2, seed=3, batch_size=4)
    assert sum(calls) == 2 * 2 * len(data[0][0])  # every training example, every epoch, in both runs

    def same(a, b):
        return all(bitwise_equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())

    assert same(first.model, second.model) and not same(first.model, plain.model)


@pytest.mark.parametrize("name", ["augment", "after_epoch"])
def test_hooks_must_be_callable(name):
    fixture, data = fixture_data()
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of train"):
        train(fixture.model, data, epochs=1, **{name: 3})


def test_integer_token_ids_reach_the_model_unchanged_and_booleans_are_refused():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(4 * 6, 3))
    x, y = torch.randint(0, 10, (32, 6)), torch.randint(0, 3, (32,))
    run = train(model, ((x, y), (x, y)), epochs=2, lr=1e-2)
    assert run.history.steps > 0 and run.history.train_accuracy[-1] is not None
    with pytest.raises(DataError, match="train inputs must be floating point .*Got dtype torch.bool"):
        train(model, ((x > 4, y), None), epochs=1)


def test_steps_draw_batches_with_replacement_from_the_given_generator():
    # oracle: the plain loop (Adam, uniform draws with replacement from one generator), bit for bit
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    reference = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    optimizer = torch.optim.Adam(reference.values(), lr=0.05)
    draws = torch.Generator().manual_seed(4)
    for _ in range(12):
        index = torch.randint(0, 40, (8,), generator=draws)
        optimizer.zero_grad()
        output = torch.func.functional_call(model, reference, (x[index],))
        nn.functional.cross_entropy(output, y[index]).backward()
        optimizer.step()
    generator = torch.Generator().manual_seed(4)
    run = train(model, ((x, y), None), steps=12, lr=0.05, batch_size=8, generator=generator, epochs=99)
    for name, value in run.model.named_parameters():
        assert bitwise_equal(value, reference[name].detach()), name
    assert torch.equal(generator.get_state(), draws.get_state())  # the caller's stream went on, as in the loop
    assert run.history.epoch == [0, 1] and run.history.steps == 12  # epochs is not used with steps
    assert run.config["steps"] == 12 and run.config["epochs"] is None and run.config["epochs_run"] == 1
    assert train(model, ((x, y), None), steps=0).history.steps == 0


def test_eval_mode_trains_without_dropout_randomness():
    # oracle: in eval semantics Dropout is the identity, so training equals training the same net without it
    torch.manual_seed(0)
    with_dropout = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))
    without = nn.Sequential(*[nn.Identity() if isinstance(m, nn.Dropout) else m for m in with_dropout])
    data = ((torch.randn(30, 3), torch.randint(0, 2, (30,))), None)
    evaluated = train(with_dropout, data, epochs=2, batch_size=8, mode="eval", seed=1).model
    plain = train(without, data, epochs=2, batch_size=8, seed=1).model
    dropped = train(with_dropout, data, epochs=2, batch_size=8, seed=1).model  # train mode: Dropout active
    assert all(bitwise_equal(a, b) for a, b in zip(evaluated.parameters(), plain.parameters()))
    assert not all(bitwise_equal(a, b) for a, b in zip(dropped.parameters(), plain.parameters()))


@pytest.mark.parametrize(
    ("options", "name"),
    [({"steps": -1}, "steps"), ({"steps": 2.5}, "steps"), ({"mode": "test"}, "mode"), ({"generator": 3}, "generator")],
)
def test_bad_steps_mode_and_generator(options, name):
    data = ((torch.randn(8, 3), torch.randint(0, 2, (8,))), None)
    with pytest.raises(InvalidParameterError, match=rf"^The '{name}' parameter of train must be"):
        train(nn.Linear(3, 2), data, **options)


class _Wrapped(nn.Module):
    """The fixture's network behind a dict output and/or named inputs ``model(x=..., mask=...)``."""

    def __init__(self, net, dict_out, named):
        super().__init__()
        self.net, self.dict_out, self.named = net, dict_out, named

    def forward(self, x, mask=None):
        out = self.net(x * mask if self.named else x)
        return {"logits": out, "features": out.relu()} if self.dict_out else out


@pytest.mark.parametrize("dict_out,named", [(False, False), (True, False), (False, True), (True, True)])
def test_output_fn_and_named_inputs_train_bit_for_bit_as_the_plain_network(dict_out, named):
    # oracle: the plain network trained with the same seed. The wrappers compute the same function (the mask
    # is integer ones), the parameters have the same names, so weights and history must be bit-identical.
    fixture, ((x, y), (xt, yt)) = fixture_data()
    plain = train(_Wrapped(fixture.model, False, False), ((x, y), (xt, yt)), epochs=2, batch_size=5, seed=3)

    def inputs(v):
        return {"x": v, "mask": torch.ones(v.shape, dtype=torch.long)} if named else v

    run = train(
        _Wrapped(fixture.model, dict_out, named),
        ((inputs(x), y), (inputs(xt), yt)),
        epochs=2,
        batch_size=5,
        seed=3,
        output_fn=(lambda out: out["logits"]) if dict_out else None,
    )
    assert run.history.to_dict() == plain.history.to_dict()
    for (name, a), b in zip(plain.model.state_dict().items(), run.model.state_dict().values()):
        assert bitwise_equal(a, b), name


def test_a_dict_output_without_output_fn_says_to_pass_it():
    fixture, data = fixture_data()
    with pytest.raises(DataError, match="output_fn=lambda out"):
        train(_Wrapped(fixture.model, True, False), data, epochs=1)
    with pytest.raises(InvalidParameterError, match="output_fn"):
        train(fixture.model, data, epochs=1, output_fn="logits")


def test_a_monitor_reads_the_scores_output_fn_picks():
    # oracle: the plain network trained and monitored with the same seed; the dict-output wrapper computes
    # the same function, so the Monitor's records (sharpness, noise scale included) are bit-identical
    from deepscope.dynamics import Monitor

    fixture, data = fixture_data()
    plain = train(_Wrapped(fixture.model, False, False), data, epochs=1, batch_size=5, seed=3, monitor=Monitor(every=2))
    pick = lambda out: out["logits"]  # noqa: E731
    monitor = Monitor(every=2)
    run = train(
        _Wrapped(fixture.model, True, False), data, epochs=1, batch_size=5, seed=3, monitor=monitor, output_fn=pick
    )
    assert monitor.output_fn is pick
    ours, expected = run.monitor.to_dict(), plain.monitor.to_dict()
    assert ours["measured_step"] == expected["measured_step"] and len(ours["sharpness"]) >= 2
    assert ours == expected
