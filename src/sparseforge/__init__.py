"""sparseforge: design, train, learn, search and measure sparse deep networks.

The public API is re-exported here; everything else may change between versions.
"""

from .data import DataSplits, DatasetUnavailable, load_dataset
from .nn import DenseLinear, SparseLinear, SparseMLP
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
from .deploy import export, load, predict

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
    "TopologyError",
    "TrainConfig",
    "allocate_density",
    "design",
    "evaluate",
    "export",
    "fit",
    "fully_connected",
    "load",
    "load_dataset",
    "predict",
    "radix_net",
]
