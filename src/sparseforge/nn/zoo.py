"""Build a model by name from the data's shape: the one place the studies, the search and the command line
get their networks from.

>>> model = build_model("lenet5", sample_shape=(1, 28, 28), n_classes=10)
>>> model = build_model("mlp", sample_shape=(784,), n_classes=10, width=[300, 100], density=0.1)

``sample_shape`` is one sample's shape without the batch dimension (``[n_features]`` or ``[C, H, W]``);
an MLP flattens it. Options a model does not take are an error naming them.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from torch import nn

from .convnet import ConvNet
from .mlp import SparseMLP
from .models import lenet5, lenet_300_100
from .resnet import resnet20

__all__ = ["MODELS", "build_model", "count_flops", "count_parameters", "model_cost"]


def _image(name: str, shape: tuple[int, ...], min_side: int = 1) -> tuple[int, int]:
    """``(channels, side)`` of square image samples ``[C, side, side]``, else a ValueError naming the shape."""
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] < min_side:
        raise ValueError(f"model {name} needs square images of side >= {min_side} as [channels, side, side]; "
                         f"the data has samples of shape {tuple(shape)}")
    return shape[0], shape[1]


def _lenet300(shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """LeNet-300-100 (dense) on the flattened samples."""
    return lenet_300_100(n_in=math.prod(shape), n_classes=n_classes)


def _lenet5(shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """Caffe LeNet-5 (conv 20/50, FC 500) on square images of side >= 16."""
    c, side = _image("lenet5", shape, min_side=16)
    return lenet5(in_channels=c, n_classes=n_classes, image_size=side)


def _resnet20(shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """ResNet-20 (3 stages of 3 basic blocks, widths 16/32/64) on image samples [C, H, W]."""
    if len(shape) != 3:
        raise ValueError(f"model resnet20 needs image samples [channels, height, width]; "
                         f"the data has samples of shape {tuple(shape)}")
    return resnet20(in_channels=shape[0], n_classes=n_classes)


def _mlp_args(shape: tuple[int, ...], n_classes: int, *, width: Sequence[int] = (), density: Any = 1.0,
              family: str = "structured", seed: int = 0) -> dict[str, Any]:
    """A pre-defined sparse MLP ``(n_features, *width, n_classes)``: ``density`` (one value or one per
    junction) of pattern ``family``, drawn with ``seed``."""
    sizes = (math.prod(shape), *[int(w) for w in width], n_classes)
    return dict(sizes=sizes, density=density, family=family, seed=seed)


def _mlp(shape: tuple[int, ...], n_classes: int, **options: Any) -> nn.Module:
    from ..topology import design

    return SparseMLP(design(**_mlp_args(shape, n_classes, **options)))


def _cnn_args(shape: tuple[int, ...], n_classes: int, *, channels: Sequence[int] = (),
              kernel: Sequence[int] | None = None, downsample: str = "pool", batch_norm: bool = False,
              groups: int = 1, fc_width: Sequence[int] = (), density: Any = 1.0, family: str = "structured",
              seed: int = 0) -> dict[str, Any]:
    """A plain CNN (see :class:`~sparseforge.nn.convnet.ConvNet`) with a sparse classifier head."""
    if len(shape) != 3:
        raise ValueError(f"model cnn needs image samples (C, H, W); the data has samples of shape {tuple(shape)}")
    channels = [int(c) for c in channels]
    return dict(in_shape=shape, n_classes=n_classes, channels=channels,
                kernels=[int(k) for k in (kernel or [3] * len(channels))], downsample=downsample,
                batch_norm=bool(batch_norm), groups=int(groups), hidden=[int(w) for w in fc_width],
                density=density, family=family, seed=seed)


def _cnn(shape: tuple[int, ...], n_classes: int, **options: Any) -> nn.Module:
    return ConvNet(**_cnn_args(shape, n_classes, **options))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet300": _lenet300, "lenet5": _lenet5, "resnet20": _resnet20, "mlp": _mlp, "cnn": _cnn,
}


def _call(name: str, fn: Callable[..., Any], shape: Sequence[int], n_classes: int, options: dict) -> Any:
    """``fn(shape, n_classes, **options)`` with the checks of :func:`build_model`."""
    if n_classes < 2:
        raise ValueError(f"model {name}: n_classes={n_classes} must be >= 2")
    try:
        return fn(tuple(int(s) for s in shape), int(n_classes), **options)
    except TypeError as e:
        if "unexpected keyword" not in str(e):
            raise
        raise ValueError(f"model {name}: options {sorted(options)} not all allowed ({e})") from None


def build_model(name: str, sample_shape: Sequence[int], n_classes: int, **options: Any) -> nn.Module:
    """The model ``name`` (a key of :data:`MODELS`) for samples of ``sample_shape`` and ``n_classes``
    classes; ``options`` go to the builder (``mlp``/``cnn`` only). Initialised from torch's global RNG
    (seed it first). Raises ValueError naming the model and what does not fit."""
    if name not in MODELS:
        raise ValueError(f"model={name!r}: choose one of {', '.join(MODELS)}")
    return _call(name, MODELS[name], sample_shape, n_classes, options)


def model_cost(name: str, sample_shape: Sequence[int], n_classes: int, **options: Any) -> tuple[int, int | None]:
    """``(stored trainable values, forward FLOPs per sample)`` of ``build_model(name, sample_shape,
    n_classes, **options)`` (edges, not the zeros of a dense view; FLOPs None where the model cannot
    tell), for ``mlp`` and ``cnn`` without building weights or patterns (~0.5 ms: what a search knows of a
    candidate before training it); other models are built and counted."""
    if name == "mlp":
        args = _call(name, _mlp_args, sample_shape, n_classes, options)
        return SparseMLP.cost(args["sizes"], density=args["density"])
    if name == "cnn":
        return ConvNet.cost(**_call(name, _cnn_args, sample_shape, n_classes, options))
    model = build_model(name, sample_shape, n_classes, **options)
    return count_parameters(model), count_flops(model)


def count_parameters(model: nn.Module) -> int:
    """Stored trainable values (a model may define ``num_parameters()`` to count only real edges)."""
    fn = getattr(model, "num_parameters", None)
    return int(fn()) if callable(fn) else sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_flops(model: nn.Module) -> int | None:
    """Forward FLOPs per sample, when the model can tell (``flops_per_sample()``)."""
    fn = getattr(model, "flops_per_sample", None)
    return int(fn()) if callable(fn) else None
