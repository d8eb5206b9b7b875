"""Per-example gradient measures: the Fisher-Rao norm and the gradient noise, in bounded memory.

* Fisher-Rao norm (Liang et al. 2019), as in Jiang et al. (2020):
  ``‖w‖²_fr = (d + 1)² · (1/m) Σ_i ⟨w, ∇_w ℓ(f_w(x_i), y_i)⟩²`` with the true labels. The inner
  products for a chunk of examples come from one forward-mode derivative (``torch.func.jvp`` of
  the per-example losses along the tangent ``w``).
* Gradient noise: the trace of the covariance of per-example gradients,
  ``(1/n) Σ_i ‖g_i − ḡ‖² = (1/n) Σ_i ‖g_i‖² − ‖ḡ‖²`` (per-example gradients with
  one backward pass per example), evaluated at the trained weights — the noise SGD sees at the
  end of training. The per-example gradients are never held for the whole batch: each adds its
  ``‖g_i‖²`` and ``g_i`` to float64 accumulators, so the memory is one gradient plus one float64
  copy of the parameters (an 11M-parameter ResNet-18: 130 MB, where 256 gradients held at once
  took 11 GB). In float64 the difference loses ``‖ḡ‖²/tr Cov × 1e-16`` relative
  accuracy — nothing next to the float32 rounding of the gradients themselves.

Forward-mode derivatives and double backward of PyTorch's fused attention kernels are not
implemented (nor batched), so both run inside :func:`deepscope._attention.math_attention` (the
math kernel computes the same attention); the table's note says when it did.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator

import torch

from deepscope._attention import math_attention
from deepscope.generalization._measures._context import MeasureContext, MeasureValue

__all__ = ["fisher_rao_norm", "gradient_noise", "gradient_measures", "derivative_kernels", "example_gradient_seconds"]


@contextlib.contextmanager
def derivative_kernels(ctx: MeasureContext) -> Iterator[None]:
    """Fused attention runs on its math kernel inside the block; ``ctx`` records that it ran."""
    with math_attention() as use:
        yield
    if use.seen:
        ctx.cache["math_attention"] = True


def _per_example_losses(ctx: MeasureContext, params: dict[str, torch.Tensor], x, y) -> torch.Tensor:
    out = ctx.problem.forward(params, x)
    return (
        torch.nn.functional.cross_entropy(out, y, reduction="none")
        if ctx.problem.loss_name == "cross_entropy"
        else (torch.nn.functional.nll_loss(out, y, reduction="none"))
    )


def fisher_rao_norm(ctx: MeasureContext, *, chunk: int | None = None) -> float:
    """``(d + 1)² · mean_i ⟨w, ∇_w ℓ_i⟩²`` on the training subset (one jvp per chunk).

    ``chunk`` (examples per jvp) defaults to what the memory budget allows: a jvp keeps the primal
    and the tangent of every activation, about 4 × the activation bytes per example.
    """
    names = list(ctx.params)
    primals = tuple(ctx.params[n] for n in names)
    size = chunk if chunk is not None else ctx.chunk(4 * ctx.structure.activation_bytes, cap=512)
    total = 0.0
    with derivative_kernels(ctx):
        for x, y in ctx.chunks(size):

            def losses(*values, x=x, y=y):
                return _per_example_losses(ctx, dict(zip(names, values, strict=True)), x, y)

            _, directional = torch.func.jvp(losses, primals, primals)
            total += float(directional.double().pow(2).sum())
    ctx.forward_passes += ctx.n
    ctx.backward_passes += ctx.n  # the forward-mode derivative
    return (ctx.depth + 1) ** 2 * total / ctx.n


def gradient_noise(ctx: MeasureContext, *, max_examples: int = 256) -> tuple[float, int]:
    """Trace of the per-example gradient covariance on up to ``max_examples`` training examples.

    One reverse-mode pass per example (batch of one), so one gradient is held at a time and any
    model runs — ``vmap`` refuses data-dependent control flow (HuggingFace's attention masks) and
    turns convolutions into slow grouped ones (3× slower than this loop on a ResNet-18 and 1.6×
    on the digits CNN).
    """
    names = list(ctx.params)
    n = min(ctx.n, max_examples)
    sums = [torch.zeros(ctx.params[k].shape, dtype=torch.float64, device=ctx.params[k].device) for k in names]
    squares = 0.0
    norms: list[float] = []
    leaves = [ctx.params[k].clone().requires_grad_(True) for k in names]
    params = dict(zip(names, leaves, strict=True))
    with derivative_kernels(ctx), torch.enable_grad():
        for x, y in ctx.chunks(1, stop=n):
            loss = _per_example_losses(ctx, params, x, y).sum()
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
            norms.append(0.0)
            for total, g in zip(sums, grads, strict=True):
                if g is not None:
                    g = g.double()
                    norms[-1] += float(g.pow(2).sum())
                    total += g
            squares += norms[-1]
    ctx.forward_passes += n
    ctx.backward_passes += n
    mean_sq = float(sum(total.pow(2).sum() for total in sums)) / n**2
    spread = float(torch.tensor(norms, dtype=torch.float64).std()) / math.sqrt(n) if n > 1 else math.nan
    ctx.cache["gradient_noise_error"] = spread
    return max(squares / n - mean_sq, 0.0), n


def example_gradient_seconds(ctx: MeasureContext) -> float:
    """Seconds of one example's forward and backward pass (the second of two, so start-up costs do
    not count): the unit of the gradient noise's cost."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in ctx.params.items()}
    x, y = next(ctx.chunks(1))
    seconds = math.inf
    with derivative_kernels(ctx), torch.enable_grad():
        for _ in range(2):
            start = time.perf_counter()
            loss = _per_example_losses(ctx, leaves, x, y).sum()
            torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
            seconds = min(seconds, time.perf_counter() - start)
    ctx.forward_passes += 2
    ctx.backward_passes += 2
    return seconds


def gradient_measures(
    ctx: MeasureContext, *, chunk: int | None = None, noise_examples: int = 256
) -> list[MeasureValue]:
    """Fisher-Rao norm and gradient noise as measure rows (their costs in ``seconds``/passes).

    The gradient noise is a mean over ``noise_examples`` examples; its note gives the standard error
    ``sd_i(‖g_i‖²)/√n`` (the spread of the terms of its first part, which dominates once the mean
    gradient is small, as at the end of training).
    """
    noise, n = gradient_noise(ctx, max_examples=noise_examples)
    fisher = fisher_rao_norm(ctx, chunk=chunk)
    kernel = " (fused attention ran on its math kernel)" if ctx.cache.get("math_attention") else ""
    return [
        MeasureValue(
            "fisher_rao_norm", fisher, "gradient", "Liang et al. 2019", "(d+1)² E⟨w, ∇ℓ⟩²", note=kernel.strip(" ()")
        ),
        MeasureValue(
            "gradient_noise",
            noise,
            "gradient",
            "Jiang et al. 2020",
            "tr Cov of per-example gradients",
            note=f"{n} examples, s.e. ≈ {ctx.cache['gradient_noise_error']:.3g}" + kernel,
        ),
    ]
