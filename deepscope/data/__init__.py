"""Built-in datasets, planted-ground-truth generators and user-file loaders: the implementation package.

The public name is :mod:`deepscope.datasets` (``from deepscope import datasets``), which re-exports
exactly this package's ``__all__``; both name the same objects, so code that imports
``deepscope.data`` keeps working, but documentation and examples use ``deepscope.datasets``.
"""

from deepscope.data._base import DatasetSplits
from deepscope.data.files import load_file
from deepscope.data.loader import available, load
from deepscope.data.mnist1d_set import load_mnist1d
from deepscope.data.planted import planted_image, planted_motifs, planted_tabular
from deepscope.data.shuffle import dinucleotide_shuffle
from deepscope.data.sklearn_sets import load_breast_cancer, load_digits, load_wine

__all__ = [
    "DatasetSplits",
    "available",
    "dinucleotide_shuffle",
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
