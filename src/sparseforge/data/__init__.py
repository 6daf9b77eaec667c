"""Real datasets that work offline: MNIST, Fashion-MNIST, scikit-learn digits, Morse (and CIFAR-10/100 from
the python-pickle batches, when you have them).

>>> from sparseforge.data import load_dataset
>>> splits = load_dataset("morse", variant="difficult", per_class=(50, 10, 10))
>>> splits.train.x.shape, splits.n_classes
(torch.Size([3200, 64]), 64)

Every split is in memory: ``x`` float32 ``[n, *sample_shape]`` in [0, 1], ``y`` int64 ``[n]``.
"""

from .base import DATASETS, ArrayDataset, DatasetUnavailable, DataSplits, load_dataset
from . import cifar, digits, mnist, morse  # noqa: F401  (importing registers the loaders)
from .mnist import read_idx

__all__ = ["ArrayDataset", "DataSplits", "DatasetUnavailable", "DATASETS", "load_dataset", "read_idx"]
