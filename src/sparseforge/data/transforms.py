"""Input transforms on whole :class:`DataSplits`: fitted on the training split only, applied to all three.

* :func:`pca_reduce` projects every sample onto the first ``k`` principal components of the training
  inputs. The seeds (000, "dataset redundancy") use it to make MNIST *less redundant*: fewer input
  features, each carrying more of the information, so that sparsifying the first junction removes
  more of what the network needs.
* :func:`top_variance_features` keeps the ``k`` input features (pixels) of highest training variance, in
  their original order. With ``k`` at most the number of non-constant features it loses nothing
  (constant features carry no information), which is how the studies give MNIST layer sizes that
  divide nicely, e.g. 780 = 784 minus 4 always-black corner pixels (RadiX-Net needs every layer size
  to be a multiple of ``N'``).

Neither looks at the validation or test split when fitting, so no information leaks from them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .base import ArrayDataset, DataSplits

__all__ = ["PCA", "fit_pca", "pca_reduce", "top_variance_features"]


@dataclass(frozen=True, eq=False)
class PCA:
    """A fitted principal component analysis (all arrays float64).

    Attributes:
        mean: ``[d]`` training mean of the flattened inputs.
        components: ``[k, d]`` orthonormal rows, the principal directions by decreasing variance; the
            sign of each row is fixed so that its entry of largest magnitude is positive (scikit-learn's
            convention, so results are deterministic).
        explained_variance: ``[k]`` variance of the training projections onto each component
            (``sigma_i^2 / (n - 1)``, as scikit-learn).
        explained_variance_ratio: ``[k]`` the same as a fraction of the total training variance.
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray

    def transform(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """``[n, ...]`` (flattened to ``[n, d]``) -> float64 ``[n, k]`` coordinates ``(x - mean) @ components.T``."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return (x - self.mean) @ self.components.T


def fit_pca(x: np.ndarray | torch.Tensor, n_components: int, *,
            method: Literal["auto", "svd", "gram"] = "auto") -> PCA:
    """Principal components of ``x`` ``[n, ...]`` (flattened to ``[n, d]``), in float64.

    ``method="svd"``: thin SVD of the centred data, ``X_c = U S V^T``; components = first rows of ``V^T``.
    ``method="gram"``: eigendecomposition of ``X_c^T X_c`` (``[d, d]``); the same subspace, much faster
    when ``n >> d`` (one GEMM), with the accuracy of float64 on the squared singular values, which is
    ample for the leading components. ``"auto"`` picks ``"gram"`` when ``n > 4 d``.

    Raises ValueError when ``n_components`` is not in ``[1, min(n, d)]``.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n, d = x.shape
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) \
            or not 1 <= n_components <= min(n, d):
        raise ValueError(f"n_components={n_components!r} must be an integer in [1, {min(n, d)}] "
                         f"(min of {n} training samples and {d} features)")
    if method not in ("auto", "svd", "gram"):
        raise ValueError(f"method={method!r}: choose 'auto', 'svd' or 'gram'")
    mean = x.mean(axis=0)
    xc = x - mean
    total = float((xc * xc).sum())
    if method == "gram" or (method == "auto" and n > 4 * d):
        evals, evecs = np.linalg.eigh(xc.T @ xc)  # ascending
        order = np.argsort(evals)[::-1][:n_components]
        sq = np.clip(evals[order], 0.0, None)
        comps = evecs[:, order].T
    else:
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        sq = s[:n_components] ** 2
        comps = vt[:n_components]
    big = np.argmax(np.abs(comps), axis=1)
    comps = comps * np.sign(comps[np.arange(len(comps)), big])[:, None]
    denom = max(n - 1, 1)
    return PCA(mean=mean, components=np.ascontiguousarray(comps), explained_variance=sq / denom,
               explained_variance_ratio=sq / total if total > 0 else np.zeros_like(sq))


def _replace_x(splits: DataSplits, fn, name: str, n_features: int) -> DataSplits:
    parts = {}
    for split in ("train", "val", "test"):
        ds: ArrayDataset = getattr(splits, split)
        x = fn(ds.x.reshape(len(ds), -1).numpy()) if len(ds) else np.zeros((0, n_features))
        parts[split] = ArrayDataset(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), ds.y)
    return dataclasses.replace(splits, name=name, sample_shape=(n_features,), **parts)


def pca_reduce(splits: DataSplits, n_components: int, *, whiten: bool = False,
               method: Literal["auto", "svd", "gram"] = "auto") -> DataSplits:
    """Every split projected onto the first ``n_components`` principal components of the training split.

    Args:
        splits: any dataset; samples are flattened to ``[n, N_0]``.
        n_components: ``k``, the new number of input features, in ``[1, min(n_train, N_0)]``.
        whiten: divide each coordinate by its training standard deviation (unit variance features).
        method: how the components are computed (see :func:`fit_pca`).

    Returns:
        :class:`DataSplits` named ``"<name>-pca<k>"`` with ``sample_shape == (k,)``; ``x`` float32
        ``[n, k]``, the centred projections ``(x - mean_train) @ components.T``. Unlike the raw datasets
        these are not in [0, 1]: the coordinates are signed, in the units of the input (for MNIST,
        pixel/255), with decreasing variance. Labels are unchanged. Fitted on ``splits.train`` only.
    """
    pca = fit_pca(splits.train.x, n_components, method=method)
    scale = np.sqrt(np.maximum(pca.explained_variance, 1e-12)) if whiten else None

    def fn(x: np.ndarray) -> np.ndarray:
        z = pca.transform(x)
        return z / scale if scale is not None else z

    return _replace_x(splits, fn, f"{splits.name}-pca{n_components}", n_components)


def top_variance_features(splits: DataSplits, n_features: int) -> DataSplits:
    """Keep the ``n_features`` inputs of largest training variance (ties: lower index first), in their
    original order; values unchanged (still in [0, 1]).

    Returns :class:`DataSplits` named ``"<name>-top<k>"`` with ``sample_shape == (k,)``.
    Raises ValueError when ``n_features`` is not in ``[1, N_0]``.
    """
    d = splits.n_features
    if isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)) or not 1 <= n_features <= d:
        raise ValueError(f"n_features={n_features!r} must be an integer in [1, {d}]")
    var = splits.train.x.reshape(len(splits.train), -1).double().var(dim=0, unbiased=False).numpy()
    keep = np.sort(np.lexsort((np.arange(d), -var))[:n_features])
    return _replace_x(splits, lambda x: x[:, keep], f"{splits.name}-top{n_features}", int(n_features))
