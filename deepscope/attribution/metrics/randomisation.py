"""Sanity check by cascading model-parameter randomisation (Adebayo et al. 2018).

Starting from the output layer, the layers of a deep copy of the model are re-initialised one
after another (cumulatively, top to bottom); after each step the attribution method is run again
and its map is compared with the original map by the Spearman rank correlation of |a| per
example (and, optionally, the SSIM of the normalised |a| images). A method whose maps depend on
what the model learned gives correlations that fall towards 0; a method whose maps survive the
randomisation (an edge detector in disguise, such as guided backprop) fails the check.
The caller's model is never changed: only the copy is randomised.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from deepscope._validation import check_float
from deepscope.attribution._base import guard_note
from deepscope.attribution.metrics._common import (
    DEFAULT_MAX_BATCH,
    attribution_function,
    mean_and_standard_error,
    prepare_single_target,
    row_spearman,
)
from deepscope.errors import UnsupportedModelError, invalid_parameter
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["RandomisationCheck", "model_parameter_randomisation", "structural_similarity"]


@dataclasses.dataclass(frozen=True)
class RandomisationCheck(Result):
    """Similarity of the maps to the original map after each cumulative randomisation step.

    Attributes:
        layers: names of the re-initialised modules, in the order they were randomised (top first).
        spearman: ``(layers, batch)`` Spearman correlation of |a| with the original, per example.
        mean_spearman, spearman_standard_error: per step, over the examples.
        ssim: ``(layers, batch)`` SSIM of the normalised |a| images, or None when not asked.
        passed: True when the mean correlation after the last step is below ``threshold``.
    """

    layers: list[str]
    spearman: torch.Tensor
    mean_spearman: list[float]
    spearman_standard_error: list[float]
    ssim: torch.Tensor | None
    threshold: float
    passed: bool
    method: str
    attribution_calls: int
    note: str = ""

    def summary(self) -> str:
        """One plain sentence: passed or failed, and the rank correlation after the last step."""
        last = self.mean_spearman[-1]
        if self.passed:
            return f"passed: after randomising every layer the maps' rank correlation fell to {last:.2f}"
        return f"failed: after randomising every layer the maps still correlate at {last:.2f} (>= {self.threshold})"

    @property
    def verdict(self) -> str:
        """Deprecated alias of :meth:`summary` (the one name for a result's headline); removed in 0.2."""
        return self.summary()

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for i, layer in enumerate(self.layers):
            row = {"randomised_up_to": layer, "spearman": self.mean_spearman[i]}
            row["standard_error"] = self.spearman_standard_error[i]
            if self.ssim is not None:
                row["ssim"] = mean_and_standard_error(self.ssim[i])[0]
            rows.append(row)
        return rows

    def plot(self, ax=None):  # -> matplotlib.figure.Figure
        """Mean rank correlation (and SSIM) against the cascade of randomised layers."""
        from deepscope._figures import new_figure

        figure, ax = new_figure(5.0, 3.0) if ax is None else (ax.figure, ax)
        steps = list(range(len(self.layers)))
        ax.errorbar(steps, self.mean_spearman, yerr=self.spearman_standard_error, marker="o", label="Spearman |a|")
        if self.ssim is not None:
            ax.plot(steps, [mean_and_standard_error(s)[0] for s in self.ssim], marker="s", label="SSIM")
        ax.axhline(self.threshold, color="gray", linestyle="--", linewidth=0.8)
        ax.set_xticks(steps, self.layers, rotation=45, ha="right")
        ax.set_ylabel("similarity to original map")
        ax.set_title(f"{self.method}: cascading randomisation")
        ax.legend()
        return figure


def structural_similarity(first: torch.Tensor, second: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004) of two batches of single-channel images ``(batch, H, W)`` in [0, 1].

    SSIM = (2μ_aμ_b + C1)(2σ_ab + C2) / ((μ_a² + μ_b² + C1)(σ_a² + σ_b² + C2)) over uniform
    ``window`` × ``window`` patches (valid positions only, sample covariances), C1 = 0.01², C2 = 0.03².

    Example:
        >>> image = torch.rand(2, 8, 8)
        >>> structural_similarity(image, image)
        tensor([1., 1.])
    """
    window = max(1, min(window, first.shape[-1], first.shape[-2]))
    a, b = first.unsqueeze(1), second.unsqueeze(1)
    count = window * window
    correction = count / (count - 1) if count > 1 else 1.0
    mean_a, mean_b = F.avg_pool2d(a, window, 1), F.avg_pool2d(b, window, 1)
    var_a = (F.avg_pool2d(a * a, window, 1) - mean_a**2) * correction
    var_b = (F.avg_pool2d(b * b, window, 1) - mean_b**2) * correction
    covariance = (F.avg_pool2d(a * b, window, 1) - mean_a * mean_b) * correction
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))
    return ssim.mean(dim=(1, 2, 3))


def _normalised_images(values: torch.Tensor) -> torch.Tensor:
    """|a| summed over channels and scaled to [0, 1] per example: ``(batch, H, W)``."""
    image = values.abs().sum(dim=1).double()
    low = image.amin(dim=(1, 2), keepdim=True)
    span = (image.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-12)
    return (image - low) / span


def _magnitudes(values: torch.Tensor, sum_channels: bool) -> torch.Tensor:
    """|a| per example, flattened to ``(batch, features)``; summed over dimension 1 first if asked."""
    magnitudes = values.abs()
    if sum_channels and magnitudes.dim() > 2:
        magnitudes = magnitudes.sum(dim=1)
    return magnitudes.reshape(len(values), -1)


def _layers_top_down(model: nn.Module, layers: Any, owner: str) -> list[str]:
    owning = [name for name, module in model.named_modules() if any(True for _ in module.parameters(recurse=False))]
    if layers is None:
        if not owning:
            raise UnsupportedModelError(f"{owner}: the model has no parameters to randomise.")
        return owning[::-1]
    if isinstance(layers, str) or not all(isinstance(name, str) and name in owning for name in layers) or not layers:
        raise invalid_parameter("layers", owner, f"a list of module names among {owning}", layers)
    return list(layers)


def _randomise(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module``'s own parameters (its reset_parameters, else N(0, std²)), seeded."""
    cuda = sorted({p.device.index or 0 for p in module.parameters(recurse=False) if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:
            for parameter in module.parameters(recurse=False):
                std = float(parameter.std()) if parameter.numel() > 1 else 1.0
                parameter.normal_(0.0, std if std > 0 else 1.0)


@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs={"ssim": True})
def model_parameter_randomisation(
    model: nn.Module,
    inputs: torch.Tensor,
    target: Any = None,
    *,
    method: Any = "saliency",
    layers: list[str] | None = None,
    ssim: bool = False,
    sum_channels: bool = False,
    threshold: float = 0.5,
    seed: int = 0,
    progress: bool = False,
    output_fn: Any = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> RandomisationCheck:
    """Cascading model-parameter randomisation test (Adebayo et al. 2018) on a deep copy.

    For step j = 1..L the top j parameterised modules of the copy are re-initialised and the map
    Φ_j is recomputed for the same targets; ρ_j = Spearman(|Φ_j|, |Φ_0|) per example.

    Args:
        model: classifier. inputs: ``(batch, *features)``. target: None (predicted class by the
            original model), an int or ``(batch,)`` ints; held fixed through the cascade.
        method: a name in ``deepscope.attribution.METHODS`` or a callable
            ``(model, inputs, target=...) -> Attribution | Tensor``.
        layers: module names to randomise, in order (default: every module owning parameters,
            from the output backwards).
        ssim: also report SSIM of the normalised maps (image inputs ``(batch, C, H, W)`` only).
        sum_channels: compare Σ_channels |a| (dimension 1) instead of every element; use it for
            one-hot sequences, where input-multiplied maps are zero on the absent letters whatever
            the weights, which alone keeps the element-wise correlation high.
        threshold: the check passes when the final mean correlation is below it.
        seed: seed of the re-initialisation. progress: show a tqdm bar over the layers.
        output_fn, max_batch: as for the methods.

    Returns:
        :class:`RandomisationCheck`.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        >>> check = model_parameter_randomisation(net, torch.randn(5, 4), 0)
        >>> check.layers
        ['2', '0']
    """
    owner = "model_parameter_randomisation"
    threshold = check_float(threshold, "threshold", owner, minimum=-1.0, maximum=1.0)
    prepared = prepare_single_target(model, inputs, target, owner=owner, output_fn=output_fn, max_batch=max_batch)
    x, targets = prepared.inputs, prepared.targets[0]
    if ssim and x.dim() != 4:
        raise invalid_parameter("ssim", owner, "False for inputs that are not images (batch, C, H, W)", ssim)
    names = _layers_top_down(model, layers, owner)
    explain = attribution_function(method, owner, output_fn=output_fn, max_batch=prepared.max_batch)
    method_name = method if isinstance(method, str) else getattr(method, "__name__", "custom")
    original = explain(model, x, targets)
    copy_ = copy.deepcopy(model)
    modules = dict(copy_.named_modules())
    correlations, similarities = [], []
    for step, name in enumerate(tqdm(names, desc="randomising layers", disable=not progress)):
        _randomise(modules[name], seed + step)
        randomised = explain(copy_, x, targets)
        correlations.append(row_spearman(_magnitudes(randomised, sum_channels), _magnitudes(original, sum_channels)))
        if ssim:
            similarities.append(structural_similarity(_normalised_images(randomised), _normalised_images(original)))
    spearman = torch.stack(correlations).cpu()
    summaries = [mean_and_standard_error(row) for row in spearman]
    means = [s[0] for s in summaries]
    return RandomisationCheck(
        layers=[name or "(root parameters)" for name in names],
        spearman=spearman,
        mean_spearman=means,
        spearman_standard_error=[s[1] for s in summaries],
        ssim=torch.stack(similarities).cpu() if ssim else None,
        threshold=threshold,
        passed=bool(means[-1] < threshold),
        method=method_name,
        attribution_calls=len(x) * (len(names) + 1),
        note=guard_note(model),
    )
