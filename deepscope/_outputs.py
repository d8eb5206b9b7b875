"""Models whose output is not one tensor (a tuple, a dict, a dataclass): one way to pick what to analyse.

Analyses that run the model take ``output_fn``, a callable from the raw output to the tensor to
analyse (``lambda out: out[0]``, ``lambda out: out["logits"]``). Without it a non-tensor output is
refused with a message that says how to pass it. Attribution methods use
:func:`deepscope.attribution._prepare.make_forward`, which gives the same message.

Example:
    >>> import torch
    >>> select_output((torch.ones(2, 3), None), lambda out: out[0], "ntk").shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from deepscope.errors import DeepscopeError, UnsupportedModelError, invalid_parameter

__all__ = ["OutputFn", "ancestors", "check_output_fn", "picked_node", "select_output"]

OutputFn = Callable[[Any], torch.Tensor]


def check_output_fn(output_fn: Any, owner: str) -> None:
    """Raise InvalidParameterError unless ``output_fn`` is None or callable."""
    if output_fn is not None and not callable(output_fn):
        raise invalid_parameter("output_fn", owner, "a callable mapping the model output to a tensor", output_fn)


def select_output(output: Any, output_fn: OutputFn | None, owner: str) -> torch.Tensor:
    """The tensor to analyse: ``output_fn(output)``, or ``output`` itself when it is a tensor."""
    if output_fn is not None:
        try:
            picked = output_fn(output)
        except (DeepscopeError, torch.cuda.OutOfMemoryError):
            raise
        except Exception as error:  # output_fn is user code: say which output it could not read
            reason = str(error).splitlines()[0] if str(error) else ""
            raise UnsupportedModelError(
                f"{owner}: output_fn failed on the model's output (a {type(output).__name__}): "
                f"{type(error).__name__}: {reason}; it must pick the scores, e.g. lambda out: out.logits or out[0]."
            ) from error
        if not isinstance(picked, torch.Tensor):
            raise UnsupportedModelError(f"{owner}: output_fn returned a {type(picked).__name__}, not a tensor.")
        return picked
    if not isinstance(output, torch.Tensor):
        raise UnsupportedModelError(
            f"{owner}: the model returned a {type(output).__name__}, not a tensor; pass "
            "output_fn=lambda out: out[0] (or out['logits']) to pick the output to analyse."
        )
    return output


def picked_node(graph_module: Any, output_fn: OutputFn | None, owner: str, purpose: str) -> Any:
    """The ``torch.fx`` node of the analysed output: the returned tensor, or the one ``output_fn`` picks.

    Graph-walking analyses (LRP, Lipschitz bounds) start from a node of the model, so ``output_fn``
    is applied to the returned structure with graph nodes in place of tensors: it must pick one of
    the returned tensors (``out[0]``, ``out["logits"]``). ``purpose`` completes "to pick the output ...".
    """
    import torch.fx as fx

    returned = next(node for node in graph_module.graph.nodes if node.op == "output").args[0]
    if output_fn is None:
        if isinstance(returned, fx.Node):
            return returned
        raise UnsupportedModelError(
            # torch.fx records a returned dict/list as its immutable_dict/immutable_list: name the user's type
            f"{owner}: the model returns a {type(returned).__name__.removeprefix('immutable_')}, not one tensor; pass "
            f"output_fn=lambda out: out[0] (or out['logits']) to pick the output {purpose}."
        )
    try:
        picked = output_fn(returned)
    except Exception as error:  # output_fn is user code; any failure means it did more than pick
        picked = error
    if not isinstance(picked, fx.Node):
        raise UnsupportedModelError(
            f"{owner}: output_fn must pick one of the tensors the model returns (e.g. out[0] or out['logits']); "
            f"this analysis follows the model's graph to that tensor and cannot follow what output_fn computes "
            f"({type(picked).__name__})."
        )
    return picked


def ancestors(node: Any) -> set[Any]:
    """A ``torch.fx`` node and every node it depends on."""
    found, stack = {node}, [node]
    while stack:
        for parent in stack.pop().all_input_nodes:
            if parent not in found:
                found.add(parent)
                stack.append(parent)
    return found
