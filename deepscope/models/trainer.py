"""A small, seeded trainer: same seed, same numbers, bit for bit on CPU.

``train(model, dataset, ...)`` trains a DEEP COPY of the model with mini-batch gradient descent
(Adam, Kingma & Ba 2015; AdamW, Loshchilov & Hutter 2019; or SGD with momentum, Polyak 1964) on
the empirical risk ``L(w) = (1/n) Σ ℓ(f_w(x_i), y_i)``. The caller's model is never changed.
Shuffling uses its own ``torch.Generator`` and Dropout draws from torch's global generator
seeded inside ``torch.random.fork_rng``, so the caller's random state is left as it was and two
calls with the same seed give bit-identical weights and history on CPU. After every epoch the
copy is evaluated in eval mode on the whole train and test splits (epoch 0 is the initial model).

It is deepscope's one training loop: the generalization diagnostics retrain on it, and the
data-dependent PAC-Bayes prior is learned on it with ``steps`` (a fixed number of steps on
mini-batches drawn with replacement), ``generator`` (the caller's random stream) and
``mode="eval"`` (the eval semantics every analysis runs under).

Example:
    >>> import torch
    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> run = train(torch.nn.Linear(4, 2), ((x, y), (x, y)), epochs=2)
    >>> len(run.history.epoch)
    3
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from deepscope import _inputs
from deepscope._finite import describe_nonfinite, nonfinite_tensors
from deepscope._forward import first_forward
from deepscope._outputs import OutputFn, check_output_fn, select_output
from deepscope._validation import check_float, check_int, check_seed
from deepscope.errors import DataError, DeepscopeError, invalid_parameter
from deepscope.models._train_data import check_split, on_device, scores, unpack
from deepscope.models.history import TrainingHistory, TrainingRun
from deepscope.problem import resolve_loss

__all__ = ["train", "TrainingRun", "TrainingHistory", "OPTIMIZERS"]

OPTIMIZERS = ("adam", "adamw", "sgd")
MODES = ("train", "eval")


def _make_optimizer(
    optimizer: str | Callable[..., torch.optim.Optimizer], params: list[nn.Parameter], lr: float, wd: float, mom: float
) -> torch.optim.Optimizer:
    if callable(optimizer) and not isinstance(optimizer, str):
        built = optimizer(params)
        if not isinstance(built, torch.optim.Optimizer):
            raise invalid_parameter("optimizer", "train", "a callable returning a torch.optim.Optimizer", built)
        return built
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=mom, weight_decay=wd)
    raise invalid_parameter(
        "optimizer", "train", "one of 'adam', 'adamw', 'sgd' or a callable params -> optimizer", optimizer
    )


def _evaluate(model, loss_fn, x, y, classify, device, dtype, batch, output_fn=None) -> tuple[float, float | None]:
    """Mean loss (and accuracy) of ``model`` on ``(x, y)`` in chunks of ``batch``; ``x`` a tensor or a dict."""
    total, correct = 0.0, 0
    n = len(y)
    with torch.no_grad():
        for start in range(0, n, batch):
            xb = on_device(_inputs.slice_rows(x, start, start + batch), device, dtype)
            yb = y[start : start + batch].to(device)
            output = scores(model, xb, output_fn)
            total += float(loss_fn(output, yb)) * len(yb)
            if classify:
                correct += int((output.argmax(dim=-1) == yb).sum())
    return total / n, (correct / n if classify else None)


def train(
    model: nn.Module,
    dataset: Any,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    optimizer: str | Callable[..., torch.optim.Optimizer] = "adam",
    batch_size: int = 64,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    seed: int = 0,
    loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    monitor: Any = None,
    progress: bool = False,
    device: torch.device | str | None = None,
    stop_loss: float | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    after_epoch: Callable[[nn.Module, int], bool | None] | None = None,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    mode: str = "train",
    output_fn: OutputFn | None = None,
) -> TrainingRun:
    """Train a deep copy of ``model`` on ``dataset`` with a fixed seed and return it with its history.

    Args:
        model: any ``nn.Module`` (left untouched: a deep copy is trained).
        dataset: a :class:`~deepscope.data.DatasetSplits`, or ``((X_train, y_train), (X_test, y_test))``
            (the test pair may be None). ``X``: ``(n, *input_shape)`` floats, integer token ids
            (passed unchanged), or a dict of such tensors (passed as ``model(**X)``); ``y``: ``(n,)`` integer labels (classification) or floats (regression).
        epochs: passes over the training data (0 only evaluates; not used when ``steps`` is given).
        lr: learning rate (ignored when ``optimizer`` is a callable).
        optimizer: "adam", "adamw", "sgd", or a callable ``params -> torch.optim.Optimizer``.
        batch_size: mini-batch size (a final batch of one example is skipped, for BatchNorm).
        weight_decay: L2 penalty (decoupled for "adamw").
        momentum: SGD momentum.
        seed: seeds the shuffling generator and Dropout; same seed => bit-identical result on CPU.
        loss: a loss name or callable; default "cross_entropy" for classification, "mse" for regression.
        monitor: an object with ``attach(model, loss_fn)``, ``step(loss=, lr=, inputs=, targets=)``
            and ``result()`` (e.g. ``deepscope.dynamics.Monitor``), called around every optimizer step;
            with ``output_fn`` it is attached as ``attach(model, loss_fn, output_fn)``, so its sharpness and
            noise scale read the same scores as the training loss.
        progress: show a tqdm progress bar (on stderr).
        device: where to train; defaults to the model's device.
        stop_loss: the stop rule of Jiang et al. (2020): stop at the end of the first epoch whose
            training loss (evaluated on the whole train split, eval mode) is at most this value;
            ``epochs`` is then the maximum. ``run.config["stopped_by"]`` says which rule ended
            training ("stop_loss", "after_epoch" or "max_epochs") and ``run.config["epochs_run"]`` how
            many epochs ran.
        augment: ``augment(inputs, generator) -> inputs``, applied to every training mini-batch with
            the shuffling generator (so augmentation is seeded too); e.g. random shifts.
        after_epoch: ``after_epoch(model, epoch) -> bool``, called with the copy in eval mode after the
            evaluation of each epoch (epoch 0 = the initial weights) to record more of the run or to
            stop it: returning True ends training there. It must not change the weights.
        steps: train for exactly this many optimizer steps, each on ``min(batch_size, n)`` examples
            drawn uniformly with replacement (the sampling model of SGD's analyses), instead of
            ``epochs`` shuffled passes; the history then has epoch 0 (the initial weights) and
            epoch 1 (after the steps). None (default): epochs.
        generator: draw the mini-batches (and ``augment``'s randomness) from this CPU generator, so the
            caller's random stream goes on after training; default: a generator seeded with ``seed``.
        mode: "train" (default) runs the training steps in train mode (Dropout active, BatchNorm on batch
            statistics); "eval" runs them in eval semantics, as analyses under ``model_guard`` do.
        output_fn: picks the scores from a model that returns a tuple, dict or ``ModelOutput``
            (``lambda out: out["logits"]``), as :class:`deepscope.Problem` does; None: the output itself.

    Returns:
        A :class:`TrainingRun` with the trained copy (eval mode), its initial ``state_dict`` and
        the per-epoch :class:`TrainingHistory` (``history.generalization_gap`` gives the final gap).

    Raises:
        DataError: empty data, NaN inputs, mismatched shapes, labels outside the model's outputs.
        DeepscopeError: the loss became NaN or infinite (diverged).
    """
    if not isinstance(model, nn.Module):
        raise invalid_parameter("model", "train", "a torch.nn.Module", model)
    epochs = check_int(epochs, "epochs", "train", minimum=0)
    batch_size = check_int(batch_size, "batch_size", "train", minimum=1)
    seed = check_seed(seed, "train")
    if isinstance(optimizer, str) or not callable(optimizer):
        if optimizer not in OPTIMIZERS:
            raise invalid_parameter(
                "optimizer", "train", "one of 'adam', 'adamw', 'sgd' or a callable params -> optimizer", optimizer
            )
        lr = check_float(lr, "lr", "train", minimum=0.0, strict_minimum=True)
        weight_decay = check_float(weight_decay, "weight_decay", "train", minimum=0.0)
        momentum = check_float(momentum, "momentum", "train", minimum=0.0, maximum=1.0)
    if stop_loss is not None:
        stop_loss = check_float(stop_loss, "stop_loss", "train", minimum=0.0, strict_minimum=True)
    if monitor is not None and not all(callable(getattr(monitor, m, None)) for m in ("attach", "step", "result")):
        raise invalid_parameter("monitor", "train", "an object with attach(), step() and result() methods", monitor)
    for name, hook in (("augment", augment), ("after_epoch", after_epoch)):
        if hook is not None and not callable(hook):
            raise invalid_parameter(name, "train", "a callable or None", hook)
    if steps is not None:
        steps = check_int(steps, "steps", "train", minimum=0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise invalid_parameter("generator", "train", "a torch.Generator or None", generator)
    if mode not in MODES:
        raise invalid_parameter("mode", "train", "'train' or 'eval'", mode)
    check_output_fn(output_fn, "train")

    x_train, y_train, x_test, y_test, task = unpack(dataset)
    if loss in ("cross_entropy", "nll"):
        task = "classification"  # float labels then give a clear error below
    check_split(x_train, y_train, "train", task)
    if x_test is not None and y_test is not None:
        check_split(x_test, y_test, "test", task)
        if _inputs.example_shape(x_test) != _inputs.example_shape(x_train):
            raise DataError(
                f"Train and test inputs differ in shape: {_inputs.example_shape(x_train)} vs "
                f"{_inputs.example_shape(x_test)} per example."
            )
    loss_name, loss_fn = resolve_loss(
        loss if loss is not None else ("cross_entropy" if task == "classification" else "mse"), "train"
    )
    classify = task == "classification" and loss_name not in ("mse", "bce_with_logits")

    first = next(iter(model.parameters()), None)
    target_device = (
        torch.device(device) if device is not None else (first.device if first is not None else torch.device("cpu"))
    )
    trained = copy.deepcopy(model).to(target_device)
    params = [p for p in trained.parameters() if p.requires_grad]
    if not params:
        raise invalid_parameter("model", "train", "a module with at least one trainable parameter", model)
    dtype = next((p.dtype for p in trained.parameters() if p.is_floating_point()), torch.float32)
    for p in trained.parameters():
        p.grad = None

    fork_devices = [target_device.index or 0] if target_device.type == "cuda" else []
    started = time.perf_counter()
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        shuffler = generator if generator is not None else torch.Generator().manual_seed(seed)
        init_state = {k: v.detach().clone() for k, v in trained.state_dict().items()}
        _probe(trained, loss_fn, x_train, y_train, x_test, y_test, classify, target_device, dtype, output_fn)
        opt = _make_optimizer(optimizer, params, lr, weight_decay, momentum)
        if monitor is not None and output_fn is None:
            monitor.attach(trained, loss_fn)
        elif monitor is not None:  # the monitor's sharpness and noise scale read the scores output_fn picks
            monitor.attach(trained, loss_fn, output_fn)
        curves: dict[str, list[Any]] = {
            k: [] for k in ("epoch", "train_loss", "test_loss", "train_accuracy", "test_accuracy")
        }
        eval_batch = max(batch_size, 256)

        def record(epoch: int) -> None:
            trained.eval()
            train_loss, train_acc = _evaluate(
                trained, loss_fn, x_train, y_train, classify, target_device, dtype, eval_batch, output_fn
            )
            test_loss = test_acc = None
            if x_test is not None:
                test_loss, test_acc = _evaluate(
                    trained, loss_fn, x_test, y_test, classify, target_device, dtype, eval_batch, output_fn
                )
            for key, value in zip(curves, (epoch, train_loss, test_loss, train_acc, test_acc)):
                curves[key].append(value)

        def asked_to_stop(epoch: int) -> bool:
            return after_epoch is not None and bool(after_epoch(trained, epoch))

        n = len(y_train)

        def batches():
            """Index tensors of one epoch: a shuffled pass, or ``steps`` draws with replacement."""
            if steps is not None:
                for _ in range(steps):
                    yield torch.randint(0, n, (min(batch_size, n),), generator=shuffler)
                return
            order = torch.randperm(n, generator=shuffler)
            for start in range(0, n, batch_size):
                index = order[start : start + batch_size]
                if len(index) > 1 or n == 1:  # a final batch of one example is skipped, for BatchNorm
                    yield index

        record(0)
        stop_asked = asked_to_stop(0)
        taken = 0
        stopped_by = "max_epochs"
        passes = epochs if steps is None else 1
        bar = tqdm(range(1, passes + 1), desc="training", unit="epoch", disable=not progress, leave=False)
        try:
            for epoch in bar:
                if stop_asked:
                    stopped_by = "after_epoch"
                    break
                if stop_loss is not None and curves["train_loss"][-1] <= stop_loss:
                    stopped_by = "stop_loss"
                    break
                trained.train(mode == "train")
                for index in batches():
                    xb = on_device(_inputs.rows(x_train, index), target_device, dtype)
                    if augment is not None:
                        xb = augment(xb, shuffler)
                    yb = y_train[index].to(target_device)
                    opt.zero_grad(set_to_none=True)
                    value = loss_fn(scores(trained, xb, output_fn), yb)
                    if not bool(torch.isfinite(value)):
                        raise DeepscopeError(
                            f"Training diverged: the loss became {float(value.detach())} at epoch {epoch}, step {taken + 1}. "
                            "Try a smaller learning rate."
                        )
                    value.backward()
                    opt.step()
                    taken += 1
                    if monitor is not None:
                        monitor.step(
                            loss=float(value.detach()), lr=float(opt.param_groups[0]["lr"]), inputs=xb, targets=yb
                        )
                record(epoch)
                stop_asked = asked_to_stop(epoch)
                postfix = {"train_loss": f"{curves['train_loss'][-1]:.4f}"}
                if curves["test_accuracy"][-1] is not None:
                    postfix["test_acc"] = f"{curves['test_accuracy'][-1]:.3f}"
                bar.set_postfix(postfix)
            else:
                if stop_asked:
                    stopped_by = "after_epoch"
                elif stop_loss is not None and curves["train_loss"][-1] <= stop_loss:
                    stopped_by = "stop_loss"
        finally:
            bar.close()
    found = nonfinite_tensors(trained)
    if found:  # the last step can leave NaN weights although every loss seen was finite
        raise DeepscopeError(
            f"Training diverged: the weights are not finite after the last step: {describe_nonfinite(trained, found)}. "
            "Try a smaller learning rate."
        )
    seconds = time.perf_counter() - started
    trained.eval()
    opt.zero_grad(set_to_none=True)
    monitor_result = monitor.result() if monitor is not None else None
    history = TrainingHistory(
        **curves, n_train=n, n_test=0 if y_test is None else len(y_test), steps=taken, monitor=monitor_result
    )
    config = {
        "epochs": epochs if steps is None else None,
        "steps": steps,
        "mode": mode,
        "lr": lr if isinstance(optimizer, str) else None,
        "optimizer": optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", "callable"),
        "batch_size": batch_size,
        "weight_decay": weight_decay,
        "momentum": momentum,
        "seed": seed,
        "loss": loss_name,
        "device": str(target_device),
        "stop_loss": stop_loss,
        "stopped_by": stopped_by,
        "epochs_run": curves["epoch"][-1],
    }
    return TrainingRun(trained, init_state, history, monitor_result, config, seconds)


def _probe(model, loss_fn, x_train, y_train, x_test, y_test, classify, device, dtype, output_fn=None) -> None:
    """Run one small eval batch to check input shape, output width and label range (clear errors)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = first_forward(
                lambda inputs: _inputs.call_model(model, inputs),
                on_device(_inputs.slice_rows(x_train, 0, 2), device, dtype),
                "training inputs",
            )
    finally:
        model.train(was_training)
    if output_fn is None and not isinstance(output, torch.Tensor):
        raise DataError(
            f"The model must return a tensor. Got {type(output).__name__}: pass "
            "output_fn=lambda out: out.logits (or out[0], out['logits']) to pick the scores."
        )
    output = select_output(output, output_fn, "train")
    if classify:
        classes = output.shape[-1] if output.ndim > 1 else 1
        for split, y in (("train", y_train), ("test", y_test)):
            if y is None:
                continue
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= classes:
                raise DataError(
                    f"The {split} labels must lie in [0, {classes - 1}] for a model with {classes} outputs. "
                    f"Got labels in [{low}, {high}]."
                )
    else:
        try:
            with torch.no_grad():
                loss_fn(output, y_train[:2].to(device))
        except (RuntimeError, ValueError) as error:
            raise DataError(
                f"The targets of shape {tuple(y_train.shape[1:])} per example do not fit the model's output "
                f"of shape {tuple(output.shape[1:])}: {str(error).splitlines()[0]}"
            ) from error
