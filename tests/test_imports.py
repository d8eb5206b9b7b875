"""Importing deepscope has no side effects on matplotlib.

``import deepscope`` must not import matplotlib (it is imported when a figure is first drawn), and
neither importing deepscope nor drawing a result's figure may change the backend a notebook user
selected or register figures with pyplot. Each check runs in a fresh interpreter, since the test
process itself may already hold matplotlib.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter and return its stdout (fails the test on a non-zero exit)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_deepscope_does_not_import_matplotlib():
    out = run_fresh(
        """
        import sys
        import deepscope
        import deepscope.report
        print(sorted(name for name in sys.modules if name.split(".")[0] == "matplotlib"))
        """
    )
    assert out == "[]"


def test_import_and_drawing_keep_the_users_backend_and_pyplot_state():
    # "svg" is a non-interactive backend that needs no display; the old report/svg.py switched it to Agg.
    out = run_fresh(
        """
        import matplotlib
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
        import deepscope
        from deepscope.models.history import TrainingHistory
        from deepscope.report import figure_to_svg
        backend_after_import = matplotlib.get_backend()
        history = TrainingHistory(
            epoch=[0, 1], train_loss=[1.0, 0.5], test_loss=[1.1, 0.7],
            train_accuracy=[0.5, 0.8], test_accuracy=[0.4, 0.7], n_train=10, n_test=10, steps=2,
        )
        svg = figure_to_svg(history.plot())
        print(backend_after_import, matplotlib.get_backend(), plt.get_fignums(), svg.startswith("<svg"))
        """
    )
    assert out == "svg svg [] True"
