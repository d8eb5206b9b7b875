"""Cost bounds for the report's blocks: measure one pass, estimate each block before it runs, fit or decline.

The unit of cost is one *example pass*: the forward and backward pass of one training example
through the model (a forward-only pass counts as a third of one, the usual 1:2 forward:backward
ratio of reverse-mode autodiff, Griewank & Walther 2008, Section 4.6). :func:`pass_cost` measures it
once per audit on a few training examples and caches it in ``context.cache``; each block then says
how many example passes it needs (:class:`Estimate`), and either runs as asked, shrinks its sample
to fit its share of the budget (:func:`fit_count`, the block states the smaller sample and its
error), or declines with a one-line reason (:func:`declined`).

Budgets: "quick" gives each block :data:`BLOCK_SECONDS` ``["quick"]`` seconds (the whole audit of a
ResNet-18 on 256 CIFAR-sized examples fits five minutes on two cores); "full" gives each block ten
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
import time
from typing import Any

import torch

from deepscope._inputs import batch_length, slice_rows
from deepscope.guard import model_guard
from deepscope.report.sections import Part, Text

__all__ = ["BLOCK_SECONDS", "PassCost", "Estimate", "pass_cost", "block_seconds", "fit_count", "declined"]

# seconds each block may take, by budget
BLOCK_SECONDS: dict[str, float] = {"quick": 20.0, "full": 600.0}
_CACHE_KEY = "report.pass_cost"
_PROBE_EXAMPLES = 4


@dataclasses.dataclass(frozen=True)
class PassCost:
    """The measured cost of one example's forward + backward pass.

    Attributes:
        seconds: wall-clock seconds per example for forward + backward (the unit of every estimate).
        forward_seconds: seconds per example of a forward pass without gradients.
        parameters: trainable parameters of the model.
        examples: examples the measurement used.
    """

    seconds: float
    forward_seconds: float
    parameters: int
    examples: int


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A block's cost before it runs: ``passes`` example passes of ``unit_seconds`` each, against its budget."""

    label: str
    passes: float
    unit_seconds: float
    budget_seconds: float

    @property
    def seconds(self) -> float:
        return self.passes * self.unit_seconds

    @property
    def fits(self) -> bool:
        return self.seconds <= self.budget_seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "block": self.label,
            "estimated_passes": float(self.passes),
            "estimated_seconds": float(self.seconds),
            "budget_seconds": float(self.budget_seconds),
        }


def block_seconds(context: Any) -> float:
    """Seconds one block may take under ``context.budget`` ("quick" or "full")."""
    return BLOCK_SECONDS.get(getattr(context, "budget", "quick"), BLOCK_SECONDS["quick"])


def pass_cost(context: Any) -> PassCost:
    """Measure (once per audit, then cached) the seconds of one example's forward + backward pass.

    Runs the Problem's loss on the first few training examples under :func:`model_guard` with
    detached copies of the parameters (the model's own ``.grad`` is never touched); the second of
    two timed repeats is kept, so one-off start-up costs do not count.
    """
    cached = context.cache.get(_CACHE_KEY)
    if cached is not None:
        return cached
    problem = context.problem
    x, y = problem.tensors("train", max_samples=_PROBE_EXAMPLES)
    count = batch_length(x)
    x, y = slice_rows(x, 0, count), y[:count]
    with model_guard(problem.model):
        params = {name: value.clone().requires_grad_(True) for name, value in problem.parameters().items()}
        forward = backward = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            with torch.no_grad():
                problem.loss(params, x, y)
            middle = time.perf_counter()
            with torch.enable_grad():
                loss = problem.loss(params, x, y)
                torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            ended = time.perf_counter()
            forward, backward = min(forward, middle - started), min(backward, ended - middle)
    cost = PassCost(
        seconds=max(backward, 1e-9) / count,
        forward_seconds=max(forward, 1e-9) / count,
        parameters=sum(value.numel() for value in params.values()),
        examples=count,
    )
    context.cache[_CACHE_KEY] = cost
    return cost


def estimate(context: Any, label: str, passes: float, share: float = 1.0) -> Estimate:
    """The :class:`Estimate` of a block needing ``passes`` example passes, allowed ``share`` block budgets."""
    return Estimate(label, float(passes), pass_cost(context).seconds, share * block_seconds(context))


def fit_count(
    context: Any,
    wanted: int,
    passes_per_unit: float,
    minimum: int = 1,
    fixed_passes: float = 0.0,
    share: float = 1.0,
) -> int:
    """The largest count <= ``wanted`` whose ``fixed_passes + count * passes_per_unit`` fits the block budget.

    Returns at least ``minimum`` (the caller then declines if even that does not fit, see
    :func:`estimate`). ``passes_per_unit`` is the cost of one unit (an example, a sample, a vector)
    in example passes; ``share`` is how many block budgets the block may use (a block that is the
    point of its section, such as the Hessian spectrum, gets more than one).
    """
    unit = pass_cost(context).seconds
    room = share * block_seconds(context) / unit - fixed_passes
    affordable = int(room // max(passes_per_unit, 1e-12)) if room > 0 else 0
    return max(minimum, min(int(wanted), affordable))


def declined(found: Estimate, reason: str = "") -> Part:
    """A one-line Part saying the block did not run, what it would have cost and (optionally) why."""
    extra = f" {reason}" if reason else ""
    text = (
        f"{found.label} declined: it would take about {found.seconds:.3g} s ({found.passes:.3g} example passes of "
        f"{found.unit_seconds * 1e3:.3g} ms) against this budget's {found.budget_seconds:.3g} s per block.{extra}"
    )
    return Part([Text(text)], cost={**found.to_dict(), "declined": reason or "over budget"})
