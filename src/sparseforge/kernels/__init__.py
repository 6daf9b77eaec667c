"""Fast sparse products: ``torch.autograd.Function`` wrappers over a pattern's index tensors.

Two implementations with one meaning: stock PyTorch ops (portable fallback, any device) and compiled
CPU kernels (:mod:`.native`, built on first use). :func:`set_backend` / :func:`use_backend` choose.
The products are registered ``torch.library`` ops (:mod:`.ops`), so ``torch.compile`` and ``torch.export``
trace through them.
"""

from .backend import BACKENDS, get_backend, resolve_backend, set_backend, use_backend
from .ell import SparseLayout, gather_sum, sddmm, shared_index_group, stock_spmm
from .ops import sparse_inference_fm, sparse_matmul_fm

__all__ = [
    "BACKENDS",
    "SparseLayout",
    "gather_sum",
    "get_backend",
    "resolve_backend",
    "sddmm",
    "set_backend",
    "shared_index_group",
    "sparse_inference_fm",
    "sparse_matmul_fm",
    "stock_spmm",
    "use_backend",
]
