"""Monitor: watches a training loop for the edge of stability, gradient noise and lazy training.

Every step it records the loss, learning rate, per-layer gradient norms, per-layer update/weight
ratios ``‖Δθ_l‖/‖θ_l‖``, the distance from initialisation ``‖θ_t − θ_0‖`` and a
Polyak-Łojasiewicz estimate ``μ̂ = ‖∇L‖² / (2 (L − L*))`` (Polyak, 1963; Karimi et al., 2016).
Every ``every`` steps, on the batch it is given, it also measures

* the sharpness ``λ_max(∇²L)`` by Lanczos warm-started from the previous top eigenvector, next to
  ``2/η``: gradient descent is stable on a quadratic only while ``λ_max < 2/η``, and full-batch
  training drifts to ``λ_max ≈ 2/η`` (the edge of stability; Cohen et al., 2021);
* the gradient noise scale ``B_simple = tr Σ / |G|²`` (McCandlish et al., 2018);
* the fraction of ReLU units that output zero on every example of the batch.

The Monitor never changes the model it watches: it reads ``.grad`` and the weights after the
optimizer step, and computes its measurements with ``torch.func.functional_call`` on a private
copy of the module (eval mode, hooks removed) with detached copies of the weights and buffers. It
draws no random numbers from the global generator, so training is bit-identical with or without it.

Usage in a plain loop::

    monitor = Monitor(model, loss_fn=nn.functional.cross_entropy, every=10)
    for x, y in loader:
        optimizer.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); optimizer.step()
        monitor.step(loss=loss.item(), lr=optimizer.param_groups[0]["lr"], inputs=x, targets=y)
    history = monitor.result()      # a Result: history.plot(), history.rows()

``deepscope.train(..., monitor=Monitor())`` calls ``attach`` and ``step`` itself.

A model that returns a tuple, dict or ``ModelOutput`` (a HuggingFace classifier) is measured through
``output_fn``, which picks the scores ``loss_fn`` reads (``Monitor(model, loss_fn, output_fn=lambda
out: out.logits)``); inputs may be a tensor, integer token ids or a dict of tensors
(``model(**inputs)``), as everywhere in deepscope (:mod:`deepscope._inputs`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope import _inputs
from deepscope._outputs import OutputFn, check_output_fn
from deepscope._validation import check_float, check_int
from deepscope.curvature._base import batches_of
from deepscope.curvature.hvp import HessianOperator
from deepscope.curvature.lanczos import eigen_result_from_operator
from deepscope.curvature.layers import group_by_layer
from deepscope.dynamics.noise_scale import noise_scale_from_batch
from deepscope.errors import DeepscopeError, invalid_parameter
from deepscope.results import Result

__all__ = ["Monitor", "DynamicsHistory"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


@dataclasses.dataclass(frozen=True)
class DynamicsHistory(Result):
    """What a :class:`Monitor` recorded: per-step lists and, at measured steps, curvature and noise."""

    step: list[int]
    loss: list[float]
    learning_rate: list[float]
    gradient_norm: list[float]
    layers: list[str]
    layer_gradient_norms: list[list[float]]
    update_ratios: list[list[float]]
    distance_from_init: list[float]
    relative_distance_from_init: list[float]
    pl_estimate: list[float]
    measured_step: list[int]
    sharpness: list[float]
    sharpness_hvps: list[int]
    two_over_lr: list[float]
    noise_scale: list[float]
    dead_relu_fraction: list[float | None]

    def rows(self) -> list[dict[str, Any]]:
        index = {s: i for i, s in enumerate(self.step)}
        return [
            {
                "step": s,
                "loss": self.loss[index[s]],
                "learning_rate": self.learning_rate[index[s]],
                "sharpness": self.sharpness[i],
                "two_over_lr": self.two_over_lr[i],
                "noise_scale": self.noise_scale[i],
                "dead_relu_fraction": self.dead_relu_fraction[i],
                "gradient_norm": self.gradient_norm[index[s]],
                "distance_from_init": self.distance_from_init[index[s]],
                "pl_estimate": self.pl_estimate[index[s]],
            }
            for i, s in enumerate(self.measured_step)
        ]

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, axes = new_figure(8.0, 5.2, ncols=2, nrows=2)
        axes[0, 0].semilogy(self.step, np.maximum(self.loss, 1e-12))
        axes[0, 0].set_title("training loss")
        axes[0, 1].plot(self.measured_step, self.sharpness, "o-", ms=3, label="sharpness λ_max")
        axes[0, 1].plot(self.measured_step, self.two_over_lr, "--", color="grey", label="2/η")
        axes[0, 1].set_title("edge of stability")
        axes[0, 1].legend(fontsize=7)
        axes[1, 0].plot(self.step, self.gradient_norm, label="‖∇L‖")
        axes[1, 0].plot(self.step, self.distance_from_init, label="‖θ − θ₀‖")
        axes[1, 0].set_title("gradient norm and distance from init")
        axes[1, 0].legend(fontsize=7)
        finite = [v if math.isfinite(v) else np.nan for v in self.noise_scale]
        axes[1, 1].semilogy(self.measured_step, finite, "o-", ms=3)
        axes[1, 1].set_title("gradient noise scale B_simple")
        for axis in axes[1]:
            axis.set_xlabel("step")
        return figure


class Monitor:
    """Records training dynamics from a plain loop or from ``deepscope.train`` (see module docstring).

    Args:
        model: the model being trained (optional here; ``attach`` sets it).
        loss_fn: ``(output, target) -> scalar`` mean loss (needed for sharpness and noise scale).
        output_fn: picks the scores ``loss_fn`` reads from a model output that is not one tensor
            (``lambda out: out.logits``, ``lambda out: out["logits"]``); ``None`` for a tensor output.
        every: measure sharpness, noise scale and dead ReLUs every this many steps (when inputs
            and targets are passed to ``step``).
        sharpness_tol: Lanczos residual tolerance for the sharpness.
        sharpness_max_iter: most Hessian-vector products per sharpness measurement.
        max_samples: at most this many examples of the batch are used for the measurements.
        reference_loss: ``L*`` in the PL estimate (0 for losses that can be driven to zero).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        loss_fn: LossFn | None = None,
        *,
        output_fn: OutputFn | None = None,
        every: int = 10,
        sharpness_tol: float = 1e-3,
        sharpness_max_iter: int = 30,
        max_samples: int = 256,
        reference_loss: float = 0.0,
    ) -> None:
        self.every = check_int(every, "every", "Monitor", minimum=1)
        self.sharpness_tol = check_float(sharpness_tol, "sharpness_tol", "Monitor", minimum=0.0, strict_minimum=True)
        self.sharpness_max_iter = check_int(sharpness_max_iter, "sharpness_max_iter", "Monitor", minimum=1)
        self.max_samples = check_int(max_samples, "max_samples", "Monitor", minimum=2)
        self.reference_loss = check_float(reference_loss, "reference_loss", "Monitor")
        check_output_fn(output_fn, "Monitor")
        self.model: nn.Module | None = None
        self.loss_fn = loss_fn
        self.output_fn = output_fn
        self._records: dict[str, list] = {}
        if model is not None:
            self.attach(model, loss_fn)

    # ------------------------------------------------------------------------------- protocol
    def attach(self, model: nn.Module, loss_fn: LossFn | None = None, output_fn: OutputFn | None = None) -> None:
        """Start watching ``model`` (its current weights are the initialisation).

        ``loss_fn`` and ``output_fn`` replace the Monitor's own when given (``None`` keeps them).
        """
        if not isinstance(model, nn.Module):
            raise invalid_parameter("model", "Monitor.attach", "a torch.nn.Module", model)
        check_output_fn(output_fn, "Monitor.attach")
        self.model = model
        self.loss_fn = loss_fn if loss_fn is not None else self.loss_fn
        self.output_fn = output_fn if output_fn is not None else self.output_fn
        self._names = [n for n, p in model.named_parameters() if p.requires_grad]
        if not self._names:
            raise DeepscopeError("Monitor found no trainable parameters in the model.")
        self._groups = group_by_layer(self._names)
        self._init = self._weights()
        self._previous = self._weights()
        self._shadow = copy.deepcopy(model).eval()
        for module in self._shadow.modules():
            for hooks in _HOOK_DICTS:
                getattr(module, hooks).clear()
        self._eigenvector: torch.Tensor | None = None
        self._count = 0
        self._records = {f.name: [] for f in dataclasses.fields(DynamicsHistory)}
        self._records["layers"] = list(self._groups)

    def step(
        self,
        loss: float,
        lr: float | None = None,
        inputs: _inputs.Inputs | None = None,
        targets: torch.Tensor | None = None,
    ) -> None:
        """Record one optimizer step (call it after ``optimizer.step()``).

        ``inputs`` (a tensor or a dict of tensors) and ``targets`` are the step's batch; at a measured
        step the first ``max_samples`` examples are used.
        """
        if self.model is None:
            raise DeepscopeError("Monitor.step was called before attach(model, loss_fn).")
        loss = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        lr = math.nan if lr is None else float(lr)
        records = self._records
        current = self._weights()
        params = dict(self.model.named_parameters())
        grad_norms, ratios = [], []
        total_sq = 0.0
        for names in self._groups.values():
            grad_sq = sum(
                float(params[n].grad.detach().double().pow(2).sum()) for n in names if params[n].grad is not None
            )
            update_sq = sum(float((current[n] - self._previous[n]).double().pow(2).sum()) for n in names)
            weight_sq = sum(float(current[n].double().pow(2).sum()) for n in names)
            grad_norms.append(math.sqrt(grad_sq))
            ratios.append(math.sqrt(update_sq / weight_sq) if weight_sq > 0 else math.inf)
            total_sq += grad_sq
        distance = math.sqrt(sum(float((current[n] - self._init[n]).double().pow(2).sum()) for n in self._names))
        init_norm = math.sqrt(sum(float(self._init[n].double().pow(2).sum()) for n in self._names))
        gap = loss - self.reference_loss
        records["step"].append(self._count)
        records["loss"].append(loss)
        records["learning_rate"].append(lr)
        records["gradient_norm"].append(math.sqrt(total_sq))
        records["layer_gradient_norms"].append(grad_norms)
        records["update_ratios"].append(ratios)
        records["distance_from_init"].append(distance)
        records["relative_distance_from_init"].append(distance / init_norm if init_norm > 0 else math.inf)
        records["pl_estimate"].append(total_sq / (2 * gap) if gap > 0 else math.inf)
        if inputs is not None and targets is not None and self.loss_fn is not None and self._count % self.every == 0:
            self._measure(current, _inputs.slice_rows(inputs, 0, self.max_samples), targets[: self.max_samples], lr)
        self._previous = current
        self._count += 1

    def result(self) -> DynamicsHistory:
        """The history so far as a :class:`DynamicsHistory` result."""
        if not self._records:
            raise DeepscopeError("Monitor.result: nothing recorded yet (attach a model and call step).")
        return DynamicsHistory(**{k: list(v) for k, v in self._records.items()})

    # ------------------------------------------------------------------------------- internals
    def _weights(self) -> dict[str, torch.Tensor]:
        params = dict(self.model.named_parameters())
        return {n: params[n].detach().clone() for n in self._names}

    def _measure(
        self, weights: dict[str, torch.Tensor], inputs: _inputs.Inputs, targets: torch.Tensor, lr: float
    ) -> None:
        device = weights[self._names[0]].device
        # a detached copy on the model's device (integer token ids keep their dtype)
        inputs, targets = _inputs.move(_detached(inputs), device, copy=False), targets.detach().to(device)
        buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}
        operator = HessianOperator(
            self._shadow,
            self.loss_fn,
            weights,
            batches_of(inputs, targets),
            buffers=buffers,
            output_fn=self.output_fn,
            owner="Monitor",
        )
        warm = (
            self._eigenvector if self._eigenvector is not None and len(self._eigenvector) == operator.n_params else None
        )
        spectrum = eigen_result_from_operator(
            operator,
            k=1,
            tol=self.sharpness_tol,
            max_iter=self.sharpness_max_iter,
            return_eigenvectors=True,
            init_vector=warm,
            owner="Monitor",
        )
        self._eigenvector = spectrum.eigenvectors[:, 0].detach()
        records = self._records
        records["measured_step"].append(self._count)
        records["sharpness"].append(spectrum.eigenvalues[0])
        records["sharpness_hvps"].append(spectrum.n_hvps)
        records["two_over_lr"].append(2.0 / lr if lr and math.isfinite(lr) and lr > 0 else math.inf)
        noise = math.nan
        if len(targets) >= 2:
            noise = noise_scale_from_batch(
                self._shadow, self.loss_fn, weights, buffers, inputs, targets, output_fn=self.output_fn
            ).noise_scale
        records["noise_scale"].append(noise)
        records["dead_relu_fraction"].append(self._dead_relu_fraction(weights, buffers, inputs))

    @torch.no_grad()
    def _dead_relu_fraction(self, weights, buffers, inputs) -> float | None:
        relus = [m for m in self._shadow.modules() if isinstance(m, nn.ReLU)]
        if not relus:
            return None
        dead, total = [0], [0]

        def count(module, args, output):
            alive = (output.detach() > 0).reshape(output.shape[0], output.shape[1] if output.ndim > 1 else 1, -1)
            units = alive.any(dim=0).any(dim=-1)  # a unit (feature or channel) fires somewhere
            dead[0] += int((~units).sum())
            total[0] += units.numel()

        handles = [m.register_forward_hook(count) for m in relus]
        try:
            if _inputs.is_mapping(inputs):
                torch.func.functional_call(self._shadow, (weights, buffers), (), dict(inputs), strict=False)
            else:
                torch.func.functional_call(self._shadow, (weights, buffers), (inputs,), strict=False)
        finally:
            for handle in handles:
                handle.remove()
        return dead[0] / total[0] if total[0] else None


def _detached(inputs: _inputs.Inputs) -> _inputs.Inputs:
    """The batch cut from any autograd graph (a dict key by key)."""
    if _inputs.is_mapping(inputs):
        return {name: value.detach() for name, value in inputs.items()}  # type: ignore[union-attr]
    return inputs.detach()  # type: ignore[union-attr]
