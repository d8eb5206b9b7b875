"""Expected gradients and gradient SHAP: integrated gradients averaged over sampled references."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deepscope._allocation import check_allocation
from deepscope._validation import check_float, check_int
from deepscope.attribution._base import DEFAULT_MAX_BATCH, Attribution, OutputFn, finish, prepare
from deepscope.attribution._registry import attribution_method
from deepscope.errors import DataError, invalid_parameter
from deepscope.registry import analysis

__all__ = ["expected_gradients", "gradient_shap"]


def _sampled_path_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any,
    references: Any,
    *,
    owner: str,
    samples: int,
    noise: float,
    seed: int,
    output_fn: OutputFn | None,
    max_batch: int,
) -> Attribution:
    """E over reference r ~ references, α ~ U(0, 1), ε ~ N(0, noise²) of (x̃ − r) ⊙ ∇F(r + α(x̃ − r)), x̃ = x + ε."""
    check_int(samples, "samples", owner, minimum=2)
    noise = check_float(noise, "noise", owner, minimum=0.0)
    check_int(seed, "seed", owner, minimum=0)
    prepared = prepare(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, forward, targets = prepared.inputs, prepared.forward, prepared.targets
    n, n_targets = x.shape[0], targets.shape[0]
    check_allocation(samples, x.numel(), torch.float64, x.device, name="samples", owner=owner)  # the input noise
    if references is None:
        references = torch.zeros_like(x[:1])
    if not isinstance(references, torch.Tensor) or tuple(references.shape[1:]) != tuple(x.shape[1:]):
        raise invalid_parameter(
            "references", owner, f"a tensor of shape (k, {', '.join(map(str, x.shape[1:]))})", references
        )
    references = references.detach().to(device=x.device, dtype=x.dtype)
    if references.shape[0] == 0 or not bool(torch.isfinite(references).all()):
        raise DataError(f"The 'references' of {owner} must be a non-empty tensor of finite values.")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    # sample s of example i: reference index, alpha and input noise (drawn once, up front)
    choice = torch.randint(0, references.shape[0], (samples, n), generator=generator).to(x.device)
    alphas = torch.rand((samples, n), generator=generator, dtype=torch.float64).to(x.device, x.dtype)
    epsilon = noise * torch.randn((samples, *x.shape), generator=generator, dtype=torch.float64).to(x.device, x.dtype)
    view = (-1,) + (1,) * (x.dim() - 1)
    per_sample = torch.empty((n_targets, samples * n), dtype=x.dtype, device=x.device)
    total = torch.zeros((n_targets, *x.shape), dtype=x.dtype, device=x.device)
    square = torch.zeros_like(total)
    for start in range(0, samples * n, prepared.max_batch):
        flat = torch.arange(start, min(start + prepared.max_batch, samples * n), device=x.device)
        sample, example = flat // n, flat % n
        noisy = x[example] + epsilon[sample, example]
        reference = references[choice[sample, example]]
        points = (reference + alphas[sample, example].view(view) * (noisy - reference)).requires_grad_(True)
        with torch.enable_grad():
            outputs = forward(points)
            for t in range(n_targets):
                selected = outputs.gather(1, targets[t, example].unsqueeze(1)).sum()
                (grad,) = torch.autograd.grad(selected, points, retain_graph=t < n_targets - 1)
                contribution = grad * (noisy - reference)
                total[t].index_add_(0, example, contribution)
                square[t].index_add_(0, example, contribution**2)
                per_sample[t, start : start + len(flat)] = contribution.flatten(1).sum(1)
    mean = total / samples
    sums = per_sample.view(n_targets, samples, n)
    feature_variance = (square / samples - mean**2).clamp_min(0) * samples / (samples - 1)
    diagnostics = {
        "standard_error": sums.std(1) / samples**0.5,
        "max_feature_standard_error": (feature_variance / samples).sqrt().flatten(2).max(2).values,
    }
    return finish(
        model,
        values=mean,
        targets=targets,
        multi=prepared.multi,
        method=owner,
        diagnostics=diagnostics,
        evaluations=prepared.evaluations + samples * n,
        options={"samples": samples, "noise": noise, "seed": seed, "max_batch": prepared.max_batch},
    )


@attribution_method(aliases=("eg",), claimed_axioms={"dummy", "implementation_invariance", "linearity"}, report=None)
@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"samples": 4})
def expected_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    references: torch.Tensor | None = None,
    samples: int = 50,
    seed: int = 0,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution:
    """Expected gradients, φ = E_{x'~D, α~U(0,1)}[(x − x') ⊙ ∇F(x' + α(x − x'))] (Erion et al., 2021).

    Integrated gradients averaged over references drawn from ``references`` (a background
    sample, e.g. training inputs); one path point per sample. Completeness holds in expectation:
    E[Σφ] = F(x) − E[F(x')].

    Args:
        model, inputs, target, output_fn, max_batch: as for every method.
        references: ``(k, *features)`` background inputs (None: the zero input).
        samples: Monte-Carlo samples per example; seed: their seed.

    Returns:
        An :class:`Attribution`; diagnostics ``standard_error`` (of each example's total) and
        ``max_feature_standard_error`` (the largest per-feature standard error).

    Example:
        >>> net = torch.nn.Linear(3, 2)
        >>> expected_gradients(net, torch.ones(2, 3), 0, references=torch.zeros(5, 3), samples=8).values.shape
        torch.Size([2, 3])
    """
    return _sampled_path_gradients(
        model, inputs, target, references, owner="expected_gradients", samples=samples, noise=0.0, seed=seed,
        output_fn=output_fn, max_batch=max_batch,
    )  # fmt: skip


@attribution_method(aliases=("gshap",), claimed_axioms={"dummy", "implementation_invariance", "linearity"}, report=None)
@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"samples": 4})
def gradient_shap(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    baselines: torch.Tensor | None = None,
    samples: int = 50,
    noise: float = 0.0,
    seed: int = 0,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution:
    """Gradient SHAP: expected gradients with Gaussian input noise, as Captum's GradientShap (Lundberg & Lee, 2017).

    φ = E_{x'~baselines, α~U(0,1), ε~N(0, noise²)}[(x + ε − x') ⊙ ∇F(x' + α(x + ε − x'))].

    Args:
        baselines: ``(k, *features)`` baseline distribution (None: the zero input).
        noise: standard deviation of the input noise (Captum's ``stdevs``, default 0.0).
        Other arguments as for :func:`expected_gradients`.

    Example:
        >>> net = torch.nn.Linear(3, 2)
        >>> gradient_shap(net, torch.ones(2, 3), 0, baselines=torch.zeros(5, 3), samples=8).values.shape
        torch.Size([2, 3])
    """
    return _sampled_path_gradients(
        model, inputs, target, baselines, owner="gradient_shap", samples=samples, noise=noise, seed=seed,
        output_fn=output_fn, max_batch=max_batch,
    )  # fmt: skip
