"""What every measure needs, computed once: weights (folded), initial weights, train data, margins.

A :class:`MeasureContext` is built by :func:`deepscope.generalization.measures` inside the model
guard. It never modifies the caller's model: parameters are detached copies and every forward pass
goes through ``Problem.forward`` (``torch.func.functional_call``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any

import torch

from deepscope._inputs import Inputs, batch_length, rows, slice_rows
from deepscope.errors import UnsupportedModelError
from deepscope.generalization._measures._cost import balanced_bounds, chunk_size, search_chunk
from deepscope.generalization._measures._folding import FoldedLayer, LayerStructure, discover_layers, fold_layers

if TYPE_CHECKING:
    from deepscope.problem import Problem

__all__ = ["MeasureValue", "MeasureContext", "build_context"]


@dataclasses.dataclass(frozen=True)
class MeasureValue:
    """One measure: value, family, reference; ``log_scale`` says the value is already a logarithm."""

    name: str
    value: float
    family: str
    reference: str
    meaning: str
    log_scale: bool = False
    note: str = ""
    seconds: float = math.nan  # wall time of the computation that produced it (shared by its siblings)
    forward_passes: int | None = None  # example-forward passes of that computation
    backward_passes: int | None = None  # example-derivative passes (reverse- or forward-mode) of it


@dataclasses.dataclass
class MeasureContext:
    """Shared inputs of the measures (mutable only in its counters and caches)."""

    problem: Any
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    init_params: dict[str, torch.Tensor] | None
    init_buffers: dict[str, torch.Tensor] | None
    structure: LayerStructure
    folded: list[FoldedLayer]
    folded_init: list[FoldedLayer] | None
    x: Inputs
    y: torch.Tensor
    m: int
    seed: int
    forward_passes: int = 0
    backward_passes: int = 0
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        """Examples in the measures' training subset."""
        return batch_length(self.x)

    def chunk(self, bytes_per_example: int, cap: int = 1024) -> int:
        """Examples per chunk so that a chunk holds about ``bytes_per_example`` × chunk <= the memory budget."""
        return chunk_size(bytes_per_example, cap=cap)

    def chunks(self, size: int, stop: int | None = None):
        """``(x, y)`` of the subset's first ``stop`` examples (all: None) in chunks of ``size``."""
        stop = self.n if stop is None else min(stop, self.n)
        for start in range(0, stop, size):
            end = min(stop, start + size)
            yield slice_rows(self.x, start, end), self.y[start:end]

    def search_bounds(self, size: int | None = None, *, backward: bool = False) -> list[tuple[int, int]]:
        """Equal chunks ``[start, end)`` of the subset for the sharpness searches' passes.

        At most ``size`` examples each, or (``None``) :func:`~deepscope.generalization._measures._cost.search_chunk`
        examples (on the CPU, a chunk's activations fit a cache budget).
        """
        if size is None:
            device = next(iter(self.params.values())).device.type if self.params else "cpu"
            size = search_chunk(self.structure.activation_bytes, device, backward=backward)
        return balanced_bounds(self.n, size)

    def margin_order(self) -> torch.Tensor:
        """Example indices by increasing clean margin (cached): the examples noise flips first come first."""
        if "margin_order" not in self.cache:
            self.cache["margin_order"] = torch.argsort(self.margins(), stable=True)
        return self.cache["margin_order"]

    def correct(self, params: dict[str, torch.Tensor], index: torch.Tensor) -> torch.Tensor:
        """Whether the model with ``params`` classifies the examples at ``index`` right (no grad; counted)."""
        with torch.no_grad():
            outputs = self.problem.forward(params, rows(self.x, index))
        self.forward_passes += len(index)
        return outputs.argmax(dim=-1) == self.y[index.to(self.y.device)]

    @property
    def depth(self) -> int:
        return len(self.folded)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.params.values())

    def outputs(self, params: dict[str, torch.Tensor] | None = None, chunk: int | None = None) -> torch.Tensor:
        """Model outputs on the measure's training subset (chunked, no grad).

        The outputs at the trained weights (``params=None``) are computed once (and timed: the
        cost predictions scale from it) and reused by the margins, the entropy and the base
        accuracy of each sharpness search. ``chunk`` defaults to what the memory budget allows
        (at most 1024 examples).
        """
        if params is None:
            if "clean_outputs" not in self.cache:
                start = time.perf_counter()
                self.cache["clean_outputs"] = self.outputs(self.params, chunk)
                self.cache["clean_seconds"] = time.perf_counter() - start
            return self.cache["clean_outputs"]
        size = chunk if chunk is not None else self.chunk(self.structure.activation_bytes)
        pieces = []
        with torch.no_grad():
            for x, _ in self.chunks(size):
                pieces.append(self.problem.forward(params, x))
        self.forward_passes += self.n
        return torch.cat(pieces)

    def clean_seconds(self) -> float:
        """Wall time of one forward pass over the subset (the clean outputs'; computed if needed)."""
        self.outputs()
        return self.cache["clean_seconds"]

    def accuracy(self, params: dict[str, torch.Tensor] | None = None) -> float:
        return float((self.outputs(params).argmax(dim=-1) == self.y).double().mean())

    def margins(self) -> torch.Tensor:
        """Output margins ``f(x)_y − max_{j≠y} f(x)_j`` on the training subset (cached)."""
        if "margins" not in self.cache:
            out = self.outputs().double()
            true = out.gather(1, self.y[:, None]).squeeze(1)
            others = out.scatter(1, self.y[:, None], -math.inf)
            self.cache["margins"] = true - others.max(dim=1).values
        return self.cache["margins"]

    def margin(self) -> float:
        """γ: the 10th percentile of the training margins (Jiang et al. 2020)."""
        return float(torch.quantile(self.margins(), 0.1))


def build_context(problem: Problem, *, max_samples: int | None, seed: int) -> MeasureContext:
    """Collect weights, folded layers, initial weights and a training subset for the measures."""
    if problem.num_classes is None:
        raise UnsupportedModelError(
            f"The generalization measures need a classification loss (cross_entropy or nll). Got {problem.loss_name!r}."
        )
    x, y = problem.tensors("train", max_samples=max_samples)
    params = problem.parameters(trainable_only=False)
    buffers = {k: v.detach() for k, v in problem.buffers().items()}
    structure = discover_layers(problem.model, slice_rows(x, 0, min(batch_length(x), 8)))
    if not structure.layers:
        raise UnsupportedModelError(
            "The model has no Linear or Conv layer, so norm-, margin- and spectrum-based measures are undefined."
        )
    folded = fold_layers(structure, params, buffers)
    init_params = init_buffers = folded_init = None
    if problem.init_state is not None:
        init_params = {k: problem.init_state[k].detach().to(v.dtype) for k, v in params.items()}
        init_buffers = {k: problem.init_state.get(k, v).detach() for k, v in buffers.items()}
        folded_init = fold_layers(structure, init_params, init_buffers)
    return MeasureContext(
        problem=problem,
        params=params,
        buffers=buffers,
        init_params=init_params,
        init_buffers=init_buffers,
        structure=structure,
        folded=folded,
        folded_init=folded_init,
        x=x,
        y=y.long(),
        m=len(problem.train),
        seed=seed,
    )
