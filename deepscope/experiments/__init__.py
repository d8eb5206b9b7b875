"""The theory gallery: classic phenomena of deep-learning theory, reproduced on the sweep engine.

Each experiment (one file each) is a sweep spec plus an analysis of the stored population that
ends in a verdict decided by a stated statistical test; ``deepscope experiment NAME --out DIR``
runs it (resumably, locally or on Ray) and writes its page. See docs/gallery.md.

``EXPERIMENTS`` is the explicit list of experiments, in the gallery's order.
"""

from deepscope.experiments._base import BUDGETS, Outcome, Verdict, experiment_spec, run_experiment
from deepscope.experiments._gallery import run_gallery, write_index

EXPERIMENTS = (
    "double_descent",
    "random_labels",
    "lazy_training",
    "edge_of_stability",
    "linear_regions",
    "edge_of_chaos",
    "heavy_tails",
)

__all__ = [
    "BUDGETS",
    "EXPERIMENTS",
    "Outcome",
    "Verdict",
    "experiment_spec",
    "run_experiment",
    "run_gallery",
    "write_index",
]
