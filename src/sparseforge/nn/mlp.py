"""Multilayer perceptrons built from a :class:`~sparseforge.topology.NetworkTopology`."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from ..topology import NetworkTopology, Pattern, resolve_out_degrees
from .sparse_linear import SparseLinear


class DenseLinear(nn.Linear):
    """``nn.Linear`` with the feature-major entry point of :class:`SparseLinear` (the FC junction)."""

    def forward_fm(self, x_fm: torch.Tensor) -> torch.Tensor:
        """``[n_in, batch] -> [n_out, batch]`` as one GEMM with the bias fused."""
        if self.bias is None:
            return self.weight @ x_fm
        return torch.addmm(self.bias[:, None], self.weight, x_fm)

    def num_parameters(self) -> int:
        return self.weight.numel() + (self.bias.numel() if self.bias is not None else 0)

    def flops_per_sample(self) -> int:
        return 2 * self.weight.numel() + (self.out_features if self.bias is not None else 0)


def junction_layer(pattern: Pattern, bias: bool = True) -> nn.Module:
    """The layer for one junction: dense GEMM when fully connected, :class:`SparseLinear` otherwise."""
    if pattern.density == 1.0:
        return DenseLinear(pattern.n_in, pattern.n_out, bias=bias)
    return SparseLinear(pattern, bias=bias)


class SparseMLP(nn.Module):
    """MLP with one (sparse or dense) linear layer per junction and ReLU between them.

    Input ``[*, N_0]`` (any leading dims, e.g. ``[batch, seq, N_0]``, or an empty batch) or
    ``[batch, *sample_shape]`` with ``prod(sample_shape) = N_0`` (e.g. images ``[batch, 1, 28, 28]``) is
    flattened to ``[rows, N_0]`` and stays batch-major through every layer (the sparse layers' kernels read
    and write batch-major tensors, transposing cache-sized tiles in registers; a transposed copy of the
    input cost ~0.4 ms per call at 784 x 128): output ``[*, N_L]`` (``[batch, N_L]`` for sample shapes).
    The input's dtype must be the model's (as for ``nn.Linear``).
    """

    def __init__(self, topology: NetworkTopology, bias: bool = True) -> None:
        super().__init__()
        if not isinstance(topology, NetworkTopology):
            raise ValueError(f"SparseMLP(topology=...) needs a sparseforge.NetworkTopology (e.g. "
                             f"sparseforge.design((784, 112, 10), density=0.2)), got {type(topology).__name__}")
        self.topology = topology
        self.layers = nn.ModuleList(junction_layer(p, bias) for p in topology.patterns)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_in = self.topology.sizes[0]
        if x.dim() >= 1 and x.shape[-1] == n_in:
            lead = x.shape[:-1]
        elif x.dim() >= 2 and math.prod(x.shape[1:]) == n_in:
            lead = x.shape[:1]
        else:
            raise ValueError(f"SparseMLP: input of shape {tuple(x.shape)}; expected [*, {n_in}] or "
                             f"[batch, *sample_shape] with {n_in} values per sample")
        dtype = self.layers[0].weight.dtype
        if x.dtype != dtype:
            raise ValueError(f"SparseMLP: input is {x.dtype} but the model is {dtype}: give x.to({dtype}) "
                             f"or convert the model (.to({x.dtype}))")
        h = x.reshape(-1, n_in)
        for i, layer in enumerate(self.layers):
            h = layer(h)  # batch-major: the kernels transpose cache-sized tiles in registers
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h.reshape(*lead, h.shape[-1])

    def num_parameters(self) -> int:
        """Trainable values actually stored (edges + biases)."""
        return sum(layer.num_parameters() for layer in self.layers)

    @staticmethod
    def cost(sizes: Sequence[int], *, bias: bool = True, **degrees: Any) -> tuple[int, int]:
        """``(num_parameters(), flops_per_sample())`` of ``SparseMLP(design(sizes, **degrees), bias)``
        without designing the pattern: ``E + biases`` and ``2 E + biases`` with ``E = sum(N_i d_out_i)``
        edges, the degrees resolved as :func:`~sparseforge.topology.design` resolves them (``degrees``: one
        of ``fan_out``, ``fan_in``, ``density``)."""
        d_outs = resolve_out_degrees(sizes, **degrees)
        edges = sum(int(n) * d for n, d in zip(sizes[:-1], d_outs))
        biases = sum(int(m) for m in sizes[1:]) if bias else 0
        return edges + biases, 2 * edges + biases

    def flops_per_sample(self) -> int:
        """Forward FLOPs per sample (2 per connection, plus biases; ReLU not counted)."""
        return sum(layer.flops_per_sample() for layer in self.layers)
