"""The attribution section's cost model: example passes per method, per axiom check, per metric; chunk size.

Each count is in the unit of :mod:`deepscope.report.cost` (one example's forward + backward pass; a
forward-only pass is priced by the measured forward ratio, see :func:`forward_ratio`):

* gradient maps (saliency, input x gradient, Grad-CAM): one pass per example;
* integrated gradients: ``steps`` (adaptive: ``max_steps``, an upper bound) passes per example;
* DeepLIFT and LRP: two (a reference or relevance pass on top of the forward);
* SmoothGrad / expected gradients: ``samples`` passes; occlusion: one forward per window plus one;
  Shapley sampling: ``samples x (features + 1)`` forwards; ISM: ``3L + 1`` forwards;
* :func:`deepscope.attribution.check_axioms`: the method is called :data:`AXIOM_CALLS` times
  (completeness, sensitivity, dummy, symmetry, conservation once each, implementation invariance
  twice, linearity three times);
* deletion + insertion curves: ``2 x (1/step_fraction + 1)`` forwards per example;
* cascading randomisation (Adebayo et al. 2018): one saliency map per parameterised module, plus
  the original.

Memory: every method evaluates its rows in chunks of ``max_batch``; :func:`max_batch` sizes a
chunk so the tensors autograd saves for it stay under :data:`CHUNK_BYTES` (measured on one example
with ``torch.autograd.graph.saved_tensors_hooks``, each storage once). Without it the default
4096-row chunk took every row of a 256-step integrated-gradients call on three inputs at once: 4.6 GB
on a ResNet-18.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from deepscope._inputs import batch_length, call_model, slice_rows
from deepscope.attribution._prepare import DEFAULT_MAX_BATCH
from deepscope.guard import model_guard
from deepscope.report.cost import Estimate, estimate, fit_count, pass_cost

__all__ = [
    "AXIOM_CALLS",
    "axiom_passes",
    "estimate_chunked",
    "fitted_axioms",
    "fitted_options",
    "fitted_sequences",
    "timed",
    "CHUNK_BYTES",
    "forward_ratio",
    "example_bytes",
    "max_batch",
    "method_passes",
    "metric_passes",
    "randomisation_passes",
]

AXIOM_CALLS = 10
CHUNK_BYTES = 256 * 2**20
_BATCH_KEY = "attribution.max_batch"
_FORWARD_ONLY = {"occlusion", "shapley", "ism"}


def forward_ratio(context: Any) -> float:
    """Measured seconds of a forward pass over those of a forward + backward pass (between 0.1 and 1)."""
    unit = pass_cost(context)
    return unit.forward_seconds / max(unit.seconds, 1e-12)


def method_passes(name: str, inputs: Any, options: dict[str, Any], ratio: float = 1.0) -> float:
    """Example passes (forward + backward units) of one call of method ``name`` on ``inputs``.

    ``ratio`` prices a forward-only pass (:func:`forward_ratio`). A method not listed costs one pass
    per example (a gradient map).
    """
    count = batch_length(inputs)
    features = math.prod(inputs.shape[1:]) if isinstance(inputs, torch.Tensor) else 1
    if name == "integrated_gradients":
        per = options.get("steps") or options.get("max_steps", 1024)
    elif name in ("deeplift", "lrp"):
        per = 2
    elif name in ("smoothgrad", "expected_gradients"):
        per = options.get("samples", 25 if name == "smoothgrad" else 50)
    elif name == "occlusion" and isinstance(inputs, torch.Tensor):
        from deepscope.attribution.occlusion import occlusion_windows

        windows = occlusion_windows(tuple(inputs.shape[1:]), options.get("window", 1), options.get("strides"))
        per = len(windows) + 1
    elif name == "shapley":
        per = options.get("samples", 64) * (features + 1)
    elif name == "ism":
        per = 3 * inputs.shape[-1] + 1
    else:
        per = 1
    return float(count * per * (ratio if name in _FORWARD_ONLY else 1.0))


def metric_passes(count: int, ratio: float, step_fraction: float = 0.1) -> float:
    """Deletion and insertion curves of ``count`` examples: ``2 x (1/step_fraction + 1)`` forwards each."""
    return 2 * (math.ceil(1 / step_fraction) + 1) * count * ratio


def randomisation_passes(model: nn.Module, count: int) -> float:
    """The cascading randomisation test: a saliency map per parameterised module, plus the original one;
    each map also resolves its target (a forward) and re-initialises a copy of the model (priced as a pass)."""
    layers = sum(1 for module in model.modules() if any(True for _ in module.parameters(recurse=False)))
    return float((layers + 1) * (2 * count + 1))


def example_bytes(model: nn.Module, inputs: Any, output_fn: Any = None) -> int:
    """Bytes autograd saves for the backward pass of one example (input gradients, eval mode).

    Each saved storage counts once, and the model's parameters and buffers not at all (one copy
    serves every row of a chunk).
    """
    from deepscope._outputs import select_output

    one = slice_rows(inputs, 0, 1)
    storages: dict[
        int, int
    ] = {}  # a tensor saved by several nodes (a ReLU's output, the next conv's input) counts once

    weights = {value.untyped_storage().data_ptr() for value in [*model.parameters(), *model.buffers()]}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() in weights:  # shared by every row of a chunk, not per example
            return tensor
        storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
        return tensor

    with model_guard(model), torch.enable_grad():
        if isinstance(one, torch.Tensor) and one.is_floating_point():
            one = one.detach().clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            select_output(call_model(model, one), output_fn, "attribution section")
    return sum(storages.values())


def max_batch(context: Any, inputs: Any, output_fn: Any = None) -> int:
    """Rows per chunk so that one chunk's saved activations stay under :data:`CHUNK_BYTES` (cached per audit)."""
    cached = context.cache.get(_BATCH_KEY)
    if cached is None:
        per_example = max(example_bytes(context.problem.model, inputs, output_fn), 1)
        cached = int(min(max(CHUNK_BYTES // per_example, 1), DEFAULT_MAX_BATCH))
        context.cache[_BATCH_KEY] = cached
    return cached


def estimate_chunked(context: Any, label: str, passes: float, chunk: int, share: float) -> Estimate:
    """The block's :class:`~deepscope.report.cost.Estimate`: ``passes`` example passes in chunks of ``chunk`` rows."""
    return estimate(context, label, passes, share=share, calls=math.ceil(passes / max(chunk, 1)))


def timed(costs: list[dict[str, Any]], found: Estimate, run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``run(*args, **kwargs)``, recording its seconds next to its estimate in ``costs`` (also when it raises)."""
    started = time.perf_counter()
    try:
        return run(*args, **kwargs)
    finally:
        costs.append({**found.to_dict(), "seconds": time.perf_counter() - started})


def fitted_options(
    context: Any, name: str, inputs: Any, options: dict[str, Any], chunk: int, share: float
) -> dict[str, Any]:
    """Integrated gradients' step cap shrunk (down to 16) so that its map fits ``share`` block budgets."""
    if name != "integrated_gradients" or "max_steps" not in options:
        return options
    count = batch_length(inputs)
    calls = {"calls_per_unit": count / chunk, "fixed_calls": 1.0}  # the last chunk is a call of its own
    steps = fit_count(context, options["max_steps"], count, minimum=16, share=share, **calls)
    return {**options, "max_steps": steps}


def fitted_sequences(
    context: Any, wanted: int, passes_per_sequence: float, rows_per_sequence: float, chunk: int
) -> int:
    """Sequences (at most ``wanted``, at least one) whose passes and chunked calls fit one block budget.

    The genomics blocks (ISM: ``3L + 1`` rows per sequence; DeepLIFT-SHAP: ``K + 1``) run their rows in
    chunks of ``chunk`` (:func:`max_batch`), one call each, plus the last partial chunk.
    """
    calls = {"calls_per_unit": rows_per_sequence / max(chunk, 1), "fixed_calls": 1.0}
    return fit_count(context, wanted, passes_per_sequence, minimum=1, **calls)


def axiom_passes(name: str, inputs: Any, options: dict[str, Any], ratio: float) -> float:
    """Example passes of :func:`check_axioms`: :data:`AXIOM_CALLS` calls of the method, each with two
    forwards on top (the checks evaluate F at the input and the baseline; the method resolves its target)."""
    return AXIOM_CALLS * (method_passes(name, inputs, options, ratio) + 2 * batch_length(inputs) * ratio)


def fitted_axioms(
    context: Any, name: str, inputs: Any, wanted: int, options: dict[str, Any], ratio: float, chunk: int
) -> tuple[int, dict[str, Any]]:
    """Inputs for :func:`check_axioms` fitted to one block budget, then integrated gradients' steps (down to 32).

    Fewer inputs come first: fewer quadrature steps would add a quadrature error to the
    completeness check that is not the method's.
    """
    wanted = min(wanted, batch_length(inputs))
    per_example = axiom_passes(name, slice_rows(inputs, 0, 1), options, ratio)
    count = fit_count(context, wanted, per_example, calls_per_unit=per_example / chunk, fixed_calls=1.0)
    if "steps" in options:
        fixed = AXIOM_CALLS * 2 * count * ratio
        per_step = AXIOM_CALLS * count
        calls = {"calls_per_unit": per_step / chunk, "fixed_calls": fixed / chunk + 1.0}
        steps = fit_count(context, options["steps"], per_step, minimum=32, fixed_passes=fixed, **calls)
        options = {**options, "steps": min(options["steps"], steps)}
    return count, options
