"""Empirical neural tangent kernel: spectrum, conditioning and label alignment.

The empirical NTK of a network ``f(x; θ)`` with ``C`` outputs is
``Θ(x, x')_{ab} = ∇_θ f_a(x) · ∇_θ f_b(x')`` (Jacot, Gabriel & Hongler, 2018). For ``n`` inputs the
full kernel is ``(nC × nC)``; the "trace" kernel averages its diagonal output blocks,
``K_ij = (1/C) Σ_a Θ(x_i, x_j)_{aa}`` (``n × n``). Under gradient flow on the squared loss the
residual along eigenvector ``i`` of ``K`` decays like ``exp(−η λ_i t)``; the smallest eigenvalue
governs convergence (Du et al., 2019) and ``√(yᵀK⁻¹y / n)`` bounds generalisation of wide
two-layer nets (Arora, Du, Hu, Li & Wang, 2019).

It is computed either by Jacobian contraction (``torch.func.jacrev`` vmapped over examples, memory
``n·C·P``) or by NTK-vector products (``Θu = J(Jᵀu)``: a vjp then a jvp, memory ``O(P)`` per column,
cost ``n·C`` products) — chosen by the memory the Jacobian would need. For networks of realistic
size (millions of parameters) ``method="sketch"`` computes each gradient row once (``n·C`` backward
passes of one example) and keeps only a count sketch of it (Charikar, Chen & Farach-Colton 2002):
``⟨Sg, Sg'⟩`` is an unbiased estimate of ``⟨g, g'⟩`` with variance ``≤ 2‖g‖²‖g'‖²/m`` for ``m``
buckets, so memory is ``n·C·m`` numbers; the diagonal is exact (the squared gradient norms) and
the result states the RMS error bound ``√(2/m · Σ_{i≠j} K_ii K_jj)`` on ``‖K̂ − K‖_F``, which by
Weyl's inequality bounds every eigenvalue's error.

Example:
    >>> import torch
    >>> x = torch.randn(5, 3)
    >>> result = ntk(torch.nn.Linear(3, 1, bias=False), x)
    >>> torch.allclose(result.kernel, x @ x.T, atol=1e-5)
    True
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope._forward import first_forward
from deepscope._inputs import Inputs, batch_length, is_mapping, move, slice_rows
from deepscope._outputs import OutputFn, check_output_fn, select_output
from deepscope._validation import check_choice, check_float, check_int
from deepscope.errors import DataError, UnsupportedModelError, invalid_parameter
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["NTKResult", "ntk"]


@dataclasses.dataclass(frozen=True)
class NTKResult(Result):
    """The kernel, its eigenvalues (descending), condition number and label alignment."""

    kernel: torch.Tensor
    eigenvalues: list[float]
    condition_number: float
    label_alignment: float | None
    generalization_measure: float | None
    ridge: float
    mode: str
    method: str
    n_inputs: int
    n_outputs: int
    n_params: int
    note: str = ""
    sketch_size: int | None = None
    eigenvalue_error: float | None = None

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "n_inputs": self.n_inputs,
                "n_outputs": self.n_outputs,
                "mode": self.mode,
                "method": self.method,
                "largest_eigenvalue": self.eigenvalues[0],
                "smallest_eigenvalue": self.eigenvalues[-1],
                "condition_number": self.condition_number,
                "label_alignment_yKinv_y": self.label_alignment,
                "sqrt_yKinv_y_over_n": self.generalization_measure,
                "eigenvalue_error": self.eigenvalue_error,
            }
        ]

    def plot(self, ax=None):
        from deepscope._figures import new_figure

        figure, axes = new_figure(7.0, 3.0, ncols=2)
        image = axes[0].imshow(self.kernel.detach().cpu().numpy(), cmap="viridis")
        figure.colorbar(image, ax=axes[0])
        axes[0].set_title("empirical NTK")
        values = np.maximum(np.asarray(self.eigenvalues), 1e-30)
        axes[1].semilogy(np.arange(1, len(values) + 1), values, "o-", ms=3)
        axes[1].set_xlabel("index")
        axes[1].set_title(f"eigenvalues (condition {self.condition_number:.3g})")
        return figure


def _functional(model: nn.Module, output_fn: OutputFn | None = None) -> tuple[dict[str, torch.Tensor], Any]:
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise UnsupportedModelError("ntk found no trainable parameters: every parameter has requires_grad=False.")
    bad = [n for n, p in params.items() if not p.is_floating_point()]
    if bad:
        raise UnsupportedModelError(f"ntk needs floating-point parameters; {bad[:3]} are not.")
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    def outputs(p: dict[str, torch.Tensor], x: Inputs) -> torch.Tensor:
        if is_mapping(x):
            raw = torch.func.functional_call(model, (p, buffers), (), dict(x), strict=False)
        else:
            raw = torch.func.functional_call(model, (p, buffers), (x,), strict=False)
        out = select_output(raw, output_fn, "ntk")
        return out.reshape(out.shape[0], -1)

    return params, outputs


def _jacobian_kernel(params, outputs, inputs: torch.Tensor, chunk: int) -> torch.Tensor:
    def single(p, x):
        one = {k: v[None] for k, v in x.items()} if is_mapping(x) else x[None]
        return outputs(p, one)[0]

    jacobians = []
    count = batch_length(inputs)
    for start in range(0, count, chunk):
        chunk_inputs = slice_rows(inputs, start, min(start + chunk, count))
        jac = torch.func.vmap(torch.func.jacrev(single), (None, 0))(params, chunk_inputs)
        jacobians.append(torch.cat([j.reshape(j.shape[0], j.shape[1], -1) for j in jac.values()], dim=2))
    jacobian = torch.cat(jacobians)  # (n, C, P)
    flat = jacobian.reshape(-1, jacobian.shape[-1])
    return flat @ flat.T  # (nC, nC), index i*C + a


def _loop_kernel(params, outputs, inputs: Inputs) -> torch.Tensor:
    """Θ by one backward pass per (example, output) with plain autograd (no torch.func import cost)."""
    leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    rows = []
    with torch.enable_grad():
        for index in range(batch_length(inputs)):
            output = outputs(leaves, slice_rows(inputs, index, index + 1))[0]
            for value in output:
                grads = torch.autograd.grad(value, list(leaves.values()), retain_graph=True, allow_unused=True)
                rows.append(
                    torch.cat(
                        [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, leaves.values())]
                    )
                )
    jacobian = torch.stack(rows)  # (nC, P)
    return jacobian @ jacobian.T


def _sketch_kernel(params, outputs, inputs: Inputs, n_outputs: int, size: int, seed: int) -> tuple[torch.Tensor, float]:
    """Θ from count sketches of the gradient rows (exact diagonal) and the RMS bound on ‖Θ̂ − Θ‖_F.

    Each parameter coordinate goes to one of ``size`` buckets with a random sign (one hash for all
    rows, so inner products are preserved in expectation); one backward pass per (example, output).
    """
    leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    first = next(iter(leaves.values()))
    generator = torch.Generator().manual_seed(seed)
    hashes = []
    for value in leaves.values():
        bucket = torch.randint(0, size, (value.numel(),), generator=generator).to(first.device)
        sign = (torch.randint(0, 2, (value.numel(),), generator=generator) * 2 - 1).to(first.device, first.dtype)
        hashes.append((bucket, sign))
    count = batch_length(inputs)
    sketches = torch.zeros(count * n_outputs, size, dtype=first.dtype, device=first.device)
    squared_norms = torch.zeros(count * n_outputs, dtype=torch.float64)
    with torch.enable_grad():
        for index in range(count):
            output = outputs(leaves, slice_rows(inputs, index, index + 1))[0]
            for a in range(n_outputs):
                grads = torch.autograd.grad(
                    output[a], list(leaves.values()), retain_graph=a < n_outputs - 1, allow_unused=True
                )
                row = index * n_outputs + a
                for grad, (bucket, sign) in zip(grads, hashes):
                    if grad is not None:
                        flat = grad.reshape(-1)
                        sketches[row].index_add_(0, bucket, flat * sign)
                        squared_norms[row] += float(flat.double().square().sum())
    full = sketches @ sketches.T
    full.diagonal().copy_(squared_norms.to(full.dtype))
    return full, squared_norms


def _product_kernel(params, outputs, inputs: torch.Tensor, n_outputs: int, chunk: int) -> torch.Tensor:
    """Θ by NTK-vector products: column (j, b) is J(Jᵀ e_jb), vmapped over ``chunk`` columns."""
    primal_out, pullback = torch.func.vjp(lambda p: outputs(p, inputs), params)
    size = primal_out.numel()

    def column(cotangent: torch.Tensor) -> torch.Tensor:
        (tangent,) = pullback(cotangent.reshape(primal_out.shape))
        return torch.func.jvp(lambda p: outputs(p, inputs), (params,), (tangent,))[1].reshape(-1)

    eye = torch.eye(size, dtype=primal_out.dtype, device=primal_out.device)
    columns = [torch.func.vmap(column)(eye[start : start + chunk]) for start in range(0, size, chunk)]
    return torch.cat(columns).T


@analysis(takes="model_inputs", family="curvature", fixture="mlp", example_kwargs={})
def ntk(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    mode: str = "trace",
    method: str = "auto",
    memory_budget_mb: float = 512.0,
    chunk_size: int = 64,
    ridge: float | None = None,
    output_fn: OutputFn | None = None,
    sketch_size: int = 4096,
    seed: int = 0,
) -> NTKResult:
    """The empirical NTK of ``model`` on ``inputs``, its spectrum and (given targets) label alignment.

    ``Θ(x, x') = J(x) J(x')ᵀ`` (Jacot et al., 2018); ``yᵀK⁻¹y`` and ``√(yᵀK⁻¹y/n)`` (Arora et al., 2019).

    Args:
        model: the network (never modified; evaluated by ``functional_call`` in eval semantics).
        inputs: (n, *features).
        targets: optional (n,) class labels (one-hot encoded) or (n,) / (n, C) real targets.
        mode: "trace" (n × n, averaged over outputs) or "full" (nC × nC).
        method: "auto", "jacobian" (Jacobian contraction, vmapped), "loop" (Jacobian contraction, one
            backward pass per example and output), "products" (NTK-vector products) or "sketch"
            (count-sketched gradient rows: memory ``n·C·sketch_size``, ``n·C`` backward passes, the
            eigenvalue error bound in ``eigenvalue_error``; never chosen by "auto").
        memory_budget_mb: "auto" builds the Jacobian when ``n·C·P`` numbers fit this budget (by "loop"
            when ``n·C ≤ 512``, which avoids the one-off seconds that torch.func's first vmap costs),
            else uses products.
        chunk_size: examples (or kernel columns) per vectorised chunk.
        ridge: added to the eigenvalues before inverting; default ``1e-10 · λ_max`` when the
            kernel is numerically singular, else 0.
        output_fn: for a model returning a tuple or dict, picks the output tensor the kernel is of.
        sketch_size: buckets ``m`` of the count sketch (method "sketch"); the error falls as ``1/√m``.
        seed: seed of the sketch's hash (method "sketch").

    Returns:
        An :class:`NTKResult`.

    Example:
        >>> ntk(model, x, y).generalization_measure  # doctest: +SKIP
    """
    check_choice(mode, "mode", "ntk", ("trace", "full"))
    check_choice(method, "method", "ntk", ("auto", "jacobian", "loop", "products", "sketch"))
    check_int(chunk_size, "chunk_size", "ntk", minimum=1)
    check_int(sketch_size, "sketch_size", "ntk", minimum=1)
    check_int(seed, "seed", "ntk", minimum=0)
    check_float(memory_budget_mb, "memory_budget_mb", "ntk", minimum=0.0)
    if ridge is not None:
        ridge = check_float(ridge, "ridge", "ntk", minimum=0.0)  # a negative ridge can divide by zero
    if is_mapping(inputs):
        if not inputs or batch_length(inputs) == 0:
            raise invalid_parameter("inputs", "ntk", "a non-empty tensor (n, *features) or dict of tensors", inputs)
    elif not isinstance(inputs, torch.Tensor) or inputs.ndim < 1 or len(inputs) == 0:
        raise invalid_parameter("inputs", "ntk", "a non-empty tensor (n, *features)", inputs)
    check_output_fn(output_fn, "ntk")
    params, outputs = _functional(model, output_fn)
    first = next(iter(params.values()))
    inputs = move(inputs, device=first.device, dtype=first.dtype)  # integer token ids keep their dtype
    with torch.no_grad():
        n_outputs = first_forward(lambda x: outputs(params, x), slice_rows(inputs, 0, 1)).shape[1]
    n, n_params = batch_length(inputs), sum(p.numel() for p in params.values())
    if method == "auto":
        needed_mb = n * n_outputs * n_params * first.element_size() / 2**20
        method = "products" if needed_mb > memory_budget_mb else "loop" if n * n_outputs <= 512 else "jacobian"
    squared_norms = None
    if method == "sketch":
        full, squared_norms = _sketch_kernel(params, outputs, inputs, n_outputs, sketch_size, seed)
    elif method == "loop":
        full = _loop_kernel(params, outputs, inputs)
    elif method == "jacobian":
        full = _jacobian_kernel(params, outputs, inputs, chunk_size)
    else:
        full = _product_kernel(params, outputs, inputs, n_outputs, chunk_size)
    full = (full + full.T) / 2
    if not bool(torch.isfinite(full).all()):
        raise DataError("The NTK has non-finite entries: the model's gradients overflow on these inputs.")
    kernel = full if mode == "full" else full.reshape(n, n_outputs, n, n_outputs).diagonal(dim1=1, dim2=3).mean(-1)
    eigenvalue_error = None
    if squared_norms is not None:
        eigenvalue_error = _sketch_error(kernel, squared_norms, n, n_outputs, mode, sketch_size)
    values, vectors = torch.linalg.eigh(kernel.double())
    values, vectors = values.flip(0), vectors.flip(1)
    largest = float(values[0])
    smallest = float(values[-1])
    condition = largest / smallest if smallest > 0 else math.inf
    if ridge is None:
        ridge = 1e-10 * largest if smallest <= 1e-10 * largest else 0.0
    alignment = measure = None
    if targets is not None:
        labels = _label_matrix(targets, n, n_outputs, mode).to(vectors)
        projections = vectors.T @ labels
        alignment = float((projections**2 / (values.clamp(min=0) + ridge)[:, None]).sum())
        measure = math.sqrt(alignment / n)
    from deepscope.guard import current_guard_report

    report = current_guard_report(model)
    return NTKResult(
        kernel=kernel.detach(),
        eigenvalues=values.tolist(),
        condition_number=condition,
        label_alignment=alignment,
        generalization_measure=measure,
        ridge=float(ridge),
        mode=mode,
        method=method,
        n_inputs=n,
        n_outputs=n_outputs,
        n_params=n_params,
        note=report.note if report is not None else "",
        sketch_size=sketch_size if method == "sketch" else None,
        eigenvalue_error=eigenvalue_error,
    )


def _sketch_error(
    kernel: torch.Tensor, squared_norms: torch.Tensor, n: int, n_outputs: int, mode: str, size: int
) -> float:
    """RMS bound on ‖K̂ − K‖_F (hence on each eigenvalue's error, Weyl) of the count-sketched kernel.

    Full mode: entry (r, s), r ≠ s, has variance ≤ 2‖g_r‖²‖g_s‖²/m. Trace mode: entry (i, j) averages
    C such entries; by Cauchy-Schwarz its standard deviation is ≤ √(2/m)·√(K_ii K_jj). Summing the
    variances off the (exact) diagonal bounds E‖K̂ − K‖_F².
    """
    if mode == "full":
        diagonal = squared_norms
    else:
        diagonal = squared_norms.reshape(n, n_outputs).mean(dim=1)
    total = float(diagonal.sum()) ** 2 - float(diagonal.square().sum())
    return math.sqrt(2.0 / size * max(total, 0.0))


def _label_matrix(targets: torch.Tensor, n: int, n_outputs: int, mode: str) -> torch.Tensor:
    """Targets as (n, C) (one-hot for integer labels), flattened to (nC, 1) in full mode."""
    if not isinstance(targets, torch.Tensor) or len(targets) != n:
        raise invalid_parameter("targets", "ntk", f"a tensor with {n} rows", targets)
    targets = targets.detach().cpu()
    if not targets.is_floating_point():
        if n_outputs == 1:
            labels = targets.double().reshape(n, 1)
        else:
            if int(targets.min()) < 0 or int(targets.max()) >= n_outputs:
                raise DataError(f"ntk: labels must lie in [0, {n_outputs - 1}].")
            labels = nn.functional.one_hot(targets.long(), n_outputs).double()
    else:
        labels = targets.double().reshape(n, -1)
    if mode == "full":
        if labels.shape[1] != n_outputs:
            raise invalid_parameter("targets", "ntk", f"(n, {n_outputs}) targets in full mode", targets)
        return labels.reshape(-1, 1)
    return labels
