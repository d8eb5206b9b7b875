"""Per-example gradient measures: the Fisher-Rao norm and the gradient noise.

* Fisher-Rao norm (Liang et al. 2019), as in Jiang et al. (2020):
  ``‖w‖²_fr = (d + 1)² · (1/m) Σ_i ⟨w, ∇_w ℓ(f_w(x_i), y_i)⟩²`` with the true labels. The inner
  products for all examples come from one forward-mode derivative (``torch.func.jvp`` of the
  per-example losses along the tangent ``w``).
* Gradient noise: the trace of the covariance of per-example gradients,
  ``(1/n) Σ_i ‖g_i − ḡ‖²`` (per-example gradients with ``torch.func.vmap(grad)``), evaluated at the
  trained weights — the noise SGD sees at the end of training.
"""

from __future__ import annotations

import torch

from deepscope.generalization._measures._context import MeasureContext, MeasureValue

__all__ = ["fisher_rao_norm", "gradient_noise", "gradient_measures"]


def _per_example_losses(ctx: MeasureContext, params: dict[str, torch.Tensor], x, y) -> torch.Tensor:
    out = ctx.problem.forward(params, x)
    return (
        torch.nn.functional.cross_entropy(out, y, reduction="none")
        if ctx.problem.loss_name == "cross_entropy"
        else (torch.nn.functional.nll_loss(out, y, reduction="none"))
    )


def fisher_rao_norm(ctx: MeasureContext, *, chunk: int = 512) -> float:
    """``(d + 1)² · mean_i ⟨w, ∇_w ℓ_i⟩²`` on the training subset (one jvp per chunk)."""
    names = list(ctx.params)
    primals = tuple(ctx.params[n] for n in names)
    total = 0.0
    for start in range(0, len(ctx.x), chunk):
        x, y = ctx.x[start : start + chunk], ctx.y[start : start + chunk]

        def losses(*values, x=x, y=y):
            return _per_example_losses(ctx, dict(zip(names, values, strict=True)), x, y)

        _, directional = torch.func.jvp(losses, primals, primals)
        total += float(directional.double().pow(2).sum())
    ctx.forward_passes += 2 * len(ctx.x)
    return (ctx.depth + 1) ** 2 * total / len(ctx.x)


def gradient_noise(ctx: MeasureContext, *, max_examples: int = 256, chunk: int = 64) -> tuple[float, int]:
    """Trace of the per-example gradient covariance on up to ``max_examples`` training examples."""
    names = list(ctx.params)
    n = min(len(ctx.x), max_examples)

    def single(values, x, y):
        return _per_example_losses(ctx, dict(zip(names, values, strict=True)), x[None], y[None]).sum()

    gradient = torch.func.vmap(torch.func.grad(single), in_dims=(None, 0, 0))
    flats = []
    for start in range(0, n, chunk):
        grads = gradient(
            tuple(ctx.params[k] for k in names),
            ctx.x[start : min(n, start + chunk)],
            ctx.y[start : min(n, start + chunk)],
        )
        flats.append(torch.cat([g.reshape(g.shape[0], -1).double() for g in grads], dim=1))
    ctx.forward_passes += 2 * n
    flat = torch.cat(flats)
    return float((flat - flat.mean(dim=0)).pow(2).sum(dim=1).mean()), n


def gradient_measures(ctx: MeasureContext) -> list[MeasureValue]:
    """Fisher-Rao norm and gradient noise as measure rows."""
    noise, n = gradient_noise(ctx)
    return [
        MeasureValue("fisher_rao_norm", fisher_rao_norm(ctx), "gradient", "Liang et al. 2019", "(d+1)² E⟨w, ∇ℓ⟩²"),
        MeasureValue(
            "gradient_noise",
            noise,
            "gradient",
            "Jiang et al. 2020",
            "tr Cov of per-example gradients",
            note=f"{n} examples",
        ),
    ]
