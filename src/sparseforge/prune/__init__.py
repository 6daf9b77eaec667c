"""Learned sparsity by pruning: masked layers, sparsity schedules, criteria, iterative pruning, conversion.

>>> from sparseforge.nn import lenet_300_100
>>> from sparseforge.prune import Cubic, Pruner, prune_once, to_sparse
>>> model = lenet_300_100()
>>> result = prune_once(model, 0.9)            # one-shot: 90% of each layer's weights removed
>>> fast = to_sparse(model)                     # SparseLinear layers: cost scales with kept weights

Iterative pruning plugs into :func:`sparseforge.train.fit` as a callback::

    pruner = Pruner(model, Cubic(target=0.95, start=0, end=2000, every=50))
    fit(model, data, TrainConfig(epochs=10), callbacks=[pruner])
"""

from .convert import (SparseSequential, linear_names, mask_topology, masks_from_topology, sparse_linear,
                      to_sparse, to_sparse_mlp)
from .criteria import SCOPES, PruneResult, compute_masks, keep_top, magnitude
from .masked import (MaskedConv2d, MaskedLayer, MaskedLinear, apply_masks, extract_masks, layer_sparsity,
                     masked_layers, prunable_layers, remove, removable_groups)
from .pruner import Pruner, mask_optimizer_state, prune_below, prune_once
from .schedules import (SCHEDULES, Constant, Cubic, FunctionSchedule, Linear, Piecewise, Schedule, check_monotone,
                        schedule_from_dict)

__all__ = [
    "Constant", "Cubic", "FunctionSchedule", "Linear", "MaskedConv2d", "MaskedLayer", "MaskedLinear", "Piecewise",
    "PruneResult", "Pruner", "SCHEDULES", "SCOPES", "Schedule", "SparseSequential", "apply_masks", "check_monotone",
    "compute_masks", "extract_masks", "keep_top", "layer_sparsity", "linear_names", "magnitude", "mask_optimizer_state",
    "mask_topology", "masked_layers", "masks_from_topology", "prunable_layers", "prune_below", "prune_once", "remove",
    "removable_groups", "schedule_from_dict", "sparse_linear", "to_sparse", "to_sparse_mlp",
]
