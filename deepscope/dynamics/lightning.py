"""MonitorCallback: runs a :class:`~deepscope.dynamics.Monitor` inside a Lightning ``Trainer``.

The callback does what the plain-loop recipe does by hand: at the start of training it attaches the
Monitor to the LightningModule (or to a submodule you name), and after every optimizer step it
calls ``monitor.step(loss=..., lr=..., inputs=x, targets=y)`` with the step's loss, the learning
rate the step used (``trainer.optimizers[0].param_groups[0]["lr"]`` read before the step, because
Lightning advances step-wise schedulers before ``on_train_batch_end``) and the batch. What the
Monitor measures and why (sharpness next to ``2/η`` after Cohen et al., 2021; the gradient noise
scale of McCandlish et al., 2018; the Polyak-Łojasiewicz estimate) is described in
:mod:`deepscope.dynamics.monitor`.

Lightning is an optional dependency (``pip install "deepscope[lightning]"``): this module imports
without it, and constructing the callback then raises a :class:`DeepscopeError` that says so.
``import deepscope.dynamics`` never imports Lightning (the name is resolved lazily).

Example::

    from deepscope.dynamics import Monitor, MonitorCallback
    callback = MonitorCallback(Monitor(every=10), loss_fn=torch.nn.functional.cross_entropy)
    lightning.pytorch.Trainer(max_steps=200, callbacks=[callback]).fit(module, loader)
    history = callback.result()      # a DynamicsHistory: rows(), plot(), to_json()
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from deepscope._outputs import OutputFn, check_output_fn
from deepscope.dynamics.monitor import DynamicsHistory, LossFn, Monitor
from deepscope.errors import DeepscopeError, invalid_parameter

__all__ = ["MonitorCallback"]

INSTALL_HINT = 'pip install "deepscope[lightning]"'

try:  # optional dependency: the module must import without it (see MonitorCallback.__init__)
    from lightning.pytorch.callbacks import Callback as _Callback

    _IMPORT_ERROR: ImportError | None = None
except ImportError as error:  # pragma: no cover - exercised by the missing-lightning test
    _Callback = object
    _IMPORT_ERROR = error

BatchToXY = Callable[[Any], tuple[Any, torch.Tensor]]


def _default_batch_to_xy(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a ``(x, y)`` batch (a tuple or list of two tensors)."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise DeepscopeError(
        "MonitorCallback expects each training batch to be a pair (x, y); "
        f"got {type(batch).__name__}. Pass batch_to_xy=lambda batch: (inputs, targets)."
    )


def _loss_of(outputs: Any) -> torch.Tensor | float | None:
    """The loss in what ``training_step`` returned (a tensor, a dict with 'loss', or None)."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict):
        return outputs.get("loss")
    return None


class MonitorCallback(_Callback):
    """Records training dynamics with a :class:`Monitor` from a Lightning ``Trainer`` (module docstring).

    Args:
        monitor: the :class:`Monitor` to drive (its ``every``, tolerances and sample cap apply).
        loss_fn: ``(output, target) -> scalar`` mean loss for sharpness and noise scale; ``None``
            keeps the Monitor's own (and without either, only the per-step records are kept).
        output_fn: picks the scores ``loss_fn`` reads when the watched module returns a tuple, dict
            or ``ModelOutput`` (``lambda out: out.logits``); ``None`` keeps the Monitor's own.
        module: name of the submodule to watch (a dotted path for ``get_submodule``, e.g. ``"net"``);
            ``None`` watches the whole LightningModule, whose ``forward(x)`` must give the output
            ``loss_fn`` expects. Naming the network avoids copying other module attributes.
        batch_to_xy: ``batch -> (inputs, targets)``; the default accepts ``(x, y)`` pairs.

    Each ``fit`` attaches the Monitor afresh in ``on_train_start`` (weights then are the
    initialisation), so a new fit starts a new history. With gradient accumulation the Monitor
    records one step per optimizer step, with the mean loss of the accumulated batches, and measures
    on the last of them.

    Example:
        >>> callback = MonitorCallback(Monitor(every=5), loss_fn=torch.nn.functional.mse_loss)  # doctest: +SKIP
    """

    def __init__(
        self,
        monitor: Monitor,
        loss_fn: LossFn | None = None,
        *,
        output_fn: OutputFn | None = None,
        module: str | None = None,
        batch_to_xy: BatchToXY | None = None,
    ) -> None:
        if _IMPORT_ERROR is not None:
            raise DeepscopeError(
                f"MonitorCallback needs the optional dependency Lightning; install it with {INSTALL_HINT} "
                f"(import failed: {_IMPORT_ERROR})."
            )
        super().__init__()
        if not isinstance(monitor, Monitor):
            raise invalid_parameter("monitor", "MonitorCallback", "a deepscope.dynamics.Monitor", monitor)
        if loss_fn is not None and not callable(loss_fn):
            raise invalid_parameter("loss_fn", "MonitorCallback", "a callable (output, target) -> loss", loss_fn)
        check_output_fn(output_fn, "MonitorCallback")
        if module is not None and not isinstance(module, str):
            raise invalid_parameter("module", "MonitorCallback", "a submodule name (str) or None", module)
        if batch_to_xy is not None and not callable(batch_to_xy):
            raise invalid_parameter("batch_to_xy", "MonitorCallback", "a callable batch -> (x, y)", batch_to_xy)
        self.monitor = monitor
        self.loss_fn = loss_fn
        self.output_fn = output_fn
        self.module = module
        self.batch_to_xy = batch_to_xy or _default_batch_to_xy
        self._reset_window()

    # ------------------------------------------------------------------------------- Lightning hooks
    def on_train_start(self, trainer: Any, pl_module: nn.Module) -> None:
        """Attach the Monitor to the watched module; its weights now are the initialisation."""
        self.monitor.attach(self._watched(pl_module), self.loss_fn, self.output_fn)
        self._reset_window()

    def on_train_batch_start(self, trainer: Any, pl_module: nn.Module, batch: Any, batch_idx: int) -> None:
        """Remember the optimizer-step count and the learning rate this batch's step will use."""
        self._steps_before = trainer.global_step
        optimizers = trainer.optimizers
        self._lr = float(optimizers[0].param_groups[0]["lr"]) if optimizers else None

    def on_train_batch_end(self, trainer: Any, pl_module: nn.Module, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After an optimizer step, record it with the Monitor (accumulating batches are collected)."""
        loss = _loss_of(outputs)
        if loss is not None:
            value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
            if pl_module.automatic_optimization:
                # Lightning returns the loss divided by accumulate_grad_batches (exact for 1)
                value *= trainer.accumulate_grad_batches
            self._losses.append(value)
        if self._steps_before is None or trainer.global_step <= self._steps_before:
            return  # accumulating gradients (or a skipped step): no optimizer step yet
        inputs, targets = self._split(batch)
        step_loss = math.fsum(self._losses) / len(self._losses) if self._losses else math.nan
        self.monitor.step(loss=step_loss, lr=self._lr, inputs=inputs, targets=targets)
        self._losses = []

    # ------------------------------------------------------------------------------- results
    def result(self) -> DynamicsHistory:
        """The Monitor's history so far (a :class:`DynamicsHistory`)."""
        return self.monitor.result()

    # ------------------------------------------------------------------------------- internals
    def _reset_window(self) -> None:
        self._losses: list[float] = []
        self._steps_before: int | None = None
        self._lr: float | None = None

    def _watched(self, pl_module: nn.Module) -> nn.Module:
        if self.module is None:
            return pl_module
        try:
            return pl_module.get_submodule(self.module)
        except AttributeError:
            raise invalid_parameter(
                "module", "MonitorCallback", f"the name of a submodule of {type(pl_module).__name__}", self.module
            ) from None

    def _split(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.batch_to_xy(batch)
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise DeepscopeError(f"MonitorCallback: batch_to_xy must return (inputs, targets); got {type(pair)}.")
        return pair[0], pair[1]
