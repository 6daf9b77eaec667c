"""Fast sparse products: ``torch.autograd.Function`` wrappers over a pattern's index tensors."""

from .ell import EllProduct, SparseLayout, gather_sum, sddmm, sparse_matmul_fm

__all__ = ["EllProduct", "SparseLayout", "gather_sum", "sddmm", "sparse_matmul_fm"]
