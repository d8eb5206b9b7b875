"""The quick audit at realistic size: seconds and peak resident memory per section, cost per block.

Models (random initialisation, no training; the cost of an audit does not depend on the weights'
values, only the verdicts do):

* a CIFAR-style ResNet-18 (``deepscope.models.resnet.resnet18``, 11,173,962 parameters) on 256
  train and 256 test examples of 3x32x32 Gaussian noise with 10 random labels;
* a BERT-small-sized encoder (HF ``BertForSequenceClassification``: hidden 512, 4 layers, 8 heads,
  intermediate 2048, 2 labels; random init from a config, nothing downloaded, default ``sdpa``
  attention) on 64 train and 64 test sequences of 128 random token ids.

Each section runs in its own subprocess (``--one``), so its peak RSS (``ru_maxrss``) is its own;
each block's peak is sampled too (a thread reads ``VmRSS`` every 10 ms while the block runs: a
spike shorter than that can be missed); the parent writes ``bench/results/resnet18_audit.json``. One thread (the machine is shared); the
load average is recorded with each row.

    python -m bench.resnet18_audit              # both models, every section
    python -m bench.resnet18_audit --model resnet18 --sections curvature,expressivity
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import torch

SECTIONS = ("model_card", "training", "generalization", "attribution", "expressivity", "curvature")
COMMAND = "python -m bench.resnet18_audit"


def _resnet18() -> tuple[Any, Any, dict[str, Any]]:
    from deepscope.models.resnet import resnet18

    torch.manual_seed(0)
    model = resnet18()
    train = (torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,)))
    test = (torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,)))
    return model, (train, test), {}


def _bert_small() -> tuple[Any, Any, dict[str, Any]]:
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        intermediate_size=2048,
        max_position_embeddings=512,
        num_labels=2,
    )
    model = transformers.BertForSequenceClassification(config).eval()
    generator = torch.Generator().manual_seed(0)

    def batch(n: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        ids = torch.randint(1000, 30000, (n, 128), generator=generator)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.randint(
            0, 2, (n,), generator=generator
        )

    return model, (batch(64), batch(64)), {"output_fn": lambda out: out.logits}


MODELS = {"resnet18": _resnet18, "bert_small": _bert_small}


def _resident_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _watch_blocks(peaks: dict[str, float]) -> threading.Event:
    """Record each report block's peak resident MB into ``peaks`` (by block label); set the event to stop.

    Wraps ``run_block`` where the section modules imported it; a daemon thread samples ``VmRSS``.
    """
    import deepscope.report.sections as sections

    original, current, done = sections.run_block, [""], threading.Event()

    def run_block(label: str, build: Any) -> Any:
        current[0] = label
        try:
            return original(label, build)
        finally:
            current[0] = ""

    for name, module in list(sys.modules.items()):
        if name.startswith("deepscope.") and getattr(module, "run_block", None) is original:
            module.run_block = run_block

    def sample() -> None:
        while not done.is_set():
            label, resident = current[0], _resident_mb()
            if label:
                peaks[label] = max(peaks.get(label, 0.0), resident)
            done.wait(0.01)

    threading.Thread(target=sample, daemon=True).start()
    return done


def run_one(model_name: str, section: str) -> dict[str, Any]:
    """Audit ``model_name`` with one section in this process; seconds, peak RSS, status and block costs."""
    from deepscope.report.audit import audit

    torch.set_num_threads(1)
    model, data, options = MODELS[model_name]()
    peaks: dict[str, float] = {}
    done = _watch_blocks(peaks)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        paths = audit(model, data, out=out, sections=[section], overwrite=True, **options)
        payload = json.loads(paths.json.read_text())
    seconds = time.perf_counter() - started
    done.set()
    entry = payload["sections"][section]
    return {
        "model": model_name,
        "section": section,
        "status": entry["status"],
        "error": entry.get("error", ""),
        "block_errors": entry.get("results", {}).get("block_errors", []),
        "seconds": seconds,
        "section_seconds": entry.get("seconds"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "costs": [{**cost, "peak_rss_mb": peaks.get(cost.get("block", ""))} for cost in entry.get("costs", [])],
        "parameters": payload.get("model", {}).get("parameters"),
    }


def _row(result: dict[str, Any], load: float) -> dict[str, Any]:
    blocks = []
    for cost in result["costs"]:
        if cost.get("not_applicable"):
            blocks.append(f"{cost['block']}: n/a")
        elif cost.get("declined"):
            blocks.append(f"{cost['block']}: declined (est. {cost.get('estimated_seconds', 0):.0f} s)")
        else:
            estimate, peak = cost.get("estimated_seconds"), cost.get("peak_rss_mb")
            text = f"{cost['block']}: {cost.get('seconds', 0):.1f} s"
            text += f" (est. {estimate:.1f} s)" if estimate is not None else ""
            blocks.append(text + (f", peak {peak:.0f} MB" if peak is not None else ""))
    status = result["status"] if not result["block_errors"] else f"{len(result['block_errors'])} block error(s)"
    return {
        "task": f"quick audit, {result['model']}: {result['section']} section",
        "reference": "—",
        "deepscope_median_s": result["seconds"],
        "reference_median_s": None,
        "speedup": None,
        "agreement": status,
        "notes": f"peak RSS {result['peak_rss_mb']:.0f} MB; " + "; ".join(blocks),
        "peak_rss_mb": result["peak_rss_mb"],
        "status": result["status"],
        "error": result["error"],
        "block_errors": result["block_errors"],
        "costs": result["costs"],
        "threads": 1,
        "load_average": load,
    }


def _merged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The new section rows plus the previous file's rows for sections not rerun now; fresh totals per model."""
    from bench.harness import RESULTS

    path = RESULTS / "resnet18_audit.json"
    previous = json.loads(path.read_text()).get("rows", []) if path.exists() else []
    fresh = {row["task"] for row in rows}
    kept = [row for row in previous if row["task"] not in fresh and "all sections" not in row["task"]]
    merged = kept + rows
    for model_name in sorted({row["task"].split(":")[0].removeprefix("quick audit, ") for row in merged}):
        own = [row for row in merged if row["task"].startswith(f"quick audit, {model_name}:")]
        merged.append(
            {
                "task": f"quick audit, {model_name}: all sections (sum of the subprocesses)",
                "reference": "—",
                "deepscope_median_s": sum(row["deepscope_median_s"] for row in own),
                "reference_median_s": None,
                "speedup": None,
                "agreement": "",
                "notes": f"largest section peak RSS {max(row.get('peak_rss_mb', 0.0) for row in own):.0f} MB",
                "threads": 1,
                "load_average": os.getloadavg()[0],
            }
        )
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "SECTION"), help="run one section here (child)")
    parser.add_argument("--model", default="resnet18,bert_small")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--timeout", type=float, default=900.0)
    arguments = parser.parse_args()
    if arguments.one:
        print(json.dumps(run_one(*arguments.one)))
        return
    from bench.harness import record

    rows = []
    for model_name in arguments.model.split(","):
        for section in arguments.sections.split(","):
            load = os.getloadavg()[0]
            command = [sys.executable, "-m", "bench.resnet18_audit", "--one", model_name, section]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=arguments.timeout, check=False)
                result = json.loads(done.stdout.strip().splitlines()[-1])
            except subprocess.TimeoutExpired:
                result = {
                    "model": model_name, "section": section, "status": "timeout", "error": f"> {arguments.timeout} s",
                    "block_errors": [], "seconds": arguments.timeout, "peak_rss_mb": float("nan"), "costs": [],
                }  # fmt: skip
            except (IndexError, json.JSONDecodeError):
                tail = (done.stderr or done.stdout)[-400:]
                result = {
                    "model": model_name, "section": section, "status": "crashed", "error": tail,
                    "block_errors": [], "seconds": float("nan"), "peak_rss_mb": float("nan"), "costs": [],
                }  # fmt: skip
            rows.append(_row(result, load))
            print(f"{model_name:10s} {section:15s} {result['seconds']:8.1f} s  {result['peak_rss_mb']:7.0f} MB  "
                  f"{result['status']} {result['error'][:200]}", flush=True)  # fmt: skip
    record(
        "resnet18_audit",
        _merged(rows),
        command=COMMAND,
        extra_markdown=(
            "Random-init ResNet-18 (11.2M parameters, 256 + 256 examples of 3x32x32) and BERT-small-sized encoder "
            "(hidden 512, 4 layers, 8 heads, 64 + 64 sequences of 128 tokens); each section in its own subprocess, "
            "one thread; every block's time next to its estimate, or why it declined / does not apply."
        ),
    )


if __name__ == "__main__":
    main()
