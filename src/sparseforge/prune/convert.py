"""From a pruned (masked, dense-compute) model to one that runs at sparse speed, and back to structure.

* :func:`to_sparse`: every pruned Linear becomes a :class:`~sparseforge.nn.SparseLinear` holding only
  the kept weights (variable in-degree: the general CSR path of the kernels), fully kept ones become
  :class:`~sparseforge.nn.DenseLinear`; masked convs become plain convs with their zeros (removing zero
  filters/channels physically is the job of ``sparseforge.ssl``'s thinning). A top-level
  ``nn.Sequential`` becomes a :class:`SparseSequential`, which keeps activations feature-major
  ``[features, batch]`` through consecutive linear layers and element-wise activations.
* :func:`mask_topology`: the structure of a pruned MLP as a :class:`~sparseforge.topology.NetworkTopology`
  (one CSR pattern per junction), e.g. to retrain from scratch with :class:`~sparseforge.nn.SparseMLP`;
  :func:`masks_from_topology` goes back to masks for a model of the same architecture.
* :func:`to_sparse_mlp`: a pruned MLP (Linear layers with ReLU between) as a ``SparseMLP`` with its
  trained weights.

Why CSR and not padded ELL: on LeNet-300-100's first junction (784->300 at 95% sparsity, max in-degree
54) the padded-ELL gather and the CSR gather ran at the same speed (34 vs 34 us at batch 1, 65 vs 63 us at
batch 64, 1 thread), and CSR stores exactly the kept weights.
"""

from __future__ import annotations

import copy
import torch
from torch import nn

from ..nn import DenseLinear, SparseLinear, SparseMLP
from ..topology import NetworkTopology, Pattern
from .masked import MaskedConv2d, MaskedLayer, MaskedLinear, extract_masks

__all__ = [
    "SparseSequential",
    "to_sparse",
    "sparse_linear",
    "mask_topology",
    "masks_from_topology",
    "to_sparse_mlp",
    "linear_names",
]

#: element-wise modules that work on feature-major activations unchanged
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.Identity, nn.Dropout)


def sparse_linear(layer: nn.Linear) -> nn.Module:
    """The sparse layer for one (masked or plain) Linear: SparseLinear on its kept weights, DenseLinear if none
    were pruned. A plain Linear's zeros count as pruned."""
    w = (layer.masked_weight() if isinstance(layer, MaskedLinear) else layer.weight).detach()
    mask = (layer.mask != 0) if isinstance(layer, MaskedLinear) else (w != 0)
    bias = layer.bias.detach() if layer.bias is not None else None
    if bool(mask.all()):
        dense = DenseLinear(layer.in_features, layer.out_features, bias=bias is not None,
                            device=w.device, dtype=w.dtype)
        with torch.no_grad():
            dense.weight.copy_(w)
            if bias is not None:
                dense.bias.copy_(bias)
        return dense
    return SparseLinear.from_dense(w * mask, Pattern.from_dense(mask.cpu().numpy()), bias)


class SparseSequential(nn.Sequential):
    """``nn.Sequential`` that keeps activations feature-major through runs of sparse/dense linear layers.

    A 2-D activation ``[batch, features]`` is transposed once on entering a run of modules with
    ``forward_fm`` (SparseLinear, DenseLinear) and element-wise activations, and once on leaving it, so
    consecutive sparse layers do not transpose in between. Other modules see the usual layout.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fm = False  # is x currently feature-major?
        for module in self:
            if hasattr(module, "forward_fm"):
                if not fm:
                    if x.dim() != 2:
                        x = x.reshape(x.shape[0], -1)
                    x, fm = x.t(), True
                x = module.forward_fm(x)
            elif fm and isinstance(module, ELEMENTWISE):
                x = module(x)
            else:
                if fm:
                    x, fm = x.t(), False
                x = module(x)
        return x.t() if fm else x

    def num_parameters(self) -> int:
        """Stored trainable values (kept edges + biases for sparse layers)."""
        total = 0
        for m in self:
            fn = getattr(m, "num_parameters", None)
            total += int(fn()) if callable(fn) else sum(p.numel() for p in m.parameters() if p.requires_grad)
        return total

    def flops_per_sample(self) -> int | None:
        """Forward FLOPs per sample when every parametrised module can tell (linear-only models)."""
        total = 0
        for m in self:
            if not any(True for _ in m.parameters()):
                continue
            fn = getattr(m, "flops_per_sample", None)
            if not callable(fn):
                return None
            total += int(fn())
        return total


def _set_child(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def to_sparse(model: nn.Module, *, inplace: bool = False, zeros: bool = False) -> nn.Module:
    """A model whose pruned Linear layers are SparseLinear (cost scales with kept weights).

    Args:
        model: with masked layers (from ``apply_masks``/``prune_once``/``Pruner``).
        inplace: convert ``model`` itself instead of a deep copy.
        zeros: also convert plain ``nn.Linear`` layers, treating exact zeros as pruned.

    Masked convs become plain ``nn.Conv2d`` with the zeros in their weight. A top-level
    ``nn.Sequential`` is returned as :class:`SparseSequential`. Outputs equal the masked model's up to
    float rounding; the parameter count (``num_parameters()``) is kept weights + biases.
    """
    out = model if inplace else copy.deepcopy(model)
    for name, layer in list(out.named_modules()):
        if isinstance(layer, MaskedLinear) or (zeros and type(layer) is nn.Linear):
            _set_child(out, name, sparse_linear(layer))  # type: ignore[arg-type]
        elif isinstance(layer, MaskedConv2d):
            _set_child(out, name, layer.unwrap())
    if type(out) is nn.Sequential:
        seq = SparseSequential(*out.children())
        seq.train(out.training)
        return seq
    return out


def linear_names(model: nn.Module) -> list[str]:
    """Names of the Linear layers (masked or not) in model order."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def mask_topology(model: nn.Module, *, zeros: bool = False) -> NetworkTopology:
    """The structure of a pruned MLP: one CSR pattern per Linear layer, in order.

    Linear layers must chain (``out_features`` of one = ``in_features`` of the next). Unmasked layers
    are fully connected, or with ``zeros=True`` connected where their weight is nonzero.
    """
    names = linear_names(model)
    if not names:
        raise ValueError("the model has no Linear layers")
    masks = extract_masks(model, zeros=zeros)
    patterns, sizes = [], []
    for i, name in enumerate(names):
        layer = model.get_submodule(name)
        if sizes and sizes[-1] != layer.in_features:
            raise ValueError(f"layer {name!r} takes {layer.in_features} inputs but the previous one gives "
                             f"{sizes[-1]}: mask_topology needs a chain of Linear layers (an MLP)")
        if not sizes:
            sizes.append(layer.in_features)
        sizes.append(layer.out_features)
        m = masks.get(name)
        patterns.append(Pattern.from_dense(m.cpu().numpy()) if m is not None
                        else Pattern.full(layer.in_features, layer.out_features))
    return NetworkTopology(tuple(sizes), tuple(patterns), family="pruned")


def masks_from_topology(topology: NetworkTopology, model: nn.Module) -> dict[str, torch.Tensor]:
    """``{Linear layer name: bool mask}`` of ``model`` (same architecture) from ``topology``'s patterns."""
    names = linear_names(model)
    if len(names) != len(topology.patterns):
        raise ValueError(f"topology has {len(topology.patterns)} junctions, the model {len(names)} Linear layers")
    out = {}
    for name, p in zip(names, topology.patterns):
        layer = model.get_submodule(name)
        if p.shape != tuple(layer.weight.shape):
            raise ValueError(f"layer {name!r} has weight {tuple(layer.weight.shape)}, pattern is {p.shape}")
        out[name] = torch.as_tensor(p.to_dense(), device=layer.weight.device)
    return out


def to_sparse_mlp(model: nn.Module) -> SparseMLP:
    """A pruned MLP (Linear layers with ReLU between, e.g. ``lenet_300_100``) as a :class:`SparseMLP`
    with the same trained weights: its topology is :func:`mask_topology`.
    """
    kinds = list(model.children()) if isinstance(model, nn.Sequential) else []
    allowed = (nn.Linear, nn.ReLU, nn.Flatten)
    if not kinds or not all(isinstance(m, allowed) for m in kinds):
        raise ValueError("to_sparse_mlp needs an nn.Sequential of Flatten/Linear/ReLU (use to_sparse otherwise)")
    topo = mask_topology(model)
    mlp = SparseMLP(topo, bias=all(model.get_submodule(n).bias is not None for n in linear_names(model)))
    for layer, name in zip(mlp.layers, linear_names(model)):
        src = model.get_submodule(name)
        w = (src.masked_weight() if isinstance(src, MaskedLayer) else src.weight).detach()
        with torch.no_grad():
            if isinstance(layer, SparseLinear):
                rows = torch.as_tensor(layer.pattern.rows)
                layer.weight.copy_(w[rows, layer.indices].view(layer.weight.shape))
            else:
                layer.weight.copy_(w)
            if layer.bias is not None:
                layer.bias.copy_(src.bias.detach())
    return mlp
