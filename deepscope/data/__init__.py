"""Built-in datasets, planted-ground-truth generators and user-file loaders."""

from deepscope.data._base import DatasetSplits
from deepscope.data.files import load_file
from deepscope.data.loader import available, load
from deepscope.data.mnist1d_set import load_mnist1d
from deepscope.data.planted import planted_image, planted_motifs, planted_tabular
from deepscope.data.sklearn_sets import load_breast_cancer, load_digits, load_wine

__all__ = [
    "DatasetSplits",
    "available",
    "load",
    "load_breast_cancer",
    "load_digits",
    "load_file",
    "load_mnist1d",
    "load_wine",
    "planted_image",
    "planted_motifs",
    "planted_tabular",
]
