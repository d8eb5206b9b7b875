"""DeepLIFT (rescale rule) without module hooks: a torch.fx graph run on the inputs and on their
references, whose non-linear steps carry modified backward passes (:mod:`._deeplift_rules`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from deepscope._validation import check_float
from deepscope.attribution._base import (
    DEFAULT_MAX_BATCH,
    Attribution,
    OutputFn,
    check_max_batch,
    finish,
    model_device_dtype,
    prepare,
    relative_completeness_error,
)
from deepscope.attribution._deeplift_graph import refusal, unsupported_steps
from deepscope.attribution._deeplift_interpreter import PairedInterpreter
from deepscope.attribution._multi_input import MultiInputAttribution, packed_baseline, packed_call, unpacked
from deepscope.attribution._registry import ReportDefaults, attribution_method
from deepscope.attribution._trace import trace_model
from deepscope.errors import UnsupportedModelError, invalid_parameter
from deepscope.registry import analysis

__all__ = ["deeplift"]


def _check_graph(graph_module: fx.GraphModule, leaf_types: tuple[type, ...], n_inputs: int = 1) -> dict[fx.Node, str]:
    """Refuse a step the output depends on whose multipliers would be wrong (see ``_deeplift_graph``).

    A single-tensor output depends on every live step: refuse now. For a tuple or dict output the
    steps come back, to be wrapped so that they refuse only when the selected output uses them
    (a step with a non-float value, such as an index computed from the input, refuses when run).
    """
    problems = unsupported_steps(graph_module, n_inputs, leaf_types)
    output = next(node for node in graph_module.graph.nodes if node.op == "output")
    if problems and isinstance(output.args[0], fx.Node):
        node, what = next(iter(problems.items()))
        raise UnsupportedModelError(refusal(node.name, what))
    return problems


def check_args(args: Any, batch: int, model: nn.Module, owner: str) -> tuple[Any, ...]:
    """Extra model arguments: a tuple; tensors among them need one row per example (held fixed) and go
    to the model's device (floating ones also to its dtype, as the inputs do)."""
    if isinstance(args, list):
        args = tuple(args)
    if not isinstance(args, tuple):
        raise invalid_parameter("args", owner, "a tuple of extra model arguments, passed as model(x, *args)", args)
    device, dtype = model_device_dtype(model)
    moved = []
    for i, arg in enumerate(args):
        if isinstance(arg, torch.Tensor):
            if arg.dim() == 0 or arg.shape[0] != batch:
                expected = f"tensors with one row per example ({batch} rows); args[{i}] does not have them"
                raise invalid_parameter("args", owner, expected, arg)
            arg = arg.detach().to(device=device, dtype=dtype if arg.is_floating_point() else arg.dtype)
        moved.append(arg)
    return tuple(moved)


def rows_of(args: tuple[Any, ...], start: int, stop: int, repeats: int = 1) -> tuple[Any, ...]:
    """The extra arguments of examples ``start:stop``, each row repeated ``repeats`` times."""
    picked = []
    for arg in args:
        if isinstance(arg, torch.Tensor):
            arg = arg[start:stop]
            picked.append(arg.repeat_interleave(repeats, 0) if repeats > 1 else arg)
        else:
            picked.append(arg)
    return tuple(picked)


class WithArgs(nn.Module):
    """``model(x, *args)`` for the whole batch or its first row (what target resolution evaluates)."""

    def __init__(self, model: nn.Module, args: tuple[Any, ...], batch: int) -> None:
        super().__init__()
        self.model, self.args, self.batch = model, args, batch

    def forward(self, x: torch.Tensor) -> Any:
        if x.shape[0] not in (1, self.batch):
            raise UnsupportedModelError(f"internal: extra arguments for {x.shape[0]} rows of {self.batch}")
        return self.model(x, *rows_of(self.args, 0, x.shape[0]))


def scores(output: Any, output_fn: OutputFn | None, owner: str) -> torch.Tensor:
    """The model output as ``(rows, classes)``: through ``output_fn``; trailing axes of length 1 dropped."""
    if output_fn is not None:
        output = output_fn(output)
    if not isinstance(output, torch.Tensor):
        raise UnsupportedModelError(f"{owner}: the model returned no tensor; pass output_fn.")
    if output.dim() == 1:
        output = output.unsqueeze(1)
    if output.dim() > 2 and output.shape[2:].numel() == 1:
        output = output.reshape(output.shape[0], output.shape[1])
    return output


def paired_multipliers(
    interpreter: PairedInterpreter,
    x: torch.Tensor | tuple[torch.Tensor, ...],
    references: torch.Tensor | tuple[torch.Tensor, ...],
    args: tuple[Any, ...],
    targets: torch.Tensor,
    output_fn: OutputFn | None,
    owner: str,
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """DeepLIFT multipliers of B inputs against n references each, one forward/backward for all.

    Args:
        x: (B, *features), or a tuple of such tensors for a model with several attributed inputs
            (the interpreter built with as many); references: (B·n, *features) example-major, a
            tuple like ``x``; args: extra model arguments for the B examples; targets: (T, B).

    Returns:
        multipliers (T, B·n, *features) (a tuple of them for a tuple ``x``), F(x) (T, B) and F(r) (T, B·n).
    """
    several = isinstance(x, tuple)
    xs = x if several else (x,)
    refs = references if several else (references,)
    batch, n = xs[0].shape[0], refs[0].shape[0] // xs[0].shape[0]
    run_inputs = interpreter.run_inputs(*(part.clone() for part in xs), *args)
    at_input = scores(run_inputs, output_fn, owner).gather(1, targets.t()).t()
    leaves = tuple(r.detach().requires_grad_(True) for r in refs)
    multipliers = tuple(torch.empty((targets.shape[0], *r.shape), dtype=r.dtype, device=r.device) for r in refs)
    at_references = torch.empty(targets.shape[0], refs[0].shape[0], dtype=refs[0].dtype, device=refs[0].device)
    with torch.enable_grad():
        run = interpreter.run_references(*(leaf.clone() for leaf in leaves), *rows_of(args, 0, batch, n))
        outputs = scores(run, output_fn, owner)
        for t in range(targets.shape[0]):
            selected = outputs.gather(1, targets[t].repeat_interleave(n).unsqueeze(1)).squeeze(1)
            # several inputs: one the selected output does not use gets zero multipliers
            grads = torch.autograd.grad(
                selected.sum(),
                leaves,
                retain_graph=t < targets.shape[0] - 1,
                allow_unused=several,
                materialize_grads=several,
            )
            for multiplier, grad in zip(multipliers, grads):
                multiplier[t] = grad
            at_references[t] = selected.detach()
    return (multipliers if several else multipliers[0]), at_input, at_references


def _prune(graph_module: fx.GraphModule, output_fn: OutputFn | None) -> OutputFn | None:
    """When ``output_fn`` only picks one returned tensor (``out[1]``, ``out["logits"]``), make the graph
    return that tensor and drop the steps it does not need (a profile head when the count head is
    explained); returns the ``output_fn`` still to apply (None after pruning)."""
    if output_fn is None:
        return None
    output = next(node for node in graph_module.graph.nodes if node.op == "output")
    try:
        picked = output_fn(output.args[0])
    except Exception:  # output_fn computes something: keep the whole graph and apply it to the outputs
        return output_fn
    if not isinstance(picked, fx.Node):
        return output_fn
    output.args = (picked,)
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    return None


def prepare_graph(
    model: nn.Module,
    args: tuple[Any, ...],
    eps: float,
    rescale_modules: Sequence[type],
    owner: str,
    output_fn: OutputFn | None = None,
    n_inputs: int = 1,
) -> tuple[PairedInterpreter, OutputFn | None]:
    """Trace ``model(x1, ..., x_{n_inputs}, *args)`` (pruned to what ``output_fn`` picks) and build the
    interpreter with DeepLIFT's rules, the first ``n_inputs`` arguments attributed; returns it and the
    ``output_fn`` still to apply to its outputs."""
    if isinstance(rescale_modules, type) or not all(isinstance(t, type) for t in rescale_modules):
        raise invalid_parameter("rescale_modules", owner, "a tuple of module classes", rescale_modules)
    leaf_types = tuple(rescale_modules)
    hint = ": pass the other arguments as args=(...), held fixed"
    graph_module = trace_model(
        model, n_args=n_inputs - 1 + len(args), owner=owner, leaf_types=leaf_types, args_hint=hint
    )
    graph_module.graph.eliminate_dead_code()  # e.g. a wrapper's unused head
    graph_module.recompile()
    remaining = _prune(graph_module, output_fn)
    refused = _check_graph(graph_module, leaf_types, n_inputs)
    return PairedInterpreter(graph_module, eps, refused, n_inputs, leaf_types), remaining


@attribution_method(
    aliases=("dl",),
    claimed_axioms={"completeness", "sensitivity", "dummy", "linearity"},
    report=ReportDefaults(order=2, axiom_budget="quick", axiom_order=1),
    takes=("tensor", "tuple"),
)
@analysis(takes="model_inputs", family="attribution", fixture="cnn")
def deeplift(
    model: nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    target: Any = None,
    *,
    baseline: Any = None,
    args: tuple[Any, ...] = (),
    rescale_modules: Sequence[type] = (),
    eps: float = 1e-10,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution | MultiInputAttribution:
    """DeepLIFT with the rescale rule, φ = (x − x') ⊙ m, m the chain of multipliers Δy/Δz (Shrikumar et al., 2017).

    The model is traced with ``torch.fx`` (with the extra arguments ``args`` as fixed inputs and
    every optional argument left out at its default, so ``forward(x, control=None)`` traces its
    ``None`` branch) and run on the inputs and on the baselines; each element-wise non-linearity
    (module *or* function, reused or not; also ``exp``/``log``) backpropagates Δy/Δz instead of
    f'(z), max pooling and global max use Captum's routing rule, softmax / log-softmax / logsumexp
    their exact decompositions, a product of two input-dependent tensors the midpoint rule
    (:mod:`deepscope.attribution._deeplift_rules`); affine steps pass multipliers like gradients.
    No module hooks are used. Summation-to-delta (Σφ = F(x) − F(x')) holds by construction and is
    reported. A step with no rule (a division by an input-dependent tensor, attention masks
    computed from the input, LayerNorm, batch statistics, data-dependent control flow) raises
    UnsupportedModelError naming the step instead of giving a wrong answer, but only when the
    selected output depends on it: dead branches, and outputs that ``output_fn`` does not select,
    may use anything.

    Args:
        model, inputs, target, output_fn, max_batch: as for every method; ``inputs`` may be a tuple
            of float tensors (same batch length) for a model with several attributed inputs,
            ``model(x1, x2, ..., *args)`` (traced with each as an attributed input).
        baseline: reference x' (None = zeros), a number or a tensor shaped like the inputs; for a
            tuple of inputs a number (for each) or a tuple of one baseline per input.
        args: extra model arguments, ``model(x, *args)``, held fixed (the same for x and x'), e.g.
            bpnet-lite's control tracks; tensors need one row per example.
        rescale_modules: module classes treated as ONE element-wise non-linearity (the rescale
            rule over the whole module, which must keep its input's shape), as tangermeme's
            ``additional_nonlinear_ops={cls: _nonlinear}``; e.g. bpnet-lite's
            ``_ProfileLogitScaling`` to reproduce bpnet-lite's profile attributions. Such a module is
            not element-wise, so its secants are replaced by the vector-Jacobian product at x where
            |Δz| < max(eps, 1e-6) (tangermeme's threshold; it uses the gradient through the
            module's own rules there, so the two can differ at those positions).
        eps: below this |Δz| the plain derivative is used (Captum's default 1e-10).

    Returns:
        An :class:`Attribution`; ``diagnostics["completeness_error"]`` (relative) per example. For a
        tuple of inputs a :class:`~deepscope.attribution._multi_input.MultiInputAttribution` (one
        tensor per input; summation-to-delta holds for the sum over all inputs).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
        >>> a = deeplift(net, torch.randn(2, 3), target=0)
        >>> bool(a.diagnostics["completeness_error"].max() < 1e-4)
        True
    """
    owner = "deeplift"
    eps = check_float(eps, "eps", owner, minimum=0.0)
    max_batch = check_max_batch(max_batch, owner)
    packing, inputs, packed_model = packed_call(model, inputs, owner)
    batch = inputs.shape[0] if isinstance(inputs, torch.Tensor) and inputs.dim() >= 1 else 0
    args = check_args(args, batch, model, owner)
    runner = WithArgs(packed_model, args, batch) if args else packed_model
    prepared = prepare(
        runner, inputs, target, owner=owner, output_fn=output_fn, max_batch=max(max_batch, batch) if args else max_batch
    )
    x, targets = prepared.inputs, prepared.targets
    reference = packed_baseline(baseline, x, packing, owner)
    n_inputs = 1 if packing is None else len(packing.shapes)
    interpreter, graph_output_fn = prepare_graph(model, args, eps, rescale_modules, owner, output_fn, n_inputs)
    split = (lambda rows: rows) if packing is None else packing.unpack

    n, n_targets = x.shape[0], targets.shape[0]
    values = torch.empty((n_targets, *x.shape), dtype=x.dtype, device=x.device)
    at_input = torch.empty(n_targets, n, dtype=x.dtype, device=x.device)
    at_baseline = torch.empty_like(at_input)
    for start in range(0, n, max_batch):
        stop = min(start + max_batch, n)
        multipliers, at_input[:, start:stop], at_baseline[:, start:stop] = paired_multipliers(
            interpreter,
            split(x[start:stop]),
            split(reference[start:stop]),
            rows_of(args, start, stop),
            targets[:, start:stop],
            graph_output_fn,
            owner,
        )
        if packing is not None:
            multipliers = packing.pack(multipliers)
        values[:, start:stop] = (x[start:stop] - reference[start:stop]) * multipliers
    error = relative_completeness_error(values.flatten(2).sum(2), at_input, at_baseline)
    result = finish(
        model,
        values=values,
        targets=targets,
        multi=prepared.multi,
        method=owner,
        diagnostics={"completeness_error": error, "delta": at_input - at_baseline},
        evaluations=prepared.evaluations + 2 * n,
        options={"eps": eps, "max_batch": max_batch},
    )
    return unpacked(result, packing)
