"""SparseLinear: a linear layer that stores and computes only the connections of a fixed pattern."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..kernels import SparseLayout, sparse_matmul
from ..kernels.backend import direct_linear, resolve_backend
from ..kernels.batch_major import needs_grad, sparse_inference
from ..kernels.ell import PRODUCTS
from ..kernels.ops import COMPUTE_DTYPES, UPCAST, check_operands, linear_fm, tracing
from ..topology import Pattern


class SparseLinear(nn.Module):
    """``y = x W^T + b`` where ``W[n_out, n_in]`` is nonzero only on the edges of ``pattern``.

    Holds ``weight`` with one value per edge (``[n_out, d_in]`` for fixed in-degree, else ``[edges]`` in
    CSR order), the index buffers of the pattern and its transpose, and ``bias[n_out]``. Forward and both
    backward products cost O(edges * batch); the optimizer touches only the ``edges`` values.

    Takes inputs as ``nn.Linear`` does: ``[*, n_in]`` (any leading dims, an empty batch, non-contiguous), of
    the layer's dtype (float32/float64 computed as they are; float16/bfloat16 computed in float32 and cast
    back). The products are registered torch ops: ``torch.compile(fullgraph=True)`` and ``torch.export``
    trace through them.

    Args:
        pattern: which connections exist.
        bias: learn an additive bias.
        device, dtype: of the parameters.
    """

    def __init__(self, pattern: Pattern, bias: bool = True, *, device=None, dtype=None) -> None:
        super().__init__()
        if not isinstance(pattern, Pattern):
            raise ValueError(f"SparseLinear(pattern=...) needs a sparseforge.Pattern (e.g. "
                             f"sparseforge.topology.structured(n_in, n_out, d_out)), got {type(pattern).__name__}")
        allowed = COMPUTE_DTYPES + UPCAST
        if dtype is not None and dtype not in allowed:
            raise ValueError(f"SparseLinear(dtype={dtype}): allowed dtypes are "
                             f"{', '.join(str(d).removeprefix('torch.') for d in allowed)}")
        self.pattern = pattern
        self.in_features, self.out_features = pattern.n_in, pattern.n_out
        shape = (pattern.n_out, pattern.d_in) if pattern.is_fixed_in_degree else (pattern.edges,)
        self.weight = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(pattern.n_out, device=device, dtype=dtype)) if bias else None
        self._layout = SparseLayout.from_pattern(pattern, device=device)
        # the pattern travels with state_dict (and .to(device)) as buffers; the transpose is derived, so it is
        # a buffer (moved with the layer, seen by torch.export) but not saved
        self.register_buffer("indptr", self._layout.indptr, persistent=True)
        self.register_buffer("indices", self._layout.indices, persistent=True)
        for name in self._DERIVED:
            self.register_buffer(name, getattr(self._layout, name), persistent=False)
        self._set_direct()
        self.reset_parameters()

    def _set_direct(self) -> None:
        """The pattern's arguments of :data:`~sparseforge.kernels.native.linear_bm` (the eager inference entry
        without the dispatcher), or None where it does not apply (block patterns, layouts off the CPU)."""
        layout = self._layout
        self._direct = None if layout.block > 1 or layout.indices.device.type != "cpu" else (
            layout.indptr, layout.indices, layout.group, self.in_features)

    _DERIVED = ("t_indptr", "t_indices", "t_perm")

    # ------------------------------------------------------------------ initialisation
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Uniform in ``+-1/sqrt(fan_in)`` per right node, with its *real* fan-in (its in-degree).

        This is PyTorch's ``nn.Linear`` default (Kaiming-uniform, a=sqrt(5)) with ``fan_in = d_in``
        instead of ``n_in``, so a sparse layer starts with the same output variance as a dense one.
        """
        deg = torch.as_tensor(np.maximum(self.pattern.in_degrees, 1), dtype=torch.float64)
        bound = (1.0 / deg.sqrt()).to(self.weight.dtype).to(self.weight.device)
        with torch.no_grad():
            u = torch.rand(self.weight.shape, generator=generator, dtype=self.weight.dtype).to(self.weight.device)
            per_edge = bound.repeat_interleave(torch.as_tensor(self.pattern.in_degrees).to(bound.device))
            self.weight.copy_(((2 * u - 1).reshape(-1) * per_edge).view(self.weight.shape))
            if self.bias is not None:
                ub = torch.rand(self.out_features, generator=generator, dtype=self.bias.dtype).to(self.bias.device)
                self.bias.copy_((2 * ub - 1) * bound)

    # ------------------------------------------------------------------ state
    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        layout = self._layout
        if self.indices.device != layout.indices.device:  # the layout's tensors are the buffers themselves
            moved = {name: getattr(self, name) for name in ("indptr", "indices") + self._DERIVED}
            self._layout = SparseLayout(
                n_in=layout.n_in, n_out=layout.n_out, **moved, t_offsets=moved["t_indptr"][:-1],
                ell=None if layout.ell is None else moved["indices"].view(layout.ell.shape),
                t_ell=None if layout.t_ell is None else moved["t_indices"].view(layout.t_ell.shape),
                group=layout.group, t_group=layout.t_group, block=layout.block)
            self._set_direct()
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        for name in ("indptr", "indices"):
            key = prefix + name
            if key in state_dict and not torch.equal(state_dict[key].cpu(), getattr(self, name).cpu()):
                errors.append(
                    f"{key}: the saved pattern differs from this layer's pattern; build the layer from the "
                    f"saved topology (sparseforge.nn.SparseLinear(Pattern(...))) before loading"
                )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)

    # ------------------------------------------------------------------ compute
    def forward_fm(self, x_fm: torch.Tensor) -> torch.Tensor:
        """Feature-major forward: ``[n_in, batch] -> [n_out, batch]`` (no transposes)."""
        layout = self._layout
        check_operands(x_fm, self.weight, layout, self.bias)
        if not tracing():
            params = self._parameters
            weight, bias = params["weight"], params.get("bias")
            if x_fm.dtype in COMPUTE_DTYPES and not needs_grad(x_fm, weight, bias):  # no autograd.Function
                return PRODUCTS[resolve_backend(x_fm.device, x_fm.dtype)][0](layout, weight.reshape(-1), x_fm,
                                                                             bias=bias)
            return linear_fm(x_fm, weight, bias, layout)
        # traced: the buffers themselves (not the layout's references to them), so torch.export sees buffers
        return linear_fm(x_fm, self.weight, self.bias, layout,
                         (self.indptr, self.indices, self.t_indptr, self.t_indices, self.t_perm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., n_in] -> [..., n_out]``. Eager float32/float64 calls run the batch-major kernels (no transposed
        copies of ``x`` or ``y``); traced calls (torch.compile, torch.export) and half-precision inputs go through
        the registered feature-major ops. Eager inference on the CPU (grad mode off, or nothing requires grad) of
        float32/float64 ``[batch, n_in]`` inputs calls the kernel directly (:data:`.native.linear_bm`: no dispatcher,
        no autograd, nothing checked per call that the layout already guarantees)."""
        direct = self._direct
        if direct is not None and not tracing():
            linear = direct_linear()
            if linear is not None:
                params = self._parameters
                y = linear(x, params["weight"], params.get("bias"), *direct)
                if y is not None:
                    return y
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"SparseLinear: input of shape {tuple(x.shape)}; the last dimension must be "
                             f"in_features={self.in_features}")
        x2 = x if x.dim() == 2 else x.reshape(-1, self.in_features)
        if tracing() or x.dtype not in COMPUTE_DTYPES:
            y = self.forward_fm(x2.t()).t()
        else:  # nn.Module.__getattr__ costs ~0.5 us per parameter read: read them once, from the dict
            params = self._parameters
            weight, bias = params["weight"], params.get("bias")
            if needs_grad(x, weight, bias):
                y = sparse_matmul(x2, weight, self._layout, bias)
            else:  # eager inference: no autograd.Function (its Python costs more than small products)
                y = sparse_inference(x2, weight, self._layout, bias)
        return y if x.dim() == 2 else y.reshape(*x.shape[:-1], self.out_features)

    # ------------------------------------------------------------------ conversions and counts
    def to_dense(self) -> torch.Tensor:
        """The dense weight ``[n_out, n_in]`` (zeros off the pattern)."""
        w = torch.zeros(self.out_features, self.in_features, dtype=self.weight.dtype, device=self.weight.device)
        rows = torch.as_tensor(self.pattern.rows, device=w.device)
        w[rows, self.indices] = self.weight.detach().reshape(-1)
        return w

    @classmethod
    def from_dense(cls, weight: torch.Tensor, pattern: Pattern, bias: torch.Tensor | None = None) -> SparseLinear:
        """Keep the entries of ``weight[n_out, n_in]`` on ``pattern`` (others are dropped)."""
        if tuple(weight.shape) != pattern.shape:
            raise ValueError(f"weight has shape {tuple(weight.shape)}, pattern needs (n_out, n_in) = {pattern.shape}")
        layer = cls(pattern, bias=bias is not None, device=weight.device, dtype=weight.dtype)
        rows = torch.as_tensor(pattern.rows, device=weight.device)
        with torch.no_grad():
            layer.weight.copy_(weight[rows, layer.indices].view(layer.weight.shape))
            if bias is not None:
                layer.bias.copy_(bias)
        return layer

    @property
    def edges(self) -> int:
        return self.pattern.edges

    def num_parameters(self) -> int:
        """Stored trainable values: edges (+ n_out biases)."""
        return self.edges + (self.out_features if self.bias is not None else 0)

    def flops_per_sample(self) -> int:
        """Forward multiply-adds counted as 2 FLOPs each, plus the bias adds."""
        return 2 * self.edges + (self.out_features if self.bias is not None else 0)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, edges={self.edges}, "
                f"density={self.pattern.density:.4g}, bias={self.bias is not None}")
