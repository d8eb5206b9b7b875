"""SmoothGrad and VarGrad: average (or variance of) any attribution method over noisy copies of the input."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from deepscope._allocation import check_allocation
from deepscope._validation import check_float, check_int
from deepscope.attribution._base import DEFAULT_MAX_BATCH, Attribution, OutputFn, finish, prepare
from deepscope.attribution._registry import attribution_method, method_named
from deepscope.errors import invalid_parameter
from deepscope.registry import analysis

__all__ = ["smoothgrad", "vargrad"]


def _resolve_method(method: str | Callable[..., Attribution], owner: str) -> Callable[..., Attribution]:
    if callable(method):
        return method
    return method_named(method, owner, exclude=("smoothgrad", "vargrad"))[1]


def _noise_tunnel(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any,
    *,
    owner: str,
    method: str | Callable[..., Attribution],
    samples: int,
    noise: float,
    seed: int,
    method_options: Mapping[str, Any] | None,
    output_fn: OutputFn | None,
    max_batch: int,
) -> tuple[Any, torch.Tensor, int]:
    """Run ``method`` on ``samples`` noisy copies: returns (prepared, values (S, T, n, ...), evaluations)."""
    function = _resolve_method(method, owner)
    check_int(samples, "samples", owner, minimum=2)
    noise = check_float(noise, "noise", owner, minimum=0.0)
    check_int(seed, "seed", owner, minimum=0)
    if method_options is not None and not isinstance(method_options, Mapping):
        raise invalid_parameter("method_options", owner, "None or a dict of the inner method's options", method_options)
    prepared = prepare(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, n = prepared.inputs, prepared.inputs.shape[0]
    check_allocation(samples, x.numel(), x.dtype, x.device, name="samples", owner=owner)  # the noisy copies
    # sigma is a fraction of each example's value range (Smilkov et al., 2017)
    flat = x.flatten(1)
    sigma = noise * (flat.max(1).values - flat.min(1).values).clamp_min(1e-12)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    epsilon = torch.randn((samples, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
    noisy = (x.unsqueeze(0) + sigma.view(1, n, *([1] * (x.dim() - 1))) * epsilon).reshape(samples * n, *x.shape[1:])
    options = dict(method_options or {})
    baseline = options.get("baseline")
    if isinstance(baseline, torch.Tensor) and tuple(baseline.shape) == tuple(x.shape):
        options["baseline"] = baseline.repeat(samples, *([1] * (x.dim() - 1)))
    repeated_targets = prepared.targets.repeat(1, samples)
    inner = function(model, noisy, repeated_targets, output_fn=output_fn, max_batch=prepared.max_batch, **options)
    values = inner.values.reshape(prepared.targets.shape[0], samples, *x.shape).transpose(0, 1)
    return prepared, values, prepared.evaluations + inner.model_evaluations


def _finish(model, prepared, values, evaluations, owner, statistic, options):
    samples = values.shape[0]
    sums = values.flatten(3).sum(3)  # (S, T, n)
    diagnostics = {"standard_error": sums.std(0) / samples**0.5, "samples": torch.full_like(sums[0], samples)}
    return finish(
        model,
        values=statistic,
        targets=prepared.targets,
        multi=prepared.multi,
        method=owner,
        diagnostics=diagnostics,
        evaluations=evaluations,
        options=options,
    )


@attribution_method(aliases=("sg",), claimed_axioms={"implementation_invariance"}, report=None)
@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"samples": 3})
def smoothgrad(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    method: str | Callable[..., Attribution] = "saliency",
    samples: int = 25,
    noise: float = 0.15,
    seed: int = 0,
    method_options: Mapping[str, Any] | None = None,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution:
    """SmoothGrad: the mean of a method's map over noisy inputs, E_ε[A(x + ε)], ε ~ N(0, σ²I)
    (Smilkov et al., 2017); σ = ``noise`` × (max(x) − min(x)) per example.

    Args:
        model: the classifier; inputs: ``(batch, *features)``; target: as for every method.
        method: a name from ``METHODS`` or an attribution function (default "saliency").
        samples: noisy copies per example; noise: σ as a fraction of the value range.
        seed: seed of the noise; method_options: keyword options of the inner method.
        output_fn, max_batch: as for every method (``max_batch`` is passed to the inner method).

    Returns:
        An :class:`Attribution`; ``diagnostics["standard_error"]`` is the Monte-Carlo standard error
        of each example's attribution total.

    Example:
        >>> net = torch.nn.Linear(3, 2)
        >>> smoothgrad(net, torch.ones(2, 3), target=0, samples=4).values.shape
        torch.Size([2, 3])
    """
    owner = "smoothgrad"
    prepared, values, evaluations = _noise_tunnel(
        model, inputs, target, owner=owner, method=method, samples=samples, noise=noise, seed=seed,
        method_options=method_options, output_fn=output_fn, max_batch=max_batch,
    )  # fmt: skip
    options = {"method": getattr(method, "__name__", method), "samples": samples, "noise": noise, "seed": seed}
    return _finish(model, prepared, values, evaluations, owner, values.mean(0), options)


@attribution_method(aliases=("vg",), claimed_axioms={"implementation_invariance"}, report=None)
@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"samples": 3})
def vargrad(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    method: str | Callable[..., Attribution] = "saliency",
    samples: int = 25,
    noise: float = 0.15,
    seed: int = 0,
    method_options: Mapping[str, Any] | None = None,
    output_fn: OutputFn | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Attribution:
    """VarGrad: the variance of a method's map over noisy inputs, Var_ε[A(x + ε)] (Adebayo et al., 2018).

    The population variance E[A²] − E[A]² over the samples, as in Captum's NoiseTunnel.
    Arguments as for :func:`smoothgrad`.

    Example:
        >>> net = torch.nn.Linear(3, 2)
        >>> float(vargrad(net, torch.ones(2, 3), target=0, samples=4, method_options={"absolute": False}).values.abs().max())
        0.0
    """
    owner = "vargrad"
    prepared, values, evaluations = _noise_tunnel(
        model, inputs, target, owner=owner, method=method, samples=samples, noise=noise, seed=seed,
        method_options=method_options, output_fn=output_fn, max_batch=max_batch,
    )  # fmt: skip
    variance = (values**2).mean(0) - values.mean(0) ** 2
    options = {"method": getattr(method, "__name__", method), "samples": samples, "noise": noise, "seed": seed}
    return _finish(model, prepared, values, evaluations, owner, variance, options)
