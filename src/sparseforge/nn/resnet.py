"""CIFAR-style ResNet (He et al. 2016, Sec. 4.2) for small grey images, with removable residual blocks.

``resnet20()``: conv3x3(16) -> BN -> ReLU -> 3 stages x 3 :class:`BasicBlock` (16, 32, 64 channels;
the first block of stages 2 and 3 has stride 2) -> global average pool -> FC. 20 weighted layers
(1 + 3*3*2 + 1). For 28x28 inputs the feature maps are 28x28, 14x14 and 7x7. Shortcuts are parameter-free
(option A: identity, or stride-2 subsampling plus zero channel padding), so a block whose residual branch
is zero is exactly its shortcut (block inputs are non-negative: every block and the stem end with a ReLU,
hence ``relu(shortcut(x) + 0) = shortcut(x)``). That is what SSL's depth regularization (seed 002) removes:
thinning (:func:`sparseforge.ssl.thin`) replaces a block whose branch is identically zero by its shortcut
(the contract :attr:`BasicBlock.zero_branch_is_shortcut`).

The model is an ``nn.Sequential`` with named children (``conv1, bn1, relu, layer1_0, ..., layer3_2, pool,
flatten, fc``); each block's branch is an ``nn.Sequential`` (``conv, bn, relu, conv, bn``), so generic
Sequential tools (group discovery, thinning) see every conv with its BatchNorm.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PadShortcut", "BasicBlock", "ResNet", "resnet20", "resnet"]


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad channels from ``in_channels`` to
    ``out_channels`` (padding split evenly before and after). ``[B, C_in, H, W] -> [B, C_out, H', W']``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"out_channels={out_channels} < in_channels={in_channels}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))


class BasicBlock(nn.Module):
    """``relu(branch(x) + shortcut(x))`` with ``branch = conv3x3 -> BN -> ReLU -> conv3x3 -> BN``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=False),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = PadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))

    #: A block whose branch is identically zero computes exactly ``shortcut(x)`` (inputs are non-negative):
    #: the contract :func:`sparseforge.ssl.thin` relies on to remove the block.
    zero_branch_is_shortcut = True


class ResNet(nn.Sequential):
    """A CIFAR-style ResNet as an ``nn.Sequential`` (see the module docstring)."""

    def blocks(self) -> list[tuple[str, BasicBlock]]:
        return [(n, m) for n, m in self.named_children() if isinstance(m, BasicBlock)]

    def depth(self) -> int:
        """Weighted layers: convs and linears that remain (a removed block loses its two convs)."""
        return sum(1 for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
                   or type(m).__name__ == "LoweredConv2d")


def resnet(blocks_per_stage: int = 3, widths: tuple[int, ...] = (16, 32, 64), in_channels: int = 1,
           n_classes: int = 10) -> ResNet:
    """ResNet-(6n+2) with ``n = blocks_per_stage`` (3 -> ResNet-20, 5 -> ResNet-32), input
    ``[B, in_channels, H, W]``, output logits ``[B, n_classes]``. He initialisation for convs."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv1=nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), bn1=nn.BatchNorm2d(widths[0]), relu=nn.ReLU()
    )
    c = widths[0]
    for s, w in enumerate(widths):
        for b in range(blocks_per_stage):
            stride = 2 if (s > 0 and b == 0) else 1
            layers[f"layer{s + 1}_{b}"] = BasicBlock(c, w, stride)
            c = w
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["fc"] = nn.Linear(c, n_classes)
    model = ResNet(layers)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model


def resnet20(in_channels: int = 1, n_classes: int = 10) -> ResNet:
    """ResNet-20 (3 blocks per stage, widths 16-32-64) for ``[B, in_channels, 28, 28]`` (any size works)."""
    return resnet(3, (16, 32, 64), in_channels, n_classes)
