"""SparseLinear in standard PyTorch operators only, for export (ONNX, TorchScript) and runtimes without
sparseforge: ``y[b, j] = sum_k x[b, idx[j, k]] * w[j, k] + bias[j]``, i.e. Gather + Mul + ReduceSum.

The pattern is stored padded to its largest in-degree ``d_max`` (``idx[n_out, d_max]``, padding reads node 0
with weight 0), so the model's size grows with ``n_out * d_max`` (the edges, for fixed in-degree), never
with ``n_in * n_out``. Each forward costs O(n_out * d_max * batch).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .sparse_linear import SparseLinear


class GatherLinear(nn.Module):
    """The function of a :class:`SparseLinear` (same inputs, same outputs) in Gather/Mul/ReduceSum.

    Buffers: ``idx`` int64 ``[n_out, d_max]``, ``weight`` ``[n_out, d_max]`` (0 on padding), ``bias``
    ``[n_out]`` or None. Inference only (the weights are buffers).
    """

    def __init__(self, layer: SparseLinear) -> None:
        super().__init__()
        idx, valid = layer.pattern.padded_ell()
        valid_t = torch.as_tensor(valid)
        weight = torch.zeros(valid.shape, dtype=layer.weight.dtype, device=layer.weight.device)
        weight[valid_t.to(weight.device)] = layer.weight.detach().reshape(-1)
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.register_buffer("idx", torch.as_tensor(idx).to(weight.device))
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())

    def forward_fm(self, x_fm: torch.Tensor) -> torch.Tensor:
        """``[n_in, batch] -> [n_out, batch]``."""
        y = (x_fm[self.idx] * self.weight[:, :, None]).sum(1)  # [n_out, d_max, batch] -> [n_out, batch]
        return y if self.bias is None else y + self.bias[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[*, n_in] -> [*, n_out]``."""
        y = (x[..., self.idx] * self.weight).sum(-1)  # [*, n_out, d_max] -> [*, n_out]
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, d_max={self.idx.shape[1]}"


def to_standard_ops(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every :class:`SparseLinear` replaced by a :class:`GatherLinear`
    (``model`` itself is unchanged)."""
    model = copy.deepcopy(model).eval()
    if isinstance(model, SparseLinear):
        return GatherLinear(model)
    for name, child in list(model.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, SparseLinear):
                setattr(child, attr, GatherLinear(sub))
    return model
