#!/usr/bin/env bash
# The README's first quick-start command: install deepscope (torch==2.13.0, the CPU wheel pip
# finds on local disk) into .venv and run the demo, which writes deepscope-demo/report.html.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
echo "==> installing deepscope"
python -m pip install --quiet torch==2.13.0 -e .
deepscope demo --out deepscope-demo "$@"
