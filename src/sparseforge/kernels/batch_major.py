"""Sparse products on *batch-major* activations (``[batch, n]``, samples as rows: what ``nn.Linear`` takes).

The same three products as :mod:`.ell` (forward, grad input over the transposed pattern, grad values), for
``x[batch, n_in] -> y[batch, n_out]``. The native kernels (:func:`.native.spmm_bm`, :func:`.native.sddmm_bm`)
read and write batch-major tensors directly, transposing cache-sized tiles in registers, so ``layer(x)`` costs
what the feature-major product costs; the stock path computes on transposed views with the ops of :mod:`.ell`.
"""

from __future__ import annotations

import torch

from . import native, triton_ell
from .backend import resolve_backend
from .ell import SparseLayout, sddmm, stock_spmm
from .ops import COMPUTE_DTYPES, check_operands


def stock_spmm_bm(layout: SparseLayout, values: torch.Tensor, x: torch.Tensor, transposed: bool = False,
                  bias: torch.Tensor | None = None, clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """``[batch, rows]``: :func:`.ell.stock_spmm` on the transposed views of ``x[batch, n]`` and the result."""
    return stock_spmm(layout, values, x.t(), transposed=transposed, bias=bias, clamp=clamp).t()


def stock_sddmm_bm(layout: SparseLayout, grad_y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``g[e] = sum_b grad_y[b, row(e)] * x[b, indices[e]]`` (``[edges]``) with :func:`.ell.sddmm`."""
    return sddmm(layout, grad_y.t(), x.t())


#: backend name -> (spmm, sddmm) on batch-major operands.
PRODUCTS_BM = {"stock": (stock_spmm_bm, stock_sddmm_bm), "native": (native.spmm_bm, native.sddmm_bm),
               "triton": (triton_ell.spmm_bm, triton_ell.sddmm_bm)}


_NATIVE = PRODUCTS_BM["native"]


class BatchMajorProduct(torch.autograd.Function):
    """``y = x W^T (+ bias)`` for ``x[batch, n_in]`` and the sparse ``W`` of ``(layout, values)``; the bias is
    added inside the product. The backend is chosen at forward time and kept for the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None,
                layout: SparseLayout) -> torch.Tensor:
        flat_values = values.reshape(-1)
        ctx.layout = layout
        ctx.products = products = PRODUCTS_BM[resolve_backend(x.device, x.dtype)]
        ctx.save_for_backward(x, flat_values)
        ctx.values_shape = values.shape
        if products is _NATIVE and layout.block == 1:  # grad mode is off in here: the direct entry applies
            y = native.linear_bm(x, values, bias, layout.indptr, layout.indices, layout.group, layout.n_in)
            if y is not None:
                return y
        return products[0](layout, flat_values, x, bias=None if bias is None else bias.contiguous())

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        layout: SparseLayout = ctx.layout
        spmm, sampled = ctx.products
        x, flat_values = ctx.saved_tensors
        grad_x = grad_v = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = spmm(layout, flat_values, grad_y, transposed=True)
        if ctx.needs_input_grad[1]:
            grad_v = sampled(layout, grad_y, x).view(ctx.values_shape)
        if ctx.needs_input_grad[2]:
            grad_b = grad_y.sum(0)
        return grad_x, grad_v, grad_b, None


def sparse_matmul(x: torch.Tensor, values: torch.Tensor, layout: SparseLayout,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable ``[batch, n_out] = x[batch, n_in] @ W[n_out, n_in]^T (+ bias[n_out])`` for a sparse ``W``.

    ``values`` holds one entry per edge in CSR order, shaped ``[edges]`` or ``[n_out, d_in]``.
    """
    _check_bm(x, values, layout, bias)
    return BatchMajorProduct.apply(x, values, bias, layout)


def _check_bm(x: torch.Tensor, values: torch.Tensor, layout: SparseLayout, bias: torch.Tensor | None) -> None:
    """Raise ValueError unless ``x[batch, n_in]``, ``values`` and ``bias`` fit ``layout``; the full check (with
    its precise message, on a transposed view) runs only when the cheap one fails."""
    if x.dim() != 2 or x.shape[1] != layout.n_in:
        raise ValueError(f"x must be [batch, n_in={layout.n_in}], got {tuple(x.shape)}")
    if not (x.dtype is values.dtype and x.device == values.device and values.numel() == layout.edges
            and (bias is None or (bias.shape[0] == layout.n_out and bias.dim() == 1 and bias.dtype is x.dtype))
            and x.device == layout.indices.device):
        check_operands(x.t(), values, layout, bias)


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """True when autograd would record a product of these tensors (grad mode on and one requires grad)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def sparse_inference(x: torch.Tensor, values: torch.Tensor, layout: SparseLayout, bias: torch.Tensor | None = None,
                     clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """No-autograd ``[batch, n_out] = clamp(x[batch, n_in] @ W^T + bias, lo, hi)`` (bias, clamp optional, fused).

    The eager inference path of :class:`~sparseforge.nn.SparseLinear`: no ``autograd.Function``, no reshape of
    ``values`` (``[edges]`` or ``[n_out, d_in]``) and the full operand check only when the cheap one fails.
    Measured at 64 -> 64, batch 4, 1 thread (thread CPU time): ``layer(x)`` 30 us -> 9-13 us, of which the op
    call is ~3-4 us (``sparseforge bench latency`` shows it on a pruned LeNet). float32/float64 only (half
    precision goes through :func:`sparse_matmul`).
    """
    _check_bm(x, values, layout, bias)
    if x.dtype not in COMPUTE_DTYPES:
        raise ValueError(f"sparse_inference computes float32/float64, got {x.dtype}; use sparse_matmul")
    if clamp is not None and not (len(clamp) == 2 and clamp[0] <= clamp[1]):
        raise ValueError(f"clamp must be (lo, hi) with lo <= hi, got {clamp!r}")
    if torch.is_grad_enabled():  # called directly with tensors that require grad: the result has no history
        with torch.no_grad():
            return sparse_inference(x, values, layout, bias, clamp)
    backend = resolve_backend(x.device, x.dtype)
    if backend == "native":
        # the op itself, on values of any shape; detached: an nn.Parameter operand costs the op call ~0.6 us
        # more than detaching it (measured, 100 -> 10 at batch 1)
        lo, hi = clamp if clamp is not None else (None, None)
        return torch.ops.sparseforge.spmm_bm(layout.indptr, layout.indices, values.detach().contiguous(),
                                             native.rows(x), layout.group, None if bias is None else bias.detach(),
                                             lo, hi, None)
    return PRODUCTS_BM[backend][0](layout, values.reshape(-1), x, bias=bias, clamp=clamp)
