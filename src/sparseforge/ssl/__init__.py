"""Structured sparsity learning (SSL, Wen et al. 2016; seed 002): group Lasso, thinning, FLOPs, reports.

>>> import torch
>>> from sparseforge.nn import lenet5
>>> from sparseforge.ssl import GroupLasso, ssl_groups, thin, layer_flops
>>> model = lenet5()
>>> reg = GroupLasso(ssl_groups(model, filter=1e-3, channel=1e-3), mode="proximal", threshold=1e-4)
>>> # fit(model, data, cfg, callbacks=[reg]) ... then physically remove what went to zero:
>>> small = thin(model, torch.zeros(1, 1, 28, 28))

Group kinds: filter, channel, shape (conv), row, column (linear), layer, depth (residual blocks).
"""

from .flops import layer_flops, layer_inputs, model_flops
from .groups import (
    KINDS,
    GroupSet,
    Member,
    channel_groups,
    column_groups,
    depth_groups,
    filter_groups,
    layer_groups,
    row_groups,
    shape_groups,
    ssl_groups,
)
from .regularizer import FreezeZeroGroups, GroupLasso, group_penalty, proximal_step, threshold_groups, zero_fractions
from .report import lowered_matrix, sparsity_report
from .thinning import (
    LoweredConv2d,
    is_zero_module,
    lower_conv,
    remove_bn_channels,
    remove_channels,
    remove_filters,
    thin,
    zero_columns,
)

__all__ = [
    "KINDS", "GroupSet", "Member", "channel_groups", "column_groups", "depth_groups", "filter_groups",
    "layer_groups", "row_groups", "shape_groups", "ssl_groups",
    "GroupLasso", "FreezeZeroGroups", "group_penalty", "proximal_step", "threshold_groups", "zero_fractions",
    "LoweredConv2d", "is_zero_module", "lower_conv", "remove_bn_channels", "remove_channels", "remove_filters",
    "thin", "zero_columns",
    "layer_flops", "layer_inputs", "model_flops",
    "lowered_matrix", "sparsity_report",
]
