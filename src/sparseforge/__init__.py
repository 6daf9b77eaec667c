"""sparseforge: design, train, learn, search and measure sparse deep networks.

The public API is re-exported here; everything else may change between versions.
"""

import importlib
from typing import Any

# Public name -> the module defining it. Imported on first use (PEP 562), so ``import sparseforge`` and the
# command line start without loading torch.
_EXPORTS = {
    "DataSplits": "data", "DatasetUnavailable": "data", "load_dataset": "data",
    "DenseLinear": "nn", "SparseLinear": "nn", "SparseMLP": "nn", "SparsifyReport": "nn", "sparsify": "nn",
    "NetworkTopology": "topology", "Pattern": "topology", "TopologyError": "topology",
    "allocate_density": "topology", "design": "topology", "fully_connected": "topology", "radix_net": "topology",
    "Callback": "train", "TrainConfig": "train", "evaluate": "train", "fit": "train",
    "export": "deploy", "load": "deploy", "predict": "deploy",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sparseforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


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
    "export",
    "fit",
    "fully_connected",
    "load",
    "load_dataset",
    "predict",
    "radix_net",
    "sparsify",
]
