"""Cost bounds for the report's blocks: measure one pass, estimate each block before it runs, fit or decline.

The unit of cost is one *example pass*: the forward and backward pass of one training example
through the model, plus a fixed cost per *call* (one batched forward + backward, whatever its size:
Python and framework overhead, which dominates small models). :func:`pass_cost` measures both once
per audit, on one and on eight training examples, and caches them in ``context.cache``; each block
then says how many example passes and calls it needs (:class:`Estimate`; a forward-only pass is
priced by its own measured ratio), and either runs as asked, shrinks its sample
to fit its share of the budget (:func:`fit_count`, the block states the smaller sample and its
error), or declines with a one-line reason (:func:`declined`).

Budgets: "quick" gives each block :data:`BLOCK_SECONDS` ``["quick"]`` seconds (the whole audit of a
ResNet-18 on 256 CIFAR-sized examples took 240 s on one thread, bench/resnet18_audit.py); "full" gives each block ten
minutes. The estimates are within a small factor of the measured time (a block's cost is dominated
by its passes, which are timed on the same model and inputs); the bench ``bench/resnet18_audit.py``
records both.

Example:
    >>> estimate = Estimate("Hessian spectrum", passes=4000, unit_seconds=0.01, budget_seconds=20)
    >>> estimate.fits, round(estimate.seconds)
    (False, 40)
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import torch

from deepscope._inputs import batch_length, slice_rows
from deepscope.guard import model_guard
from deepscope.problem import Problem
from deepscope.report.sections import Part, Text

__all__ = ["BLOCK_SECONDS", "PassCost", "Estimate", "pass_cost", "block_seconds", "fit_count", "declined"]

# seconds each block may take, by budget
BLOCK_SECONDS: dict[str, float] = {"quick": 20.0, "full": 600.0}
_CACHE_KEY = "report.pass_cost"
_PROBE_EXAMPLES = 8
_REPEATS = 3


@dataclasses.dataclass(frozen=True)
class PassCost:
    """The measured cost of forward + backward passes: ``call_seconds + examples * seconds`` per call.

    Attributes:
        seconds: wall-clock seconds per example for forward + backward (the unit of every estimate).
        forward_seconds: seconds per example of a forward pass without gradients.
        parameters: trainable parameters of the model.
        examples: examples of the larger timed batch.
        call_seconds: fixed seconds of one forward + backward call, whatever its batch (Python and
            framework overhead: it dominates small models, where an HVP on 100 examples costs about
            what one on a single example does).
        forward_call_seconds: the same for a forward pass without gradients.
    """

    seconds: float
    forward_seconds: float
    parameters: int
    examples: int
    call_seconds: float = 0.0
    forward_call_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A block's cost before it runs: ``passes`` example passes and ``calls`` calls, against its budget."""

    label: str
    passes: float
    unit_seconds: float
    budget_seconds: float
    calls: float = 0.0
    call_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return self.passes * self.unit_seconds + self.calls * self.call_seconds

    @property
    def fits(self) -> bool:
        return self.seconds <= self.budget_seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "block": self.label,
            "estimated_passes": float(self.passes),
            "estimated_calls": float(self.calls),
            "estimated_seconds": float(self.seconds),
            "budget_seconds": float(self.budget_seconds),
        }


def block_seconds(context: Any) -> float:
    """Seconds one block may take under ``context.budget`` ("quick" or "full")."""
    return BLOCK_SECONDS.get(getattr(context, "budget", "quick"), BLOCK_SECONDS["quick"])


def pass_cost(context: Any) -> PassCost:
    """Measure (once per audit, then cached) the cost of forward + backward passes on this model.

    Times the Problem's loss on one and on a few training examples under :func:`model_guard` with
    detached copies of the parameters (the model's own ``.grad`` is never touched), after one
    untimed warm-up; the median of three interleaved repeats counts (on a loaded machine the blocks
    meet the typical time, not the best one).
    The two batch sizes split the time into a per-call part and a per-example part (a straight
    line through the two points; the per-example part is at least a tenth of the batch's average,
    so a model that is all call overhead still pays per example). The forward : forward+backward
    ratio is that of the batch (between 0.1 and 1).
    """
    cached = context.cache.get(_CACHE_KEY)
    if cached is not None:
        return cached
    problem = context.problem
    x, y = problem.tensors("train", max_samples=_PROBE_EXAMPLES)
    count = batch_length(x)
    with model_guard(problem.model):
        params = {name: value.clone().requires_grad_(True) for name, value in problem.parameters().items()}
        one, several = (slice_rows(x, 0, 1), y[:1]), (slice_rows(x, 0, count), y[:count])
        _timed(problem, params, *one)  # warm-up: first-call costs (kernels, caches) are not the model's
        singles, batches = [], []
        for _ in range(_REPEATS):  # interleaved; the median is what the blocks will meet on this machine now
            singles.append(_timed(problem, params, *one))
            batches.append(_timed(problem, params, *several) if count > 1 else singles[-1])
    single = tuple(statistics.median(times) for times in zip(*singles))
    several_times = tuple(statistics.median(times) for times in zip(*batches))
    full_forward, full_backward = several_times
    backward = max((full_backward - single[1]) / (count - 1), 0.0) if count > 1 else single[1]
    # a model dominated by call overhead has a slope near 0 (or below, by noise): at least 1/10 of the
    # average per-example time keeps every estimate proportional to the examples it uses
    backward = max(backward, 0.1 * full_backward / count, 1e-9)
    ratio = min(max(full_forward / full_backward, 0.1), 1.0)  # forward : forward+backward, measured on the batch
    call = max(single[1] - backward, 0.0)
    cost = PassCost(
        seconds=backward,
        forward_seconds=ratio * backward,
        parameters=sum(value.numel() for value in params.values()),
        examples=count,
        call_seconds=call,
        forward_call_seconds=min(max(single[0] / single[1], 0.1), 1.0) * call,
    )
    context.cache[_CACHE_KEY] = cost
    return cost


def _timed(problem: Problem, params: dict[str, torch.Tensor], x: Any, y: torch.Tensor) -> tuple[float, float]:
    """Seconds of a forward pass and of a forward + backward pass on ``(x, y)``.

    A TorchScript model cannot run with substituted weights (``torch.func``), so it is timed with its
    own parameters, differentiated by ``torch.autograd.grad`` (its ``.grad`` is never written).
    """
    scripted = isinstance(problem.model, torch.jit.ScriptModule)
    wrt = [p for p in problem.model.parameters() if p.requires_grad] if scripted else list(params.values())

    def loss() -> torch.Tensor:
        return problem.criterion(problem.run(x), y) if scripted else problem.loss(params, x, y)

    started = time.perf_counter()
    with torch.no_grad():
        loss()
    middle = time.perf_counter()
    with torch.enable_grad():
        value = loss()
        if wrt and value.requires_grad:
            torch.autograd.grad(value, wrt, allow_unused=True)
    return middle - started, time.perf_counter() - middle


def estimate(context: Any, label: str, passes: float, share: float = 1.0, calls: float = 0.0) -> Estimate:
    """The :class:`Estimate` of a block needing ``passes`` example passes in ``calls`` calls, allowed ``share`` budgets."""
    unit = pass_cost(context)
    return Estimate(label, float(passes), unit.seconds, share * block_seconds(context), float(calls), unit.call_seconds)


def fit_count(
    context: Any,
    wanted: int,
    passes_per_unit: float,
    minimum: int = 1,
    fixed_passes: float = 0.0,
    share: float = 1.0,
    calls_per_unit: float = 0.0,
    fixed_calls: float = 0.0,
) -> int:
    """The largest count <= ``wanted`` whose cost fits the block budget.

    The cost of ``count`` units is ``(fixed_passes + count * passes_per_unit)`` example passes plus
    ``(fixed_calls + count * calls_per_unit)`` calls (see :class:`PassCost`). Returns at least
    ``minimum`` (the caller then declines if even that does not fit, see :func:`estimate`).
    ``share`` is how many block budgets the block may use (a block that is the point of its
    section, such as the Hessian spectrum, gets more than one).
    """
    unit = pass_cost(context)
    room = share * block_seconds(context) - fixed_passes * unit.seconds - fixed_calls * unit.call_seconds
    per_unit = passes_per_unit * unit.seconds + calls_per_unit * unit.call_seconds
    affordable = int(room / max(per_unit, 1e-12) + 1e-9) if room > 0 else 0  # 20 / 0.05 is 399.99...
    return max(minimum, min(int(wanted), affordable))


def declined(found: Estimate, reason: str = "") -> Part:
    """A one-line Part saying the block did not run, what it would have cost and (optionally) why."""
    extra = f" {reason}" if reason else ""
    calls = f" in {found.calls:.3g} calls of {found.call_seconds * 1e3:.3g} ms" if found.calls else ""
    text = (
        f"{found.label} declined: it would take about {found.seconds:.3g} s ({found.passes:.3g} example passes of "
        f"{found.unit_seconds * 1e3:.3g} ms{calls}) against this budget's {found.budget_seconds:.3g} s.{extra}"
    )
    return Part([Text(text)], cost={**found.to_dict(), "declined": reason or "over budget"})
