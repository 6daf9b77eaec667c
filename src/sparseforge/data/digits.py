"""scikit-learn's bundled 8x8 handwritten digits (UCI optdigits test set, 1797 samples).

Pixels are counts 0..16; returned as float32 [n, 1, 8, 8] in [0, 1] (value / 16), 10 classes.
"""

from __future__ import annotations

import os

from ..errors import ConfigError
from .base import DataSplits, _rng, register, split_arrays

__all__ = ["load_digits"]

DEFAULT_TEST_SIZE = 0.2
DEFAULT_VAL_SIZE = 0.2


@register("digits")
def load_digits(*, root: str | os.PathLike | None = None, val_size: int | float | None = None,
                seed: int = 0, limit: int | None = None, test_size: float = DEFAULT_TEST_SIZE) -> DataSplits:
    """Digits split by ``seed``: ``test_size`` of all samples become test, then ``val_size``
    (default 20%) of the rest become val. With the defaults: 1150 / 288 / 359 samples.

    ``root`` is ignored: the data ships with scikit-learn.
    """
    from ..errors import require

    require("sklearn", "the digits dataset")  # deferred: sklearn import is slow
    from sklearn.datasets import load_digits as sk_load_digits

    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"test_size must be in (0, 1), got {test_size!r}")
    x, y = sk_load_digits(return_X_y=True)
    perm = _rng(seed, 2).permutation(len(y))
    n_test = int(round(test_size * len(y)))
    test, train = perm[:n_test], perm[n_test:]
    return split_arrays(
        "digits", x[train], y[train], x[test], y[test], n_classes=10, sample_shape=(1, 8, 8),
        max_value=16.0, val_size=DEFAULT_VAL_SIZE if val_size is None else val_size, seed=seed, limit=limit,
    )

