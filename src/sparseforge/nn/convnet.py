"""A configurable small CNN for model search (seed 003's levels 1-3) with a pre-defined sparse classifier.

``[batch, C, H, W]`` -> per conv layer ``i``: ``Conv2d(k_i x k_i, 'same' or 'valid' padding, groups)`` ->
(``BatchNorm2d``) -> ReLU -> downsampling (``"pool"``: 2x2 max-pool, ``"stride"``: the conv has stride 2,
``"none"``) -> flatten -> :class:`~sparseforge.nn.SparseMLP` over ``(C_L * H_L * W_L, *hidden, n_classes)``
with the given junction densities (dense junctions become plain GEMMs).

Grouped convolutions use ``gcd(groups, C_in, C_out)`` groups per layer (the first layer's few input
channels usually make it 1). Downsampling stops once the feature map is 1x1.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..topology import NetworkTopology, design
from .mlp import SparseMLP

DOWNSAMPLE = ("none", "pool", "stride")
PADDING = ("same", "valid")


def _per_layer(v, n: int, name: str) -> list:
    items = list(v) if isinstance(v, (list, tuple)) else [v] * n
    if len(items) != n:
        raise ValueError(f"{name}: expected {n} values (one per conv layer), got {len(items)}: {items}")
    return items


def conv_features(in_shape: Sequence[int], channels: Sequence[int], kernels: Sequence[int] | int = 3,
                  downsample: Sequence[str] | str = "pool", padding: Sequence[str] | str = "same",
                  batch_norm: bool = False, groups: int = 1) -> tuple[list[nn.Module], tuple[int, int, int], int]:
    """The conv layers of :class:`ConvNet` (arguments as there) for samples ``in_shape = (C, H, W)``:
    ``(modules, (C_L, H_L, W_L) of their output, forward FLOPs per sample)``. Raises ValueError naming the
    layer and what does not fit."""
    if len(in_shape) != 3:
        raise ValueError(f"in_shape must be (C, H, W), got {tuple(in_shape)}")
    n = len(channels)
    kernels = _per_layer(kernels, n, "kernels")
    downsample = _per_layer(downsample, n, "downsample")
    padding = _per_layer(padding, n, "padding")
    c, h, w = (int(v) for v in in_shape)
    layers: list[nn.Module] = []
    flops = 0
    for i, (out_c, k, ds, pad) in enumerate(zip(channels, kernels, downsample, padding)):
        if ds not in DOWNSAMPLE:
            raise ValueError(f"downsample[{i}]={ds!r}: choose one of {DOWNSAMPLE}")
        if pad not in PADDING:
            raise ValueError(f"padding[{i}]={pad!r}: choose one of {PADDING}")
        if int(k) < 1 or int(out_c) < 1:
            raise ValueError(f"layer {i}: kernel {k} and channels {out_c} must be positive")
        g = math.gcd(int(groups), c, int(out_c))
        can_down = min(h, w) >= 2
        stride = 2 if ds == "stride" and can_down else 1
        p = int(k) // 2 if pad == "same" else 0
        if min(h, w) + 2 * p < int(k):
            raise ValueError(f"layer {i}: a {k}x{k} '{pad}' convolution does not fit the {h}x{w} feature map")
        conv = nn.Conv2d(c, int(out_c), int(k), stride=stride, padding=p, groups=g, bias=not batch_norm)
        layers.append(conv)
        h = (h + 2 * p - int(k)) // stride + 1
        w = (w + 2 * p - int(k)) // stride + 1
        flops += 2 * (c // g) * int(k) * int(k) * int(out_c) * h * w
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(out_c)))
        layers.append(nn.ReLU())
        if ds == "pool" and can_down:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = int(out_c)
    return layers, (c, h, w), flops


def classifier_sizes(feature_shape: Sequence[int], hidden: Sequence[int], n_classes: int) -> tuple[int, ...]:
    """Layer sizes of the classifier on flattened ``feature_shape``: ``(C*H*W, *hidden, n_classes)``."""
    return (math.prod(int(v) for v in feature_shape), *(int(v) for v in hidden), int(n_classes))


class ConvNet(nn.Module):
    """Conv feature extractor + pre-defined sparse MLP classifier.

    Args:
        in_shape: ``(C, H, W)`` of one sample.
        n_classes: outputs.
        channels: output channels per conv layer (its length is the number of conv layers; may be empty).
        kernels: kernel size per layer (or one for all); odd sizes keep the map size.
        padding: per layer (or one for all) ``"same"`` (``k // 2`` zeros each side) or ``"valid"`` (none).
        downsample: per layer (or one for all) one of ``"none"``, ``"pool"``, ``"stride"``.
        batch_norm: BatchNorm2d after every conv (the conv then has no bias).
        groups: grouped convolutions (per layer ``gcd(groups, C_in, C_out)``).
        hidden: hidden layer widths of the classifier.
        density: classifier junction densities (one per junction, or one for all), rounded to realisable
            degrees by :func:`sparseforge.topology.design`.
        fan_out: classifier out-degrees per junction instead of ``density`` (as the seeds' tables give them).
        family, seed: the classifier's pattern family and seed.
    """

    def __init__(self, in_shape: Sequence[int], n_classes: int, channels: Sequence[int], *,
                 kernels: Sequence[int] | int = 3, downsample: Sequence[str] | str = "pool",
                 padding: Sequence[str] | str = "same", batch_norm: bool = False, groups: int = 1,
                 hidden: Sequence[int] = (), density: Sequence[float] | float | None = 1.0,
                 fan_out: Sequence[int] | None = None, family: str = "structured", seed: int = 0) -> None:
        super().__init__()
        layers, self.feature_shape, self._conv_flops = conv_features(
            in_shape, channels, kernels, downsample, padding, batch_norm, groups)
        self.features = nn.Sequential(*layers)
        sizes = classifier_sizes(self.feature_shape, hidden, n_classes)
        if fan_out is not None:
            density = None
        self.topology: NetworkTopology = design(sizes, density=density, fan_out=fan_out, family=family, seed=seed)
        self.classifier = SparseMLP(self.topology)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def num_parameters(self) -> int:
        """Stored trainable values: conv (and BN) parameters plus the classifier's edges and biases."""
        conv = sum(p.numel() for p in self.features.parameters() if p.requires_grad)
        return conv + self.classifier.num_parameters()

    @staticmethod
    def cost(in_shape: Sequence[int], n_classes: int, channels: Sequence[int], *,
             kernels: Sequence[int] | int = 3, downsample: Sequence[str] | str = "pool",
             padding: Sequence[str] | str = "same", batch_norm: bool = False, groups: int = 1,
             hidden: Sequence[int] = (), density: Sequence[float] | float | None = 1.0,
             fan_out: Sequence[int] | None = None, family: str = "structured", seed: int = 0) -> tuple[int, int]:
        """``(num_parameters(), flops_per_sample())`` of the ConvNet these arguments build, without
        building its classifier (no pattern, no weights: ~0.5 ms where building a large classifier takes
        ~0.5 s); ``family`` and ``seed`` do not change them (every family realises the same degrees)."""
        layers, shape, flops = conv_features(in_shape, channels, kernels, downsample, padding, batch_norm, groups)
        conv = sum(p.numel() for m in layers for p in m.parameters())
        sizes = classifier_sizes(shape, hidden, n_classes)
        c_params, c_flops = SparseMLP.cost(sizes, density=None if fan_out is not None else density, fan_out=fan_out)
        return conv + c_params, flops + c_flops

    @property
    def conv_flops(self) -> int:
        """Forward FLOPs per sample of the convolutions alone (2 per multiply-add)."""
        return self._conv_flops

    def flops_per_sample(self) -> int:
        """Forward FLOPs per sample: 2 per multiply-add of the convolutions, plus the classifier's."""
        return self._conv_flops + self.classifier.flops_per_sample()
