"""Triton kernels for the sparse products of :mod:`.ell` (the GPU path; any pattern: ELL, CSR, grouped, block).

Same meaning and signatures as :func:`.ell.stock_spmm` / :func:`.ell.sddmm` (feature-major ``[n, batch]``)
and :func:`.batch_major.stock_spmm_bm` / :func:`.batch_major.stock_sddmm_bm` (batch-major ``[batch, n]``):
one kernel per product serves both orders through strides, so nothing is transposed or copied.

* forward / grad input (:func:`_spmm_kernel`): one program per group of ``G`` rows (``layout.group``; rows of
  a group share one index list, e.g. block patterns, :mod:`..topology.block`) and ``BLOCK_B`` samples. Each
  step gathers ``BLOCK_K`` input columns once and multiplies them into all ``G`` rows (fp32 accumulators
  ``[G, BLOCK_B]``). Bias and clamp are fused. Grad input runs the same kernel on the transposed pattern,
  reading the values through ``t_perm`` (no permuted copy).
* grad values (:func:`_sddmm_kernel`): ``g[e] = sum_b gy[b, row(e)] x[b, idx[e]]``, one program per row
  group and ``BLOCK_K`` edges, looping over the batch.

Rows of variable degree (CSR) run with ``G = 1``; masks cover uneven edges of every tile. Inputs may be
float32, float16 or bfloat16 (accumulated in float32, stored in the input dtype). ``triton`` is imported
on first use only: this module imports without it (:func:`available` says whether it can run).
Tests run these kernels on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import functools

import torch

#: dtypes the kernels take (float64 stays on the stock path).
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BLOCK_B = 32
BLOCK_K = 16


@functools.cache
def available() -> bool:
    """True when ``triton`` imports here (a GPU is still needed to run the kernels outside the interpreter)."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # ImportError, or a broken install (e.g. no driver libraries): the stock path is used
        return False
    return True


@functools.cache
def _kernels():
    """Define the kernels on first use (so ``import triton`` happens only here)."""
    import triton
    import triton.language as tl

    @triton.jit
    def spmm_kernel(x_ptr, sxb, sxi, v_ptr, perm_ptr, indptr_ptr, idx_ptr, bias_ptr, y_ptr, syb, syo,
                    n_batch, lo, hi, G: tl.constexpr, HAS_PERM: tl.constexpr, HAS_BIAS: tl.constexpr,
                    HAS_CLAMP: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
        # y[b, r0 + g] = sum_k v[start + g * deg + k] * x[b, idx[start + k]] for g < G, b in this block
        r0 = tl.program_id(0) * G
        offs_b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
        mask_b = offs_b < n_batch
        offs_g = tl.arange(0, G)
        start = tl.load(indptr_ptr + r0)
        deg = tl.load(indptr_ptr + r0 + 1) - start
        acc = tl.zeros((G, BLOCK_B), dtype=tl.float32)
        for k0 in range(0, deg, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < deg
            idx = tl.load(idx_ptr + start + offs_k, mask=mask_k, other=0)
            xt = tl.load(x_ptr + idx[:, None] * sxi + offs_b[None, :] * sxb,
                         mask=mask_k[:, None] & mask_b[None, :], other=0.0).to(tl.float32)  # [BLOCK_K, BLOCK_B]
            e = start + offs_g[:, None] * deg + offs_k[None, :]  # [G, BLOCK_K] edge numbers
            if HAS_PERM:
                e = tl.load(perm_ptr + e, mask=mask_k[None, :], other=0)
            v = tl.load(v_ptr + e, mask=mask_k[None, :], other=0.0).to(tl.float32)
            acc += tl.sum(v[:, :, None] * xt[None, :, :], axis=1)
        rows = r0 + offs_g
        if HAS_BIAS:
            acc += tl.load(bias_ptr + rows).to(tl.float32)[:, None]
        if HAS_CLAMP:
            acc = tl.minimum(tl.maximum(acc, lo), hi)
        tl.store(y_ptr + rows[:, None] * syo + offs_b[None, :] * syb, acc.to(y_ptr.dtype.element_ty),
                 mask=mask_b[None, :])

    @triton.jit
    def sddmm_kernel(gy_ptr, sgb, sgo, x_ptr, sxb, sxi, indptr_ptr, idx_ptr, out_ptr, n_batch,
                     G: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
        # out[start + g * deg + k] = sum_b gy[b, r0 + g] * x[b, idx[start + k]]
        r0 = tl.program_id(0) * G
        k0 = tl.program_id(1) * BLOCK_K
        offs_g = tl.arange(0, G)
        start = tl.load(indptr_ptr + r0)
        deg = tl.load(indptr_ptr + r0 + 1) - start
        if k0 < deg:
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < deg
            idx = tl.load(idx_ptr + start + offs_k, mask=mask_k, other=0)
            acc = tl.zeros((G, BLOCK_K), dtype=tl.float32)
            for b0 in range(0, n_batch, BLOCK_B):
                offs_b = b0 + tl.arange(0, BLOCK_B)
                mask_b = offs_b < n_batch
                xt = tl.load(x_ptr + idx[:, None] * sxi + offs_b[None, :] * sxb,
                             mask=mask_k[:, None] & mask_b[None, :], other=0.0).to(tl.float32)  # [K, B]
                gt = tl.load(gy_ptr + (r0 + offs_g)[:, None] * sgo + offs_b[None, :] * sgb,
                             mask=mask_b[None, :], other=0.0).to(tl.float32)  # [G, B]
                acc += tl.sum(gt[:, None, :] * xt[None, :, :], axis=2)
            e = start + offs_g[:, None] * deg + offs_k[None, :]
            tl.store(out_ptr + e, acc.to(out_ptr.dtype.element_ty), mask=mask_k[None, :])

    return triton, spmm_kernel, sddmm_kernel


def _max_degree(indptr: torch.Tensor, ell: torch.Tensor | None) -> int:
    return int(ell.shape[1]) if ell is not None else int(indptr.diff().max()) if indptr.numel() > 1 else 0


def _spmm(layout, values: torch.Tensor, x: torch.Tensor, batch_major: bool, transposed: bool,
          bias: torch.Tensor | None, clamp: tuple[float, float] | None) -> torch.Tensor:
    if transposed:
        indptr, idx, group, rows, perm = layout.t_indptr, layout.t_indices, layout.t_group, layout.n_in, layout.t_perm
    else:
        indptr, idx, group, rows, perm = layout.indptr, layout.indices, layout.group, layout.n_out, None
    batch = x.shape[0] if batch_major else x.shape[1]
    sxb, sxi = x.stride() if batch_major else x.stride()[::-1]
    y = x.new_empty((batch, rows) if batch_major else (rows, batch))
    syb, syo = y.stride() if batch_major else y.stride()[::-1]
    if batch == 0 or rows == 0:
        return y
    triton, spmm_kernel, _ = _kernels()
    lo, hi = clamp if clamp is not None else (0.0, 0.0)
    dummy = idx  # never read: HAS_PERM / HAS_BIAS are compile-time switches
    grid = (rows // group, triton.cdiv(batch, BLOCK_B))
    spmm_kernel[grid](x, sxb, sxi, values, dummy if perm is None else perm, indptr, idx,
                      values if bias is None else bias, y, syb, syo, batch, float(lo), float(hi),
                      G=group, HAS_PERM=perm is not None, HAS_BIAS=bias is not None, HAS_CLAMP=clamp is not None,
                      BLOCK_B=BLOCK_B, BLOCK_K=BLOCK_K)
    return y


def _sddmm(layout, grad_y: torch.Tensor, x: torch.Tensor, batch_major: bool) -> torch.Tensor:
    out = x.new_zeros(layout.edges)
    batch = x.shape[0] if batch_major else x.shape[1]
    if batch == 0 or layout.edges == 0:
        return out
    triton, _, sddmm_kernel = _kernels()
    sgb, sgo = grad_y.stride() if batch_major else grad_y.stride()[::-1]
    sxb, sxi = x.stride() if batch_major else x.stride()[::-1]
    grid = (layout.n_out // layout.group, triton.cdiv(_max_degree(layout.indptr, layout.ell), BLOCK_K))
    sddmm_kernel[grid](grad_y, sgb, sgo, x, sxb, sxi, layout.indptr, layout.indices, out, batch,
                       G=layout.group, BLOCK_B=BLOCK_B, BLOCK_K=BLOCK_K)
    return out


def spmm(layout, values: torch.Tensor, x_fm: torch.Tensor, transposed: bool = False,
         bias: torch.Tensor | None = None, clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """``[rows, batch]``: :func:`.ell.stock_spmm` for ``x_fm[n, batch]`` (bias and clamp fused)."""
    return _spmm(layout, values, x_fm, False, transposed, bias, clamp)


def sddmm(layout, grad_y_fm: torch.Tensor, x_fm: torch.Tensor) -> torch.Tensor:
    """``[edges]``: :func:`.ell.sddmm` for ``grad_y_fm[n_out, batch]``, ``x_fm[n_in, batch]``."""
    return _sddmm(layout, grad_y_fm, x_fm, False)


def spmm_bm(layout, values: torch.Tensor, x: torch.Tensor, transposed: bool = False,
            bias: torch.Tensor | None = None, clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """``[batch, rows]``: :func:`.batch_major.stock_spmm_bm` for ``x[batch, n]`` (bias and clamp fused)."""
    return _spmm(layout, values, x, True, transposed, bias, clamp)


def sddmm_bm(layout, grad_y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[edges]``: :func:`.batch_major.stock_sddmm_bm` for ``grad_y[batch, n_out]``, ``x[batch, n_in]``."""
    return _sddmm(layout, grad_y, x, True)
