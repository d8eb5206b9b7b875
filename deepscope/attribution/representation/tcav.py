"""TCAV: testing with concept activation vectors, with a significance test (Kim et al. 2018).

A concept activation vector (CAV) v_C at layer l is the normal of a linear classifier that
separates the activations of concept examples from those of a random set (pointing towards the
concept). The TCAV score of class k is the share of class-k inputs whose target score increases
along the concept direction:

    TCAV_{C,k,l} = |{x ∈ X_k : ∇h_{l,k}(f_l(x)) · v_C > 0}| / |X_k|.

One CAV is trained against each of R random sets, giving R concept scores; R random-vs-random
CAVs (random set i against random set i+1) give R scores of meaningless directions. A two-sided
Welch t-test of the two samples (scipy.stats.ttest_ind) says whether the concept matters
beyond chance; the concept is significant when p < alpha.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from deepscope._validation import check_int, check_probability
from deepscope.attribution._base import guard_note, make_forward
from deepscope.attribution.representation._activations import check_inputs, check_layers, collect_activations
from deepscope.errors import UnsupportedModelError, invalid_parameter
from deepscope.registry import analysis
from deepscope.results import Result

__all__ = ["TCAVResult", "tcav", "layer_gradients"]


@dataclasses.dataclass(frozen=True)
class TCAVResult(Result):
    """TCAV scores of a concept against random directions, and the significance test.

    Attributes:
        concept_scores: ``(R,)`` TCAV score of the concept CAV trained against each random set.
        random_scores: ``(R,)`` scores of random-vs-random CAVs (the null distribution).
        mean_score, standard_error: of the concept scores. p_value: two-sided Welch t-test.
        significant: p_value < alpha. cav_accuracy: ``(R,)`` training accuracy of each concept CAV.
    """

    layer: str
    target: int
    concept_scores: torch.Tensor
    random_scores: torch.Tensor
    mean_score: float
    standard_error: float
    p_value: float
    alpha: float
    significant: bool
    cav_accuracy: torch.Tensor
    n_inputs: int
    note: str = ""

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "layer": self.layer,
                "target": self.target,
                "tcav_score": self.mean_score,
                "standard_error": self.standard_error,
                "random_mean": float(self.random_scores.mean()),
                "p_value": self.p_value,
                "significant": self.significant,
                "random_sets": int(self.concept_scores.numel()),
            }
        ]

    def plot(self, ax=None):  # -> matplotlib.figure.Figure
        """Concept and random TCAV scores side by side."""
        from deepscope._figures import new_figure

        figure, ax = new_figure(4.0, 3.0) if ax is None else (ax.figure, ax)
        ax.boxplot([self.concept_scores.numpy(), self.random_scores.numpy()])
        ax.set_xticks([1, 2], ["concept", "random"])
        ax.set_ylabel("TCAV score")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"layer {self.layer}, class {self.target}: p = {self.p_value:.3g}")
        return figure


def layer_gradients(
    model: nn.Module, inputs: torch.Tensor, layer: str, target: int, *, output_fn: Any = None, max_batch: int = 256
) -> torch.Tensor:
    """∂(target score)/∂(activation of ``layer``) per input, flattened to ``(n, features)``, on CPU.

    The layer's output is replaced (through a forward hook, removed in ``finally``) by a detached
    copy that requires grad, so the gradient exists even where nothing upstream requires grad.
    """
    module = dict(model.named_modules())[layer]
    forward = make_forward(model, output_fn, "tcav")
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, args: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise UnsupportedModelError(f"tcav: layer {layer!r} returns a {type(output).__name__}, not a tensor.")
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        return leaf

    gradients = []
    handle = module.register_forward_hook(hook)
    try:
        for start in range(0, inputs.shape[0], max_batch):
            captured.clear()
            with torch.enable_grad():
                scores = forward(inputs[start : start + max_batch])
                if not 0 <= target < scores.shape[1]:
                    raise invalid_parameter("target", "tcav", f"a class index in [0, {scores.shape[1] - 1}]", target)
                if not captured:
                    raise UnsupportedModelError(f"tcav: layer {layer!r} was not called in the forward pass.")
                (gradient,) = torch.autograd.grad(scores[:, target].sum(), captured[-1])
            gradients.append(gradient.reshape(gradient.shape[0], -1).to("cpu", torch.float64))
    finally:
        handle.remove()
    return torch.cat(gradients)


def _train_cav(positive: np.ndarray, negative: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Unit normal of a logistic-regression boundary, pointing to ``positive``; and its training accuracy."""
    from sklearn.linear_model import LogisticRegression

    features = np.concatenate([positive, negative])
    labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # scikit-learn takes seeds below 2**32 only; deepscope's seeds are any int >= 0
        classifier = LogisticRegression(max_iter=1000, random_state=seed % 2**32).fit(features, labels)
    direction = classifier.coef_[0]
    norm = np.linalg.norm(direction)
    return (direction / norm if norm > 0 else direction), float(classifier.score(features, labels))


def _t_test(concept: np.ndarray, random: np.ndarray) -> float:
    """Two-sided Welch t-test p-value; degenerate constant samples give 1 (equal) or 0 (different)."""
    from scipy.stats import ttest_ind

    if np.ptp(concept) == 0 and np.ptp(random) == 0:
        return 1.0 if concept[0] == random[0] else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # one constant sample: SciPy warns, the test is still valid
        return float(ttest_ind(concept, random, equal_var=False).pvalue)


_EXAMPLE = {
    "concept": torch.ones(6, 1, 8, 8),
    "random_sets": [torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)],
    "layer": "2",
    "target": 1,
}


@analysis(takes="model_inputs", family="attribution", fixture="cnn", example_kwargs=_EXAMPLE)
def tcav(
    model: nn.Module,
    inputs: torch.Tensor,
    concept: torch.Tensor,
    random_sets: list[torch.Tensor],
    *,
    layer: str,
    target: int,
    alpha: float = 0.05,
    seed: int = 0,
    output_fn: Any = None,
    max_batch: int = 256,
) -> TCAVResult:
    """TCAV score of ``concept`` for class ``target`` at ``layer``, tested against random CAVs (Kim et al. 2018).

    Args:
        model: classifier. inputs: ``(n, *features)`` examples of the target class.
        concept: ``(m, *features)`` examples showing the concept.
        random_sets: R >= 2 tensors ``(m_i, *features)`` of random examples (counter-examples).
        layer: the module whose output is the representation. target: the class index.
        alpha: significance level. seed: seed of the CAV classifiers. output_fn: maps a tuple/dict
            output to class scores. max_batch: rows per forward pass.

    Returns:
        :class:`TCAVResult`.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> randoms = [torch.randn(10, 3) for _ in range(3)]
        >>> result = tcav(net, torch.randn(8, 3), torch.randn(10, 3) + 2, randoms, layer="0", target=1)
        >>> result.concept_scores.shape
        torch.Size([3])
    """
    owner = "tcav"
    x = check_inputs(model, inputs, owner)
    concept_x = check_inputs(model, concept, owner, "concept")
    if isinstance(random_sets, torch.Tensor) or not isinstance(random_sets, (list, tuple)) or len(random_sets) < 2:
        raise invalid_parameter("random_sets", owner, "a list of at least 2 tensors of random examples", random_sets)
    randoms = [check_inputs(model, r, owner, "random_sets") for r in random_sets]
    (layer,) = check_layers(model, [layer] if isinstance(layer, str) else layer, owner, "layer")
    target = check_int(target, "target", owner, minimum=0)
    alpha = check_probability(alpha, "alpha", owner)
    gradients = layer_gradients(model, x, layer, target, output_fn=output_fn, max_batch=max_batch).numpy()
    concept_acts = collect_activations(model, concept_x, [layer], max_batch=max_batch)[layer].numpy()
    random_acts = [collect_activations(model, r, [layer], max_batch=max_batch)[layer].numpy() for r in randoms]
    concept_scores, random_scores, accuracies = [], [], []
    for i, random_act in enumerate(random_acts):
        direction, accuracy = _train_cav(concept_acts, random_act, seed + i)
        concept_scores.append(float((gradients @ direction > 0).mean()))
        accuracies.append(accuracy)
        other = random_acts[(i + 1) % len(random_acts)]
        null_direction, _ = _train_cav(random_act, other, seed + i)
        random_scores.append(float((gradients @ null_direction > 0).mean()))
    concept_array, random_array = np.array(concept_scores), np.array(random_scores)
    p_value = _t_test(concept_array, random_array)
    error = float(concept_array.std(ddof=1) / math.sqrt(len(concept_array)))
    return TCAVResult(
        layer=layer,
        target=target,
        concept_scores=torch.from_numpy(concept_array),
        random_scores=torch.from_numpy(random_array),
        mean_score=float(concept_array.mean()),
        standard_error=error,
        p_value=p_value,
        alpha=alpha,
        significant=bool(p_value < alpha),
        cav_accuracy=torch.tensor(accuracies, dtype=torch.float64),
        n_inputs=int(x.shape[0]),
        note=guard_note(model),
    )
