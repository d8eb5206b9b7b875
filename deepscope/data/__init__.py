"""Built-in datasets, planted-ground-truth generators and user-file loaders."""

from deepscope.data._base import DatasetSplits

__all__ = ["DatasetSplits"]
