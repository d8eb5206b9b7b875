"""Linearised (NTK) training dynamics for the squared loss next to actual training, and kernel drift.

Linearising the network around its initial weights, ``f_t(x) ≈ f_0(x) + J_0(x)(θ_t − θ_0)``, turns
full-batch gradient descent on ``L = ‖f − Y‖² / (nC)`` (``torch``'s mean squared error over the
``n × C`` outputs) into a linear recursion for the training residual ``r = vec(f − Y)``:
``r_{t+1} = (I − 2η Θ₀ / (nC)) r_t``, so along eigenvector ``i`` of the NTK the residual decays by
``(1 − 2ηλ_i/(nC))`` per step (Jacot et al., 2018; Lee et al., 2019; Du et al., 2019). In the lazy
regime (wide nets, small steps) actual training follows this prediction and the kernel barely
moves; in the feature-learning regime the kernel drifts, ``‖Θ_t − Θ₀‖_F / ‖Θ₀‖_F`` grows, and the
prediction fails (Chizat, Oyallon & Bach, 2019).

Example:
    >>> result = ntk_dynamics(model, x, y, lr=0.1, steps=100)  # doctest: +SKIP
    >>> result.plot()                                          # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope._outputs import OutputFn, check_output_fn, select_output
from deepscope._validation import check_float, check_int
from deepscope.curvature.ntk import ntk
from deepscope.errors import DataError, invalid_parameter
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["NTKDynamicsResult", "ntk_dynamics"]


@dataclasses.dataclass(frozen=True)
class NTKDynamicsResult(Result):
    """Predicted (linearised) and actual training loss per step, and the kernel drift at checkpoints."""

    steps: list[int]
    predicted_loss: list[float]
    actual_loss: list[float]
    drift_steps: list[int]
    kernel_drift: list[float]
    learning_rate: float
    stable_learning_rate: float
    n_inputs: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        drift = dict(zip(self.drift_steps, self.kernel_drift))
        return [
            {"step": s, "predicted_loss": p, "actual_loss": a, "kernel_drift": drift.get(s)}
            for s, p, a in zip(self.steps, self.predicted_loss, self.actual_loss)
            if s in drift or s == self.steps[-1]
        ]

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, axes = new_figure(7.5, 3.0, ncols=2)
        axes[0].semilogy(self.steps, np.maximum(self.actual_loss, 1e-16), label="actual training")
        axes[0].semilogy(self.steps, np.maximum(self.predicted_loss, 1e-16), "--", label="linearised (NTK at init)")
        axes[0].set_xlabel("step")
        axes[0].set_ylabel("training loss (MSE)")
        axes[0].legend(fontsize=7)
        axes[1].plot(self.drift_steps, self.kernel_drift, "o-", ms=3)
        axes[1].set_xlabel("step")
        axes[1].set_title("kernel drift ‖Θ_t − Θ₀‖/‖Θ₀‖")
        return figure


@analysis(
    takes="model_inputs",
    family="curvature",
    # the conformance fixture ("mlp", 3 classes) passes 8 inputs; these are 8 labels for them
    example_kwargs={"targets": torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), "lr": 0.01, "steps": 2},
)
def ntk_dynamics(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    lr: float = 0.1,
    steps: int = 100,
    n_checkpoints: int = 5,
    output_fn: OutputFn | None = None,
) -> NTKDynamicsResult:
    """Full-batch gradient descent on the squared loss (on a copy) next to its NTK linearisation.

    ``r_{t+1} = (I − 2ηΘ₀/(nC)) r_t`` (Jacot et al., 2018; Lee et al., 2019); drift ``‖Θ_t − Θ₀‖/‖Θ₀‖``.

    Args:
        model: the network (a deep copy is trained; the model itself is never changed).
        inputs: (n, *features) training inputs (a few hundred at most: the NTK is ``nC × nC``).
        targets: (n,) class labels (one-hot encoded) or (n, C) real targets.
        lr: gradient-descent step size η.
        steps: number of full-batch steps.
        n_checkpoints: how many times the kernel is recomputed to measure its drift.
        output_fn: for a model returning a tuple or dict, picks the output that is trained and analysed.

    Returns:
        An :class:`NTKDynamicsResult`; ``stable_learning_rate = nC/λ_max(Θ₀)`` is the largest step for
        which the linearised dynamics converge.

    Example:
        >>> ntk_dynamics(model, x, y, lr=0.05, steps=50).kernel_drift[-1]  # doctest: +SKIP
    """
    check_float(lr, "lr", "ntk_dynamics", minimum=0.0, strict_minimum=True)
    check_int(steps, "steps", "ntk_dynamics", minimum=1)
    check_int(n_checkpoints, "n_checkpoints", "ntk_dynamics", minimum=1)
    check_output_fn(output_fn, "ntk_dynamics")
    if targets is None:
        raise invalid_parameter("targets", "ntk_dynamics", "a tensor of targets (labels or real values)", None)
    student = copy.deepcopy(model).eval()
    for module in student.modules():  # the copy is ours: user hooks must not see its training
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            getattr(module, hooks).clear()
    parameters = [p for p in student.parameters() if p.requires_grad]
    first = parameters[0] if parameters else None
    dtype = first.dtype if first is not None else torch.float32
    inputs = inputs.detach().to(device=first.device if first is not None else None, dtype=dtype)
    start = ntk(student, inputs, mode="full", output_fn=output_fn)

    def forward() -> torch.Tensor:
        return select_output(student(inputs), output_fn, "ntk_dynamics").reshape(n, -1)

    n, n_outputs = start.n_inputs, start.n_outputs
    labels = _targets(targets, n, n_outputs, dtype, inputs.device)
    kernel0 = start.kernel.to(dtype)
    with torch.no_grad():
        residual = (forward() - labels).reshape(-1)
    transition = torch.eye(n * n_outputs, dtype=dtype, device=inputs.device) - 2 * lr * kernel0 / (n * n_outputs)
    optimizer = torch.optim.SGD(parameters, lr=lr)
    checkpoints = set(np.linspace(0, steps, n_checkpoints + 1).round().astype(int).tolist())
    predicted, actual, drift_steps, drift = [], [], [], []
    for step in range(steps + 1):
        predicted.append(float(residual.pow(2).mean()))
        if step in checkpoints:
            kernel = ntk(student, inputs, mode="full", output_fn=output_fn).kernel.to(dtype)
            drift_steps.append(step)
            drift.append(float((kernel - kernel0).norm() / kernel0.norm()))
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(forward(), labels)
        if not bool(torch.isfinite(loss)):
            raise DataError(f"Training diverged at step {step} (loss {float(loss)}); use a smaller lr.")
        actual.append(float(loss.detach()))
        if step < steps:
            loss.backward()
            optimizer.step()
        residual = transition @ residual
    from deepscope.guard import current_guard_report

    report = current_guard_report(model)
    return NTKDynamicsResult(
        steps=list(range(steps + 1)),
        predicted_loss=predicted,
        actual_loss=actual,
        drift_steps=drift_steps,
        kernel_drift=drift,
        learning_rate=lr,
        stable_learning_rate=n * n_outputs / start.eigenvalues[0],
        n_inputs=n,
        note=report.note if report is not None else "",
    )


def _targets(targets: torch.Tensor, n: int, n_outputs: int, dtype: torch.dtype, device: Any) -> torch.Tensor:
    if not isinstance(targets, torch.Tensor) or len(targets) != n:
        raise invalid_parameter("targets", "ntk_dynamics", f"a tensor with {n} rows", targets)
    if not targets.is_floating_point():
        if n_outputs == 1:
            return targets.reshape(n, 1).to(device=device, dtype=dtype)
        return nn.functional.one_hot(targets.long(), n_outputs).to(device=device, dtype=dtype)
    targets = targets.reshape(n, -1).to(device=device, dtype=dtype)
    if targets.shape[1] != n_outputs:
        raise invalid_parameter("targets", "ntk_dynamics", f"(n, {n_outputs}) real targets", targets)
    return targets
