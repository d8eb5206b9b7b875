#!/usr/bin/env bash
# The whole test suite, as the README's second quick-start command and .ci/run call it.
# Idempotent: creates .venv if missing, installs deepscope with its test extras (torch==2.13.0:
# the CPU wheel pip finds on local disk), installs headless Chromium if missing, then runs the
# fast tests on 2 workers and the slow ones in a separate, time-bounded step.
# Extra arguments are passed to both pytest runs (e.g. `bash scripts/test.sh tests/report`).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

# Reinstall only when pyproject.toml changed since the last successful install.
stamp=".venv/.deepscope-test-install"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! python -c "import deepscope, pytest, selenium" 2>/dev/null; then
    echo "==> installing deepscope[test]"
    python -m pip install --quiet torch==2.13.0 -e ".[test]"
    echo "$want" > "$stamp"
fi

if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "==> installing chromium and chromium-driver"
    SUDO=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

export DEEPSCOPE_REQUIRE_BROWSER=1
echo "==> fast tests"
python -m pytest -n 2 -m "not slow" "$@"

echo "==> slow tests on 2 workers (bounded to 25 minutes)"
status=0
timeout 1500 python -m pytest -n 2 -m slow "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "(no slow tests collected)"
    status=0
fi
exit "$status"
