"""PyTorch modules: SparseLinear (cost scales with connections) and models built from topologies."""

from .mlp import DenseLinear, SparseMLP, junction_layer
from .sparse_linear import SparseLinear

__all__ = ["DenseLinear", "SparseLinear", "SparseMLP", "junction_layer"]
