"""Curvature benchmark: deepscope vs PyHessian 0.1 on the same model and batch, in one process.

Model: the built-in ``cnn2d`` trained for 5 epochs on the 8x8 digits (seed 0); batch: the first
512 training samples (one batch: both libraries keep the gradient graph across products).
Accuracy is measured against a long reference Lanczos run (residual tolerance 1e-8, up to 400
products). Hessian-vector products are counted for both libraries (PyHessian's
``hessian_vector_product`` is wrapped with a counter).

Run: ``python -m bench.bench_curvature`` (single-threaded, as the harness records).
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

from bench.harness import compare, record
from deepscope import Problem
from deepscope.curvature import HessianOperator, hessian_eigenvalues, hessian_trace
from deepscope.datasets import load
from deepscope.models import build, train

COMMAND = "python -m bench.bench_curvature"


def setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    dataset = load("digits", seed=0)
    torch.manual_seed(0)
    run = train(build("cnn2d", dataset.input_shape, dataset.num_classes), dataset, epochs=5, lr=1e-3, seed=0)
    x = torch.as_tensor(dataset.x_train[:512])
    y = torch.as_tensor(dataset.y_train[:512])
    return run.model.eval(), x, y


class PyHessianCounter:
    """PyHessian on a deep copy (it calls model.eval() on what it gets), counting its products."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        import importlib

        module = importlib.import_module("pyhessian.hessian")  # the module (the package re-exports the class)

        self.module, self.model, self.x, self.y, self.count = module, model, x, y, 0
        original = module.hessian_vector_product

        def counted(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        module.hessian_vector_product = counted

    def new(self):
        return self.module.hessian(copy.deepcopy(self.model), nn.CrossEntropyLoss(), data=(self.x, self.y), cuda=False)


def _peak_in_subprocess(which: str, path: str) -> float:
    output = subprocess.run(
        [sys.executable, "-m", "bench.bench_curvature", "--peak", which, path],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout
    return float(output.strip().splitlines()[-1])


def peak_main(which: str, path: str) -> None:
    """Print the growth of the peak resident set (MiB) while computing the top-10 eigenvalues."""
    torch.set_num_threads(1)
    saved = torch.load(path, weights_only=False)  # our own temporary file
    model, x, y = saved["model"], saved["x"], saved["y"]
    problem = Problem(model, (x, y), batch_size=512)
    import importlib

    importlib.import_module("pyhessian.hessian")  # imports outside the measurement; no Hessian work yet
    before = _reset_peak_kib()
    if which == "pyhessian":
        PyHessianCounter(model, x, y).new().eigenvalues(top_n=10, maxIter=100, tol=1e-3)
    else:
        hessian_eigenvalues(problem, k=10, tol=1e-3)
    after = _status_kib("VmHWM")
    sys.stdout.write(f"{(after - before) / 1024:.2f}\n")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_kib() -> int:
    """Reset the peak resident set size (Linux: write 5 to clear_refs) and return the current RSS in KiB."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return _status_kib("VmRSS")


def relative_errors(values, reference) -> float:
    values, reference = np.asarray(values, dtype=float), np.asarray(reference[: len(values)], dtype=float)
    return float(np.max(np.abs(values - reference) / np.abs(reference)))


def main() -> None:
    torch.set_num_threads(1)
    model, x, y = setup()
    problem = Problem(model, (x, y), batch_size=512)
    pyh = PyHessianCounter(model, x, y)
    rows = []

    # ---- one Hessian-vector product
    operator = HessianOperator.from_problem(problem)
    forward_over_reverse = HessianOperator.from_problem(problem, method="forward_over_reverse")
    vector = torch.randn(operator.n_params)
    reference_hessian = pyh.new()
    from pyhessian.utils import hessian_vector_product as raw_hvp

    v_list = [
        t.reshape(p.shape)
        for t, p in zip(torch.split(vector, [p.numel() for p in reference_hessian.params]), reference_hessian.params)
    ]
    agreement = float(
        (operator.matvec(vector) - forward_over_reverse.matvec(vector)).norm() / operator.matvec(vector).norm()
    )
    rows.append(
        compare(
            f"one HVP, digits cnn2d ({operator.n_params} params, 512 samples), double backward with kept graph",
            ours=lambda: operator.matvec(vector),
            reference=lambda: raw_hvp(reference_hessian.gradsH, reference_hessian.params, v_list),
            reference_name="PyHessian 0.1",
            agreement=f"forward-over-reverse agrees to {agreement:.1e} rel.",
        )
    )
    rows.append(
        compare(
            "one HVP, forward-over-reverse (torch.func.jvp of grad) vs double backward",
            ours=lambda: forward_over_reverse.matvec(vector),
            reference=lambda: operator.matvec(vector),
            reference_name="deepscope double backward",
            notes="speedup < 1 means forward-over-reverse is slower here; 'auto' picks double backward",
        )
    )

    # ---- reference spectrum
    reference = hessian_eigenvalues(problem, k=12, tol=1e-8, max_iter=400).eigenvalues

    # ---- top eigenvalue and top-10
    for k in (1, 10):
        ours = hessian_eigenvalues(problem, k=k, tol=1e-3)
        pyh.count = 0
        top, _ = pyh.new().eigenvalues(top_n=k, maxIter=100, tol=1e-3)
        theirs_hvps = pyh.count
        rows.append(
            compare(
                f"top-{k} Hessian eigenvalue{'s' if k > 1 else ''} (tol 1e-3), digits cnn2d, 512 samples",
                ours=lambda k=k: hessian_eigenvalues(problem, k=k, tol=1e-3),
                reference=lambda k=k: pyh.new().eigenvalues(top_n=k, maxIter=100, tol=1e-3),
                reference_name="PyHessian 0.1 (power iteration + deflation)",
                repeats=3,
                agreement=(
                    f"max rel. error vs long Lanczos: deepscope {relative_errors(ours.eigenvalues, reference):.1e} "
                    f"({ours.n_hvps} HVPs), PyHessian {relative_errors(sorted(top, reverse=True), reference):.1e} "
                    f"({theirs_hvps} HVPs); top-1 rel. diff between them "
                    f"{abs(ours.eigenvalues[0] - max(top)) / abs(max(top)):.1e}"
                ),
            )
        )

    # ---- trace: equal accuracy (1% relative standard error)
    exact_like = hessian_trace(problem, rel_tol=0.002, max_hvps=4000, seed=123)
    plus = hessian_trace(problem, rel_tol=0.01, method="hutch++", max_hvps=4000)
    plain = hessian_trace(problem, rel_tol=0.01, method="hutchinson", max_hvps=4000)
    pyh.count = 0
    samples = pyh.new().trace(maxIter=100, tol=1e-3)
    pyhessian_hvps = pyh.count
    pyhessian_trace = float(np.mean(samples))
    pyhessian_se = float(np.std(samples, ddof=1) / math.sqrt(len(samples)))
    rows.append(
        compare(
            "Hessian trace to 1% relative standard error: Hutch++ vs PyHessian's Hutchinson run to the same SE",
            ours=lambda: hessian_trace(problem, rel_tol=0.01, method="hutch++", max_hvps=4000),
            # tol=-1 never triggers PyHessian's running-mean stop: it draws exactly maxIter samples
            reference=lambda: pyh.new().trace(maxIter=plain.n_hvps, tol=-1.0),
            reference_name="PyHessian 0.1 (Hutchinson, as many samples as 1% SE needs)",
            repeats=1,
            warmup=0,
            agreement=(
                f"Hutch++ {plus.trace:.4g} ± {plus.standard_error:.2g} in {plus.n_hvps} HVPs; Hutchinson needs "
                f"{plain.n_hvps} HVPs for the same 1% SE ({plain.n_hvps / plus.n_hvps:.1f}× more); "
                f"reference {exact_like.trace:.4g} ± {exact_like.standard_error:.2g}"
            ),
            notes=(
                f"PyHessian's own stop (running mean moves < 1e-3) ends after {pyhessian_hvps} HVPs at "
                f"{pyhessian_trace:.4g} ± {pyhessian_se:.2g} ({100 * pyhessian_se / abs(pyhessian_trace):.1f}% SE)"
            ),
        )
    )

    # ---- peak memory (fresh subprocesses, top-10 eigenvalues)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "setup.pt")
        torch.save({"model": model, "x": x, "y": y}, path)
        peaks = {name: _peak_in_subprocess(name, path) for name in ("deepscope", "pyhessian")}
    rows.append(
        {
            "task": "peak resident memory above the loaded model and data, top-10 eigenvalues (fresh process each)",
            "reference": "PyHessian 0.1",
            "deepscope_median_s": float("nan"),
            "reference_median_s": float("nan"),
            "speedup": float("nan"),
            "repeats": 1,
            "agreement": f"deepscope +{peaks['deepscope']:.1f} MiB, PyHessian +{peaks['pyhessian']:.1f} MiB",
            "notes": "growth of the peak resident set (VmHWM reset before the call); not a timing row",
        }
    )
    extra = (
        f"Reference spectrum (long Lanczos, {problem.train.x.shape[0]} samples): top eigenvalues "
        + ", ".join(f"{v:.4g}" for v in reference[:10])
        + f". Date {time.strftime('%Y-%m-%d')}."
    )
    rows.insert(3, typical_top1_row())
    record("curvature", rows, command=COMMAND, extra_markdown=extra)
    for row in rows:
        print(  # noqa: T201 - a benchmark script reports on stdout
            f"{row['task']}: ours {row['deepscope_median_s']:.3f}s, ref {row['reference_median_s']:.3f}s, "
            f"speedup {row['speedup']:.2f}; {row['agreement']}"
        )


def typical_top1_row() -> dict:
    """Top-1 Hessian eigenvalue on the typical digits CNN (bench/typical.py, 151k params), 512 samples."""
    from bench.harness import compare_alternating
    from bench.typical import TYPICAL_CNN, typical_cnn

    model, digits = typical_cnn()
    x, y = torch.as_tensor(digits.x_train[:512]), torch.as_tensor(digits.y_train[:512])
    problem = Problem(model, (x, y), batch_size=512)
    pyh = PyHessianCounter(model, x, y)
    reference = hessian_eigenvalues(problem, k=1, tol=1e-8, max_iter=200).eigenvalues[0]
    ours = hessian_eigenvalues(problem, k=1, tol=1e-3)
    pyh.count = 0
    top, _ = pyh.new().eigenvalues(top_n=1, maxIter=100, tol=1e-3)
    theirs_hvps = pyh.count
    return compare_alternating(
        f"top-1 Hessian eigenvalue (tol 1e-3), TYPICAL MODEL ({TYPICAL_CNN}), 512 samples",
        ours=lambda: hessian_eigenvalues(problem, k=1, tol=1e-3),
        reference=lambda: pyh.new().eigenvalues(top_n=1, maxIter=100, tol=1e-3),
        reference_name="PyHessian 0.1",
        repeats=5,
        agreement=(
            f"rel. error vs long Lanczos: deepscope {abs(ours.eigenvalues[0] - reference) / reference:.1e} "
            f"({ours.n_hvps} HVPs), PyHessian {abs(top[0] - reference) / reference:.1e} ({theirs_hvps} HVPs)"
        ),
        notes="deepscope starts Lanczos from the gradient plus a random vector (the gradient is free with one batch)",
    )


def main_typical_only() -> None:
    """``--only typical``: rerun the typical-model row and keep the other recorded rows."""
    import json

    from bench.harness import RESULTS

    torch.set_num_threads(1)
    row = typical_top1_row()
    path = RESULTS / "curvature.json"
    payload = json.loads(path.read_text())
    rows = [r for r in payload["rows"] if "TYPICAL MODEL" not in r["task"]]
    rows.insert(3, row)
    record("curvature", rows, command=COMMAND + " [--only typical]", extra_markdown=payload.get("extra_markdown", ""))
    print(row)  # noqa: T201 - a benchmark script reports on stdout


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--peak":
        peak_main(sys.argv[2], sys.argv[3])
    elif sys.argv[1:] == ["--only", "typical"]:
        main_typical_only()
    else:
        main()
