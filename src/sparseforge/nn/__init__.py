"""PyTorch modules: SparseLinear (cost scales with connections) and models built from topologies."""

from .mlp import DenseLinear, SparseMLP, junction_layer
from .models import lenet5, lenet_300_100
from .sparse_linear import SparseLinear
from .sparsify import SparsifyReport, later_denser, sparsify

__all__ = ["DenseLinear", "SparseLinear", "SparseMLP", "junction_layer", "lenet5", "lenet_300_100",
           "SparsifyReport", "later_denser", "sparsify"]
