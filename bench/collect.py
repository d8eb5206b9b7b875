"""Regenerate BENCHMARKS.md from bench/results/*.json: ``python -m bench.collect``."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = """# Benchmarks

Side-by-side timings of deepscope and the reference libraries, measured in one process on the
same inputs (`bench/harness.py`). **speed-up** = reference median / deepscope median (above 1:
deepscope is faster). Each table says the command that produced it and the machine; rerun that
command to refresh the numbers, then `python -m bench.collect` to rewrite this file.
Timings are never used as pass/fail thresholds in the test suite.
"""


def _format_seconds(value: float | None) -> str:
    if value is None or value != value:  # None or NaN: not a timing row
        return "—"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _format_speedup(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:.2f}x"


def _load(row: dict) -> str:
    load = row.get("load_average")
    return f" (1-min load average {load:.1f} on the shared machine at the start)" if load is not None else ""


def _is_timing_row(row: dict) -> bool:
    return "task" in row and "deepscope_median_s" in row


def render() -> str:
    parts = [HEADER]
    for path in sorted((ROOT / "bench" / "results").glob("*.json")):
        payload = json.loads(path.read_text())
        parts.append(f"\n## {payload['topic']}\n")
        parts.append(f"Command: `{payload['command']}`  \nMachine: {payload['machine']}, {payload['date']}\n")
        rows = [row for row in payload["rows"] if _is_timing_row(row)]
        if rows:
            parts.append(
                "| task | reference | deepscope (median) | reference (median) | speed-up | agreement | notes |"
            )
            parts.append("|---|---|---|---|---|---|---|")
            for row in rows:
                parts.append(
                    f"| {row['task']} | {row['reference']} | {_format_seconds(row['deepscope_median_s'])} | "
                    f"{_format_seconds(row['reference_median_s'])} | {_format_speedup(row['speedup'])} | {row.get('agreement', '')} | "
                    f"{row.get('notes', '')}{_load(row)} |"
                )
        if payload.get("extra_markdown"):
            parts.append("\n" + payload["extra_markdown"].strip() + "\n")
    return "\n".join(parts) + "\n"


def main() -> None:
    (ROOT / "BENCHMARKS.md").write_text(render())


if __name__ == "__main__":
    main()
