"""How well the report prices a block before running it: the Classic bounds block on a ResNet-18.

The generalization section's Classic bounds block is priced in example passes of the measured probe
(:func:`deepscope.report.cost.pass_cost`): the forward passes of the layer discovery, the margins and
the path norm, plus one example pass per sweep of Lanczos steps over the convolutions (up to 100,
the spectral norms' cap). The old estimate counted the margins' forward pass only (BENCHMARKS.md:
"Classic bounds: 6.1 s (est. 2.7 s)"). Each repeat measures the probe afresh, then runs the block;
the block runs under the "full" budget's time (a loaded machine would make it decline under the quick
budget's 20 s) with the quick budget's 512-example cap; the row gives the median measured wall time next to the median estimate (the ratio estimate /
measured: 1 is exact) and, in the notes, the old estimate, the counted work, and the same comparison
in CPU seconds of this process (the probe timed with ``time.process_time``: on a loaded machine the
wall-clock probe and block meet different loads, their CPU times far less so).

Model: a CIFAR-style ResNet-18 (random init, 11.2M parameters) on 256 training examples of 3x32x32
Gaussian noise with 10 random labels, as bench/resnet18_audit.py; one torch thread.

    python -m bench.report_estimates
"""

from __future__ import annotations

import os
import statistics
import time
import types

import torch

from bench.harness import record

COMMAND = "python -m bench.report_estimates"


def classic_bounds_row(repeats: int = 3) -> dict:
    from deepscope import Problem
    from deepscope.generalization import report_section as generalization
    from deepscope.models.resnet import resnet18
    from deepscope.report import cost as cost_module
    from deepscope.report.cost import estimate as priced
    from deepscope.report.cost import pass_cost
    from deepscope.report.sections import AuditContext

    torch.manual_seed(0)
    model = resnet18().eval()
    problem = Problem(model, (torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,))))
    budget = generalization._BUDGETS["quick"]
    load = os.getloadavg()[0]
    measured, cpu, estimated, cpu_estimated, old = [], [], [], [], []
    cost: dict = {}
    for _ in range(repeats):
        on_cpu = AuditContext(problem=problem, budget="full")
        cost_module.time = types.SimpleNamespace(perf_counter=time.process_time)  # the probe in CPU seconds
        try:
            pass_cost(on_cpu)
        finally:
            cost_module.time = time
        context = AuditContext(problem=problem, budget="full")
        unit = pass_cost(context)
        wall, process = time.perf_counter(), time.process_time()
        part = generalization._classic_part(problem, budget, context)
        measured.append(time.perf_counter() - wall)
        cpu.append(time.process_time() - process)
        cost = part.cost
        estimated.append(cost["estimated_seconds"])
        passes, calls = generalization._classic_passes(generalization._classic_counts(model, 256), on_cpu)
        cpu_estimated.append(priced(on_cpu, "Classic bounds", passes, calls=calls).seconds)
        old.append(min(budget["bound_samples"], 256) * unit.forward_seconds)  # margins' forward pass only
    seconds, estimate = statistics.median(measured), statistics.median(estimated)
    return {
        "task": "report estimate: Classic bounds block, ResNet-18, 256 examples",
        "reference": "estimate before running",
        "deepscope_median_s": seconds,
        "reference_median_s": estimate,
        "speedup": estimate / seconds,
        "repeats": repeats,
        "agreement": f"estimate / measured {estimate / seconds:.2f} (old estimate {statistics.median(old):.2f} s)",
        "notes": (
            f"CPU seconds: measured {statistics.median(cpu):.2f}, estimated {statistics.median(cpu_estimated):.2f}; "
            f"{cost['forward_examples']} forward "
            f"examples + {cost['conv_layers']} convolutions x {cost['lanczos_steps']} Lanczos steps "
            f"= {cost['estimated_passes']:.0f} example passes; 1 thread"
        ),
        "load_average": load,
        "threads": 1,
    }


def main() -> None:
    torch.set_num_threads(1)
    record("report_estimates", [classic_bounds_row()], command=COMMAND)


if __name__ == "__main__":
    main()
