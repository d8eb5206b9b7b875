"""Subprocess workers for bench/bench_generalization.py's measures rows (cost, memory, before/after).

``python -m bench._measures_cost typical`` prints, as one JSON line, the whole measures table on the
typical digits CNN (bench/typical.py, 1 thread; ``typical default`` keeps torch's default thread
count): wall and CPU seconds, per-family seconds and every row's value and note. Run with ``PYTHONPATH`` pointing at an older checkout it measures that
version (the "before" arm). ``python -m bench._measures_cost resnet18 FAMILY[,FAMILY...]`` does
the same for an untrained CIFAR ResNet-18 (11.2M parameters) on 256 random 3×32×32 inputs with
the library defaults, and adds this process's peak resident memory (``ru_maxrss``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import torch


def _table(problem, families=None) -> dict:
    from deepscope.generalization import measures

    kwargs = {} if families is None else {"families": families}
    wall, cpu = time.perf_counter(), time.process_time()
    table = measures(problem, **kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "family_seconds": table.family_seconds,
        "forward_passes": table.forward_passes,
        "declined": getattr(table, "declined", {}),
        "rows": {row["name"]: [row["value"], row["note"], row["seconds"]] for row in table.rows()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load": os.getloadavg()[0],
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    if sys.argv[1:3] != ["typical", "default"]:
        torch.set_num_threads(1)
    from deepscope import Problem

    if sys.argv[1] == "typical":
        from bench.typical import typical_cnn, typical_run

        model, digits = typical_cnn()
        result = _table(Problem.from_dataset(model, digits, init_state=typical_run().init_state))
    else:
        from deepscope.models.resnet import resnet18

        torch.manual_seed(0)
        init = {k: v.clone() for k, v in resnet18().state_dict().items()}
        torch.manual_seed(1)
        model = resnet18().eval()
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(256, 3, 32, 32, generator=generator)
        y = torch.randint(0, 10, (256,), generator=generator)
        result = _table(Problem(model, (x, y), init_state=init), tuple(sys.argv[2].split(",")))
    print(json.dumps(result, default=float))


if __name__ == "__main__":
    main()
