"""Reference dense architectures of the seeds (plain ``nn.Module``s that pruning and SSL work on)."""

from __future__ import annotations

from torch import nn


def lenet_300_100(n_in: int = 784, n_classes: int = 10) -> nn.Sequential:
    """LeNet-300-100 (LeCun et al. 1998; seed 004): ``[batch, *] -> flatten -> 300 -> 100 -> n_classes``."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_in, 300), nn.ReLU(),
        nn.Linear(300, 100), nn.ReLU(),
        nn.Linear(100, n_classes),
    )


def lenet5(in_channels: int = 1, n_classes: int = 10, image_size: int = 28,
           conv: tuple[int, int] = (20, 50), hidden: int = 500) -> nn.Sequential:
    """LeNet as in Caffe's MNIST example (used by SSL, seed 002, and LeNet-5 of seed 004):

    conv 5x5 (``conv[0]`` filters) -> max-pool 2 -> conv 5x5 (``conv[1]``) -> max-pool 2 -> FC ``hidden``
    -> ReLU -> FC ``n_classes``. Input ``[batch, in_channels, image_size, image_size]``.
    """
    side = ((image_size - 4) // 2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, conv[0], 5), nn.MaxPool2d(2),
        nn.Conv2d(conv[0], conv[1], 5), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(conv[1] * side * side, hidden), nn.ReLU(),
        nn.Linear(hidden, n_classes),
    )
