"""Per-layer structured-sparsity statistics (the columns of the seed's tables).

For a conv weight lowered to the GEMM matrix ``[N, C*kh*kw]``: a *row* is a filter, a *column* a
``(c, kh, kw)`` shape fibre. Reported per layer:

* ``filters`` / ``filters_nz``: output channels (rows) and how many are not all zero;
* ``channels`` / ``channels_nz``: input channels and how many are used (not all zero);
* ``columns`` / ``columns_nz``: columns of the lowered matrix and the non-zero ones (the seed's "filter size"
  in Table 2 is ``columns_nz``: 25 for conv1 and 500 for conv2 of the baseline LeNet);
* ``row_sparsity``, ``col_sparsity``, ``elem_sparsity``: fractions of all-zero rows, all-zero columns and
  zero elements.

For a ``Linear`` ``[out, in]``: rows = output neurons (``filters``), columns = input features (``channels``
and ``columns``). A :class:`~sparseforge.ssl.thinning.LoweredConv2d` is reported on its full lowered matrix
(dropped columns count as zero columns).
"""

from __future__ import annotations

import torch
from torch import nn

from .thinning import LoweredConv2d

__all__ = ["sparsity_report", "lowered_matrix"]


def lowered_matrix(m: nn.Module) -> torch.Tensor:
    """The weight as the GEMM matrix ``[rows, columns]`` (conv: ``[N, C*kh*kw]``; linear: ``[out, in]``)."""
    if isinstance(m, LoweredConv2d):
        w = m.dense_weight()
    else:
        w = m.weight.detach()
    return w.reshape(w.shape[0], -1)


@torch.no_grad()
def sparsity_report(model: nn.Module, tol: float = 0.0) -> list[dict]:
    """One row per ``Conv2d``/``LoweredConv2d``/``Linear`` of ``model`` (in ``named_modules`` order); a
    value counts as zero when ``|w| <= tol``. See the module docstring for the columns."""
    rows = []
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear, LoweredConv2d)):
            continue
        w = m.dense_weight() if isinstance(m, LoweredConv2d) else m.weight.detach()
        zero = w.abs() <= tol
        mat = zero.reshape(w.shape[0], -1)
        if w.ndim == 4:
            ch_zero = zero.all(0).reshape(w.shape[1], -1).all(1)
        else:
            ch_zero = mat.all(0)
        col_zero = mat.all(0)
        row_zero = mat.all(1)
        rows.append(dict(
            layer=name,
            type=type(m).__name__,
            shape=list(w.shape),
            filters=int(w.shape[0]),
            filters_nz=int((~row_zero).sum()),
            channels=int(ch_zero.numel()),
            channels_nz=int((~ch_zero).sum()),
            columns=int(col_zero.numel()),
            columns_nz=int((~col_zero).sum()),
            row_sparsity=float(row_zero.float().mean()),
            col_sparsity=float(col_zero.float().mean()),
            elem_sparsity=float(zero.float().mean()),
        ))
    return rows
