"""Attribution benchmark: deepscope vs Captum 0.9 on the same model and inputs, in one process.

Model: the built-in ``cnn2d`` trained for 3 epochs on the 8x8 digits (seed 0); inputs: the first
256 test digits (64 for occlusion and Shapley). Each row times both libraries on identical
inputs and targets (the predicted classes) and states how well the answers agree.

The integrated-gradients row compares at *equal completeness*: Captum's step count is the
smallest power of two (Gauss-Legendre, like ours) at which every example's relative completeness
error |Σφ − ΔF| / |ΔF| is below 1% (the search itself is not timed); deepscope chooses the step
count per example (``steps=None, tol=0.01``). Peak memory is the growth of the resident set in a
fresh process for each library.

Run: ``python -m bench.bench_attribution`` (single-threaded, as the harness records).
"""

from __future__ import annotations

import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import torch
from torch import nn

from bench.harness import RESULTS, compare, compare_alternating, record
from bench.typical import TYPICAL_CNN
from deepscope.attribution import (
    deeplift,
    gradient_shap,
    integrated_gradients,
    lrp,
    occlusion,
    saliency,
    shapley,
)
from deepscope.datasets import load
from deepscope.models import build, train

COMMAND = "python -m bench.bench_attribution"
TOL = 0.01


class _FunctionalFlatten(nn.Module):
    """The digits CNN's layers with ``torch.flatten`` in place of ``nn.Flatten`` (for Captum's LRP)."""

    def __init__(self, sequential: nn.Sequential) -> None:
        super().__init__()
        layers = list(sequential)
        cut = next(i for i, layer in enumerate(layers) if isinstance(layer, nn.Flatten))
        self.features, self.head = nn.Sequential(*layers[:cut]), nn.Sequential(*layers[cut + 1 :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    dataset = load("digits", seed=0)
    torch.manual_seed(0)
    run = train(build("cnn2d", dataset.input_shape, dataset.num_classes), dataset, epochs=3, lr=1e-3, seed=0)
    model = run.model.eval()
    x = torch.as_tensor(dataset.x_test[:256])
    with torch.no_grad():
        target = model(x).argmax(1)
    background = torch.as_tensor(dataset.x_train[:16])
    return model, x, target, background


def relative_completeness(total: torch.Tensor, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        delta = model(x).gather(1, target[:, None])[:, 0] - model(torch.zeros_like(x)).gather(1, target[:, None])[:, 0]
    return (total - delta).abs() / delta.abs().clamp_min(1e-7)


CHUNK = 4096  # rows per forward pass for both libraries (Captum's internal_batch_size)
MAX_STEPS = 4096


def captum_ig(model, x, target, steps: int, chunk: int | None = CHUNK) -> torch.Tensor:
    from captum.attr import IntegratedGradients

    return IntegratedGradients(model).attribute(
        x, target=target, n_steps=steps, method="gausslegendre", internal_batch_size=chunk
    )


def captum_steps_for(model, x, target, grid=(16, 32, 64, 128, 256, 512, 1024, 2048, MAX_STEPS)) -> tuple[int, float]:
    for steps in grid:
        values = captum_ig(model, x, target, steps)
        worst = float(relative_completeness(values.flatten(1).sum(1), model, x, target).max())
        if worst < TOL:
            return steps, worst
    return grid[-1], worst


def agreement(ours: torch.Tensor, theirs: torch.Tensor, name: str = "Captum") -> str:
    scale = theirs.abs().max().clamp_min(1e-12)
    return f"max |diff| / max |{name}| = {float((ours - theirs).abs().max() / scale):.1e}"


def _peak_in_subprocess(which: str, path: str, steps: int) -> float:
    output = subprocess.run(
        [sys.executable, "-m", "bench.bench_attribution", "--peak", which, path, str(steps)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout
    return float(output.strip().splitlines()[-1])


def peak_main(which: str, path: str, steps: int) -> None:
    """Print the growth of the peak resident set (MiB) during one integrated-gradients call."""
    torch.set_num_threads(1)
    saved = torch.load(path, weights_only=False)  # our own temporary file
    model, x, target = saved["model"], saved["x"], saved["target"]
    # ru_maxrss survives execve (a child starts with its parent's peak), so read this process's own
    # high-water mark (VmHWM) after resetting it (Linux: write 5 to /proc/self/clear_refs)
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass
    before = _status_kib("VmRSS")
    if which == "captum":
        captum_ig(model, x, target, steps)
    elif which == "captum_default":
        captum_ig(model, x, target, steps, chunk=None)
    else:
        integrated_gradients(model, x, target, steps=None, tol=TOL, max_steps=MAX_STEPS, max_batch=CHUNK)
    after = _status_kib("VmHWM")
    sys.stdout.write(f"{(after - before) / 1024:.2f}\n")


def _status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB (Linux)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def shap_row() -> dict:
    """Exact baseline Shapley of 12 tabular features: deepscope vs SHAP's ExactExplainer."""
    import numpy as np
    import shap

    dataset = load("wine", seed=0)
    rows = torch.as_tensor(dataset.x_test[:32, :12])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3)).eval()

    def class_zero(array: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.as_tensor(array, dtype=torch.float32))[:, 0].double().numpy()

    masker = shap.maskers.Independent(np.zeros((1, 12)), max_samples=1)
    explainer = shap.explainers.Exact(class_zero, masker)
    theirs = torch.as_tensor(explainer(rows.double().numpy()).values)
    ours = shapley(model, rows, 0).values.double()
    return compare(
        "exact Shapley, 12 tabular features, 32 wine rows",
        ours=lambda: shapley(model, rows, 0),
        reference=lambda: explainer(rows.double().numpy()),
        reference_name=f"SHAP {shap.__version__} ExactExplainer",
        repeats=3,
        agreement=agreement(ours, theirs, "SHAP"),
        notes="baseline Shapley with the all-zero reference in both",
    )


def ig_rows(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> list[dict]:
    """The integrated-gradients rows: typical model first, then the hard model and its peak memory."""
    from bench.bench_ig_typical import typical_ig_row  # (it imports this module)

    rows = [typical_ig_row()]
    # ---- hard model: the 3-epoch BatchNorm cnn2d, where one example needs thousands of steps
    steps, captum_worst = captum_steps_for(model, x, target)
    ours = integrated_gradients(model, x, target, steps=None, tol=TOL, max_steps=MAX_STEPS, max_batch=CHUNK)
    ours_worst = float(ours.diagnostics["completeness_error"].max())
    rows.append(
        compare_alternating(
            f"integrated gradients, HARD MODEL (cnn2d 3 epochs: one example needs {steps} steps), {len(x)} digits, "
            f"every example within {TOL:.0%} completeness",
            ours=lambda: integrated_gradients(
                model, x, target, steps=None, tol=TOL, max_steps=MAX_STEPS, max_batch=CHUNK
            ),
            reference=lambda: captum_ig(model, x, target, steps),
            reference_name="Captum 0.9 IntegratedGradients",
            repeats=3,
            agreement=f"worst completeness error: deepscope {ours_worst:.2%}, Captum {captum_worst:.2%}",
            notes=(
                f"best case, not typical: see the typical-model row. Both chunked to {CHUNK} rows per pass "
                f"(Captum's internal_batch_size); Captum needs {steps} Gauss-Legendre steps for every example "
                f"(smallest power of two); deepscope used {ours.diagnostics['steps'].float().mean():.1f} nodes on "
                f"average (max {int(ours.diagnostics['steps'].max())}), {ours.model_evaluations} rows in all"
            ),
        )
    )
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "setup.pt")
        torch.save({"model": model, "x": x, "target": target}, path)
        peaks = {name: _peak_in_subprocess(name, path, steps) for name in ("deepscope", "captum")}
        peaks["captum_default"] = _peak_in_subprocess("captum_default", path, min(steps, 256))
    rows.append(
        {
            "task": "peak resident memory growth of the hard-model integrated-gradients row (fresh process each, VmHWM)",
            "reference": "Captum 0.9 IntegratedGradients",
            "deepscope_median_s": float("nan"),
            "reference_median_s": float("nan"),
            "speedup": float("nan"),
            "repeats": 1,
            "agreement": f"deepscope {peaks['deepscope']:.1f} MiB, Captum {peaks['captum']:.1f} MiB",
            "notes": (
                f"peak RSS above the RSS before the call; not a timing row. Captum with its default "
                f"internal_batch_size=None at {min(steps, 256)} steps: {peaks['captum_default']:.1f} MiB"
            ),
        }
    )
    return rows


def _merge_with_recorded(rows: list[dict]) -> list[dict]:
    """Fresh rows replace the recorded rows of the same kind; the rest of the file is kept in order."""
    path = RESULTS / "attribution.json"
    recorded = json.loads(path.read_text())["rows"] if path.exists() else []

    def rerun(task: str) -> bool:
        return ("integrated gradients" in task or "integrated-gradients" in task) and "50 Gauss" not in task

    kept = [row for row in recorded if not rerun(row["task"])]
    return rows + kept


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from captum.attr import LRP, DeepLift, GradientShap, IntegratedGradients, Occlusion, Saliency, ShapleyValues

    model, x, target, background = setup()
    rows = []

    rows += ig_rows(model, x, target)

    # ---- the same fixed 50-step integral
    fixed = integrated_gradients(model, x, target, steps=50).values
    reference = IntegratedGradients(model).attribute(x, target=target, n_steps=50)
    rows.append(
        compare(
            f"integrated gradients, 50 Gauss-Legendre steps, {len(x)} digits",
            ours=lambda: integrated_gradients(model, x, target, steps=50),
            reference=lambda: IntegratedGradients(model).attribute(x, target=target, n_steps=50),
            reference_name="Captum 0.9 IntegratedGradients",
            repeats=3,
            agreement=agreement(fixed, reference),
        )
    )

    # ---- saliency
    rows.append(
        compare(
            f"saliency, {len(x)} digits",
            ours=lambda: saliency(model, x, target),
            reference=lambda: Saliency(model).attribute(x, target=target),
            reference_name="Captum 0.9 Saliency",
            agreement=agreement(saliency(model, x, target).values, Saliency(model).attribute(x, target=target)),
        )
    )

    # ---- DeepLIFT (rescale); cnn2d has ReLU -> MaxPool, where Captum's sums miss ΔF
    ours_deeplift = deeplift(model, x, target)
    theirs, delta = DeepLift(model).attribute(x, target=target, return_convergence_delta=True)
    captum_error = relative_completeness(theirs.flatten(1).sum(1), model, x, target)
    rows.append(
        compare(
            f"DeepLIFT rescale, {len(x)} digits",
            ours=lambda: deeplift(model, x, target),
            reference=lambda: DeepLift(model).attribute(x, target=target),
            reference_name="Captum 0.9 DeepLift",
            agreement=agreement(ours_deeplift.values, theirs),
            notes=(
                f"median completeness error: deepscope {ours_deeplift.diagnostics['completeness_error'].median():.1e}, "
                f"Captum {captum_error.median():.1e} (ReLU followed by MaxPool breaks Captum's module hooks)"
            ),
        )
    )

    # ---- LRP-epsilon; Captum's LRP has no rule for nn.Flatten, so it gets the same layers with a functional flatten
    captum_model = _FunctionalFlatten(copy.deepcopy(model)).eval()  # Captum sets rule attributes on modules
    ours_lrp = lrp(model, x, target).values
    rows.append(
        compare(
            f"LRP epsilon, {len(x)} digits",
            ours=lambda: lrp(model, x, target),
            reference=lambda: LRP(captum_model).attribute(x, target=target),
            reference_name="Captum 0.9 LRP",
            agreement=agreement(ours_lrp, LRP(captum_model).attribute(x, target=target)),
            notes="BatchNorm folded into the convolutions (deepscope) vs BatchNorm as its own epsilon-rule layer (Captum)",
        )
    )

    # ---- GradientShap, 50 samples, 16 background digits (different random streams)
    ours_shap = gradient_shap(model, x, target, baselines=background, samples=50, seed=0)
    torch.manual_seed(0)
    theirs_shap = GradientShap(model).attribute(x, baselines=background, target=target, n_samples=50, stdevs=0.0)
    gap = (ours_shap.values.flatten(1).sum(1) - theirs_shap.flatten(1).sum(1)).abs()
    within = float((gap <= 3 * 2**0.5 * ours_shap.diagnostics["standard_error"]).float().mean())
    rows.append(
        compare(
            f"gradient SHAP, 50 samples, {len(x)} digits",
            ours=lambda: gradient_shap(model, x, target, baselines=background, samples=50, seed=0),
            reference=lambda: GradientShap(model).attribute(
                x, baselines=background, target=target, n_samples=50, stdevs=0.0
            ),
            reference_name="Captum 0.9 GradientShap",
            agreement=f"{within:.0%} of example totals within 3 combined standard errors (different random draws)",
        )
    )

    # ---- occlusion 2x2 windows, stride 1
    small, small_target = x[:64], target[:64]
    ours_occlusion = occlusion(model, small, small_target, window=(1, 2, 2), strides=(1, 1, 1)).values
    theirs_occlusion = Occlusion(model).attribute(
        small, sliding_window_shapes=(1, 2, 2), strides=(1, 1, 1), target=small_target
    )
    rows.append(
        compare(
            f"occlusion 2x2 windows, stride 1, {len(small)} digits",
            ours=lambda: occlusion(model, small, small_target, window=(1, 2, 2), strides=(1, 1, 1)),
            reference=lambda: Occlusion(model).attribute(
                small, sliding_window_shapes=(1, 2, 2), strides=(1, 1, 1), target=small_target
            ),
            reference_name="Captum 0.9 Occlusion",
            agreement=agreement(ours_occlusion, theirs_occlusion),
        )
    )

    # ---- exact Shapley over 6 pixel groups vs Captum (it enumerates all 6! orders)
    groups = (torch.arange(64) // 11).view(1, 8, 8)
    few, few_target = x[:16], target[:16]
    ours_shapley = shapley(model, few, few_target, feature_groups=groups).values
    theirs_shapley = ShapleyValues(model).attribute(few, target=few_target, feature_mask=groups[None])
    rows.append(
        compare(
            f"exact Shapley, 6 pixel groups, {len(few)} digits",
            ours=lambda: shapley(model, few, few_target, feature_groups=groups),
            reference=lambda: ShapleyValues(model).attribute(few, target=few_target, feature_mask=groups[None]),
            reference_name="Captum 0.9 ShapleyValues (exact)",
            repeats=3,
            agreement=agreement(ours_shapley, theirs_shapley.to(ours_shapley.dtype)),
            notes="Captum walks all 6! orders; deepscope evaluates the 2^6 coalitions once",
        )
    )
    rows.append(shap_row())

    extra = f"Model: cnn2d trained 3 epochs on digits (seed 0); typical model: {TYPICAL_CNN}. Date {time.strftime('%Y-%m-%d')}."
    path = record("attribution", rows, command=COMMAND, extra_markdown=extra)
    sys.stdout.write(f"wrote {path}\n")


def main_ig_only() -> None:
    """``--only ig``: rerun the integrated-gradients rows and keep the other recorded rows."""
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    model, x, target, _ = setup()
    rows = _merge_with_recorded(ig_rows(model, x, target))
    extra = f"Model: cnn2d trained 3 epochs on digits (seed 0); typical model: {TYPICAL_CNN}."
    path = record("attribution", rows, command=COMMAND + " [--only ig]", extra_markdown=extra)
    sys.stdout.write(f"wrote {path}\n")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--peak":
        peak_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1:] == ["--only", "ig"]:
        main_ig_only()
    else:
        main()
