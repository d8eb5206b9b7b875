"""Ground-truth attribution leaderboard on three modalities: ``python -m bench.leaderboard``.

For ``planted_tabular``, ``planted_image`` and ``planted_motifs`` (label signal only inside a
known mask) a reference model is trained with ``deepscope.train``; then every method in
``deepscope.attribution.METHODS`` (plus a uniform-random baseline) explains correctly classified
test examples for their true class, and is scored on:

* localisation against the planted mask: AUROC of |a| (0.5 = chance) and precision@|mask|
  (for one-hot sequences per position, |a| summed over the 4 channels);
* faithfulness: deletion AUC (lower is better) and insertion AUC (higher is better) of the
  target probability with baseline 0, and faithfulness correlation (Bhatt et al. 2020, logit);
* (shapley is sampled with 16 permutations over 2x2 patches on images and whole positions on
  sequences; occlusion hides a whole position on sequences; other methods use their defaults, with
  32 integration steps and 16 samples where they take them;)
* the cascading model-parameter randomisation sanity check (Adebayo et al. 2018): passed when the
  Spearman correlation of |a| with the original map falls below 0.5 after every layer is re-initialised
  (per position, |a| summed over channels, on sequences).

A method registered for other inputs only (the token-only layer methods; ISM off one-hot
sequences: :func:`select_methods`) is not run and is listed with a note; one that raises a
DeepscopeError is listed with the reason. The whole run is
bounded (a few minutes on 2 CPU cores); the tables go to bench/results/attribution_leaderboard.json.
"""

from __future__ import annotations

import argparse
import inspect
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from bench.harness import compare, record, time_call
from deepscope.attribution import METHODS
from deepscope.attribution._registry import REGISTRY, is_one_hot, is_tokens
from deepscope.attribution.metrics import (
    deletion_curve,
    faithfulness_correlation,
    insertion_curve,
    localisation,
    model_parameter_randomisation,
)
from deepscope.datasets import load
from deepscope.errors import DeepscopeError
from deepscope.models import build, default_architecture, train

DATASETS = ("planted_tabular", "planted_image", "planted_motifs")


def cheap_options(function: Callable[..., Any], train_inputs: torch.Tensor) -> dict[str, Any]:
    """Options that keep each method fast and give reference-based methods a data background."""
    parameters = inspect.signature(function).parameters
    options: dict[str, Any] = {}
    if "steps" in parameters:
        options["steps"] = 32
    if "samples" in parameters:
        options["samples"] = 16
    for name in ("references", "baselines"):
        if name in parameters:
            options[name] = train_inputs[:64]
    shape = tuple(train_inputs.shape[1:])
    if "feature_groups" in parameters and len(shape) == 3:  # images: 2x2 patches
        rows = torch.arange(shape[1]) // 2
        columns = torch.arange(shape[2]) // 2
        patches = rows.unsqueeze(1) * ((shape[2] + 1) // 2) + columns.unsqueeze(0)
        options["feature_groups"] = patches.expand(shape).clone()
    elif "feature_groups" in parameters and len(shape) == 2:  # sequences: one group per position
        options["feature_groups"] = torch.arange(shape[1]).expand(shape).clone()
    if "window" in parameters and len(shape) == 2:  # sequences: occlude a whole position
        options["window"] = (shape[0], 1)
    return options


def select_methods(inputs: Any) -> tuple[list[tuple[str, Callable[..., Any]]], list[tuple[str, str]]]:
    """The methods of METHODS that can apply to these inputs, and a note for each one that cannot.

    A method registered for token inputs only (``shown_when=is_tokens``: the layer methods, which
    attribute at an embedding) cannot explain the float features of this leaderboard's models; one
    registered for one-hot sequences only (``shown_when=is_one_hot``: ISM) cannot explain tabular
    rows or images. Every other method runs (a DeepscopeError it raises is still an error row).
    """
    chosen, skipped = [], []
    tokens, one_hot = is_tokens(inputs), not is_tokens(inputs) and is_one_hot(inputs)
    for name, function in METHODS.items():
        shown_when = REGISTRY[name].report.shown_when if REGISTRY[name].report is not None else None
        if shown_when is is_tokens and not tokens:
            skipped.append((name, "token models only (attributes at an embedding layer); these inputs are features"))
        elif shown_when is is_one_hot and not one_hot:
            skipped.append((name, "one-hot sequences only; these inputs are not one-hot"))
        elif shown_when is not is_tokens and tokens:
            skipped.append((name, "float features only; these inputs are token ids"))
        else:
            chosen.append((name, function))
    return chosen, skipped


def random_attribution(model: torch.nn.Module, inputs: torch.Tensor, target: Any = None) -> torch.Tensor:
    """The chance baseline: uniform noise, independent of the model."""
    return torch.rand(inputs.shape, generator=torch.Generator().manual_seed(0), dtype=inputs.dtype)


def _localisation_view(values: torch.Tensor, mask: torch.Tensor, sequences: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if sequences:  # per position: |a| summed over channels, the mask of any channel
        return values.abs().sum(dim=1), mask.amax(dim=1)
    return values, mask


def _format(mean: float, error: float | None = None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.3f}" if error is None or math.isnan(error) else f"{mean:.3f} ± {error:.3f}"


def evaluate_method(
    name: str,
    explain: Callable[..., torch.Tensor],
    model: torch.nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    *,
    sequences: bool,
    sanity_examples: int,
    sanity: bool = True,
) -> dict[str, Any]:
    """One leaderboard row: localisation, faithfulness and the sanity check for one method."""
    start = time.perf_counter()
    values = explain(model, inputs, targets)
    seconds = time.perf_counter() - start
    local = localisation(*_localisation_view(values, mask, sequences))
    deletion = deletion_curve(model, inputs, targets, attributions=values, step_fraction=0.05)
    insertion = insertion_curve(model, inputs, targets, attributions=values, step_fraction=0.05)
    correlation = faithfulness_correlation(model, inputs, targets, attributions=values, n_samples=32)
    row = {
        "method": name,
        "auroc": local.means["auroc"][:2],
        "precision": local.means["relevance_rank_accuracy"][:2],
        "deletion_auc": (deletion.mean_auc, deletion.standard_error),
        "insertion_auc": (insertion.mean_auc, insertion.standard_error),
        "faithfulness_correlation": (correlation.mean, correlation.standard_error),
        "seconds": seconds,
        "sanity": None,
    }
    if sanity:
        check = model_parameter_randomisation(
            model,
            inputs[:sanity_examples],
            targets[:sanity_examples],
            method=lambda m, x, target: explain(m, x, target),
            sum_channels=sequences,
        )
        row["sanity"] = (check.passed, check.mean_spearman[-1])
    return row


def run_dataset(name: str, *, n_samples: int, epochs: int, n_eval: int, sanity_examples: int) -> tuple[str, list]:
    """Train the reference model on one planted set and score every method on it."""
    data = load(name, seed=0, n_samples=n_samples)
    architecture = default_architecture(data)
    torch.manual_seed(0)
    run = train(build(architecture, data.input_shape, data.num_classes), data, epochs=epochs, lr=3e-3, seed=0)
    model = run.model
    with torch.no_grad():
        correct = (model(data.x_test).argmax(dim=1) == data.y_test).nonzero().squeeze(1)[:n_eval]
    inputs, targets, mask = data.x_test[correct], data.y_test[correct], data.mask_test[correct]
    sequences = inputs.dim() == 3
    rows = []
    candidates: list[tuple[str, Callable[..., torch.Tensor], bool]] = []
    chosen, skipped = select_methods(inputs)
    rows.extend({"method": method_name, "skipped": note} for method_name, note in skipped)
    for method_name, function in chosen:
        options = cheap_options(function, data.x_train)

        def explain(m, x, target, function=function, options=options):
            return function(m, x, target=target, **options).values

        candidates.append((method_name, explain, True))
    candidates.append(("random (chance)", random_attribution, False))
    for method_name, explain, sanity in candidates:
        try:
            rows.append(
                evaluate_method(
                    method_name,
                    explain,
                    model,
                    inputs,
                    targets,
                    mask,
                    sequences=sequences,
                    sanity_examples=sanity_examples,
                    sanity=sanity,
                )
            )
        except DeepscopeError as error:
            rows.append({"method": method_name, "error": str(error).split(". ")[0]})
    accuracy = run.history.test_accuracy[-1]
    header = (
        f"### {name}: {architecture} on inputs {tuple(data.input_shape)}, {data.num_classes} classes, "
        f"test accuracy {accuracy:.3f}; {len(inputs)} correctly classified test examples"
        + (" (localisation per position)" if sequences else "")
    )
    return header, rows


def to_markdown(header: str, rows: list[dict[str, Any]]) -> str:
    """One table per dataset, best localisation first."""
    lines = [
        header,
        "",
        "| method | AUROC (mask) ↑ | precision@\\|mask\\| ↑ | deletion AUC ↓ | insertion AUC ↑ | faithfulness corr. ↑ "
        "| sanity check (final ρ) | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    scored = sorted((r for r in rows if "error" not in r and "skipped" not in r), key=lambda r: -(r["auroc"][0] or 0))
    for row in scored:
        sanity = (
            "–"
            if row["sanity"] is None
            else ("passed" if row["sanity"][0] else "FAILED") + f" ({row['sanity'][1]:.2f})"
        )
        lines.append(
            f"| {row['method']} | {_format(*row['auroc'])} | {_format(*row['precision'])} | "
            f"{_format(*row['deletion_auc'])} | {_format(*row['insertion_auc'])} | "
            f"{_format(*row['faithfulness_correlation'])} | {sanity} | {row['seconds'] * 1000:.0f} ms |"
        )
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['method']} | not applicable: {row['error']} | | | | | | |")
        elif "skipped" in row:
            lines.append(f"| {row['method']} | not run: {row['skipped']} | | | | | | |")
    return "\n".join(lines)


def metric_timings(n_inputs: int = 256) -> tuple[list[dict[str, Any]], str]:
    """Metrics on the digits CNN: deepscope vs Captum's infidelity / sensitivity_max on the same perturbations,
    and the wall time of deletion + insertion + faithfulness correlation."""
    from captum.attr import Saliency
    from captum.metrics import infidelity as captum_infidelity
    from captum.metrics import sensitivity_max

    from deepscope.attribution import saliency
    from deepscope.attribution.metrics import infidelity, max_sensitivity

    data = load("digits", seed=0)
    torch.manual_seed(0)
    model = train(build(default_architecture(data), data.input_shape, data.num_classes), data, epochs=3, seed=0).model
    x, y = data.x_test[:n_inputs], data.y_test[:n_inputs]
    values = saliency(model, x, y).values
    noise = 0.1 * torch.randn(10, *x.shape, generator=torch.Generator().manual_seed(1))
    offsets = (torch.rand(10, *x.shape, generator=torch.Generator().manual_seed(2)) * 2 - 1) * 0.02

    def perturb(expanded):
        flat = noise.transpose(0, 1).reshape(-1, *x.shape[1:])
        return flat, expanded - flat

    def captum_infid():
        return captum_infidelity(model, perturb, x, values, target=y, n_perturb_samples=10)

    def ours_infid():
        return infidelity(model, x, y, attributions=values, perturbations=noise).values

    def shift(expanded, radius):
        return expanded + offsets.transpose(0, 1).reshape(-1, *x.shape[1:])

    def captum_sens():
        return sensitivity_max(
            lambda inputs, target: Saliency(model).attribute(inputs, target=target),
            x,
            perturb_func=shift,
            n_perturb_samples=10,
            target=y,
        )

    def ours_sens():
        return max_sensitivity(model, x, y, perturbations=offsets).values

    def agreement(ours, theirs):
        difference = (ours().double() - theirs().double()).abs().max() / theirs().double().abs().max()
        return f"max rel. diff {float(difference):.1e}"

    rows = [
        compare(
            f"infidelity, digits CNN, {n_inputs} inputs x 10 perturbations",
            ours=ours_infid,
            reference=captum_infid,
            reference_name="Captum 0.9 infidelity",
            agreement=agreement(ours_infid, captum_infid),
        ),
        compare(
            f"max-sensitivity of saliency, digits CNN, {n_inputs} inputs x 10 draws",
            ours=ours_sens,
            reference=captum_sens,
            reference_name="Captum 0.9 sensitivity_max",
            agreement=agreement(ours_sens, captum_sens),
        ),
    ]

    def three_metrics():
        deletion_curve(model, x, y, attributions=values)
        insertion_curve(model, x, y, attributions=values)
        faithfulness_correlation(model, x, y, attributions=values)

    seconds = sorted(time_call(three_metrics, repeats=3))[1]
    note = (
        f"Deletion + insertion curves (21 points each) + faithfulness correlation (50 subsets) for {n_inputs} "
        f"digits inputs on the digits CNN: {seconds:.2f} s (median of 3, {torch.get_num_threads()} threads)."
    )
    return rows, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-eval", type=int, default=32)
    parser.add_argument("--sanity-examples", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-timings", action="store_true", help="leave out the metric timings vs Captum")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    start = time.perf_counter()
    tables = []
    for name in DATASETS:
        header, rows = run_dataset(
            name,
            n_samples=arguments.n_samples,
            epochs=arguments.epochs,
            n_eval=arguments.n_eval,
            sanity_examples=arguments.sanity_examples,
        )
        tables.append(to_markdown(header, rows))
    rows, timing_note = ([], "") if arguments.skip_timings else metric_timings()
    elapsed = time.perf_counter() - start
    intro = (
        "Ground truth: the label signal was planted only inside a known mask (OpenXAI covers tabular data only; "
        "this covers three modalities). Scores are mean ± standard error over the evaluated examples. "
        "Deletion/insertion: target probability as features are set to 0 / restored from 0 in attribution "
        "order (5% per step). Sanity check: cascading parameter randomisation, passed when the Spearman "
        f"correlation of |a| (per position on sequences) falls below 0.5. Total run time {elapsed:.0f} s."
    )
    command = "python -m bench.leaderboard"
    markdown = intro + ("\n\n" + timing_note if timing_note else "") + "\n\n" + "\n\n".join(tables)
    record("attribution_leaderboard", rows, command=command, extra_markdown=markdown)


if __name__ == "__main__":
    main()
