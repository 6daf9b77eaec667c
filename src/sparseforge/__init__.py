"""sparseforge: design, train, learn, search and measure sparse deep networks.

The public API is re-exported here; everything else may change between versions.
"""

from .data import DataSplits, DatasetUnavailable, load_dataset
from .nn import DenseLinear, SparseLinear, SparseMLP, SparsifyReport, sparsify
from .topology import (
    NetworkTopology,
    Pattern,
    TopologyError,
    allocate_density,
    design,
    fully_connected,
    radix_net,
)
from .train import Callback, TrainConfig, evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "Callback",
    "DataSplits",
    "DatasetUnavailable",
    "DenseLinear",
    "NetworkTopology",
    "Pattern",
    "SparseLinear",
    "SparseMLP",
    "SparsifyReport",
    "TopologyError",
    "TrainConfig",
    "allocate_density",
    "design",
    "evaluate",
    "fit",
    "fully_connected",
    "load_dataset",
    "radix_net",
    "sparsify",
]
