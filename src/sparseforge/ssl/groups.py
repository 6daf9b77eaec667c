"""Group definitions of structured sparsity learning (SSL, Wen et al. 2016; seed 002).

A *group* is a set of weights that is kept or removed together; its size is measured by its L2 norm
``||w_g|| = sqrt(sum_i w_i^2)``. One :class:`GroupSet` holds all groups of one kind on one layer, e.g.
the 20 filter groups of a ``Conv2d(1, 20, 5)``. A group may span several tensors (:class:`Member`): a
filter group of a convolution that feeds a BatchNorm also holds that channel's BN scale and shift, so that
a zero group makes the channel's output exactly zero (and thinning can remove it); a depth group holds
every parameter of a residual branch.

Kinds, for a conv weight ``W [N, C, kh, kw]`` (lowered to the GEMM matrix ``[N, C*kh*kw]``):

* ``filter``  -- ``W[n, :, :, :]``, one per output channel (a *row* of the lowered matrix);
* ``channel`` -- ``W[:, c, :, :]``, one per input channel;
* ``shape``   -- ``W[:, c, i, j]``, one per (c, kh, kw) fibre (a *column* of the lowered matrix);
* ``layer``   -- the whole weight tensor;
* ``depth``   -- every parameter of a residual branch (see :class:`sparseforge.nn.resnet.BasicBlock`).

For ``Linear`` weights ``W [out, in]``: ``row`` = ``W[o, :]`` (an output neuron), ``column`` =
``W[:, i]`` (an input feature), ``layer`` = all of ``W``.

The seed's objective is ``E(W) = E_D(W) + lambda R(W) + sum_kinds lambda_kind sum_l sum_g ||w_g||``;
``lambda R(W)`` is the optimizer's weight decay, the group terms are :class:`GroupSet`\\ s with their own
coefficient ``lam`` (see :mod:`sparseforge.ssl.regularizer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

__all__ = [
    "KINDS",
    "Member",
    "GroupSet",
    "filter_groups",
    "channel_groups",
    "shape_groups",
    "layer_groups",
    "row_groups",
    "column_groups",
    "depth_groups",
    "ssl_groups",
    "safe_norm",
]

KINDS = ("filter", "channel", "shape", "layer", "row", "column", "depth")


def safe_norm(sq: torch.Tensor) -> torch.Tensor:
    """``sqrt(sq)`` with gradient 0 (a subgradient of the norm) where ``sq == 0`` instead of NaN."""
    pos = sq > 0
    return torch.where(pos, torch.where(pos, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


@dataclass(frozen=True, eq=False)
class Member:
    """One tensor's share of a group set.

    ``dims`` are the dimensions summed inside a group; the remaining dimensions, in order and flattened,
    index the groups. E.g. conv filters: ``dims=(1, 2, 3)`` -> one group per output channel; shape
    fibres: ``dims=(0,)`` -> ``C*kh*kw`` groups; a whole tensor: all dims -> one group.
    """

    name: str
    param: nn.Parameter
    dims: tuple[int, ...]

    def squares(self) -> torch.Tensor:
        """Sum of squares per group, ``[G]`` (differentiable)."""
        p = self.param
        if not self.dims:
            return (p * p).reshape(-1)
        return (p * p).sum(dim=self.dims, keepdim=True).reshape(-1)

    def group_shape(self) -> tuple[int, ...]:
        """Shape that broadcasts a ``[G]`` vector back onto the parameter."""
        return tuple(1 if d in self.dims else s for d, s in enumerate(self.param.shape))


@dataclass(frozen=True, eq=False)
class GroupSet:
    """All groups of one ``kind`` on one ``layer`` (module name), with coefficient ``lam``.

    Every member yields the same number ``G`` of groups; group ``g``'s squared norm is the sum of the
    members' squared sums for ``g``.
    """

    kind: str
    layer: str
    members: tuple[Member, ...]
    lam: float = 0.0

    def __post_init__(self) -> None:
        sizes = {m.squares().numel() for m in self.members}
        if len(sizes) != 1:
            raise ValueError(f"{self.layer}/{self.kind}: members disagree on the number of groups: {sizes}")

    @property
    def n_groups(self) -> int:
        return self.members[0].squares().numel()

    @property
    def group_size(self) -> int:
        """Weights per group (all members)."""
        return sum(m.param.numel() // self.n_groups for m in self.members)

    def squares(self) -> torch.Tensor:
        """Squared group norms ``[G]`` (differentiable)."""
        sq = self.members[0].squares()
        for m in self.members[1:]:
            sq = sq + m.squares()
        return sq

    def norms(self) -> torch.Tensor:
        """Group norms ``||w_g||`` ``[G]``, differentiable, with gradient 0 at an all-zero group."""
        return safe_norm(self.squares())

    def penalty(self) -> torch.Tensor:
        """``lam * sum_g ||w_g||`` (a scalar tensor)."""
        return self.lam * self.norms().sum()

    @torch.no_grad()
    def scale_(self, factor: torch.Tensor) -> None:
        """Multiply group ``g`` by ``factor[g]`` in place (``factor`` ``[G]``)."""
        for m in self.members:
            m.param.mul_(factor.to(m.param.dtype).reshape(m.group_shape()))

    @torch.no_grad()
    def zero_mask(self, tol: float = 0.0) -> torch.Tensor:
        """Bool ``[G]``: groups whose norm is ``<= tol`` (``tol=0``: exactly zero)."""
        return self.squares().detach() <= tol * tol

    def with_lam(self, lam: float) -> GroupSet:
        return GroupSet(self.kind, self.layer, self.members, lam)


# ----------------------------------------------------------------------------------------- builders
def _weight(module: nn.Module, kinds: Sequence[type]) -> nn.Parameter:
    if not isinstance(module, tuple(kinds)):
        raise TypeError(f"expected {', '.join(k.__name__ for k in kinds)}, got {type(module).__name__}")
    return module.weight


def filter_groups(conv: nn.Module, name: str = "", lam: float = 0.0, *, bn: nn.BatchNorm2d | None = None,
                  bias: bool = False) -> GroupSet:
    """One group per output channel of a ``Conv2d`` (``W[n]``), plus BN ``weight[n], bias[n]`` if ``bn``
    is given (so that a zero group zeroes the channel after BN) and the conv bias if ``bias``."""
    w = _weight(conv, (nn.Conv2d,))
    if conv.groups != 1:
        raise ValueError(f"{name}: grouped convolutions are not supported (groups={conv.groups})")
    members = [Member(f"{name}.weight", w, (1, 2, 3))]
    if bias and conv.bias is not None:
        members.append(Member(f"{name}.bias", conv.bias, ()))
    if bn is not None:
        if bn.num_features != w.shape[0]:
            raise ValueError(f"{name}: BatchNorm has {bn.num_features} channels, conv has {w.shape[0]} filters")
        if bn.affine:
            members += [Member(f"{name}.bn.weight", bn.weight, ()), Member(f"{name}.bn.bias", bn.bias, ())]
    return GroupSet("filter", name, tuple(members), lam)


def channel_groups(conv: nn.Conv2d, name: str = "", lam: float = 0.0) -> GroupSet:
    """One group per input channel of a ``Conv2d``: ``W[:, c, :, :]``."""
    w = _weight(conv, (nn.Conv2d,))
    return GroupSet("channel", name, (Member(f"{name}.weight", w, (0, 2, 3)),), lam)


def shape_groups(conv: nn.Conv2d, name: str = "", lam: float = 0.0) -> GroupSet:
    """One group per (c, i, j) fibre ``W[:, c, i, j]`` (a column of the lowered weight matrix)."""
    w = _weight(conv, (nn.Conv2d,))
    return GroupSet("shape", name, (Member(f"{name}.weight", w, (0,)),), lam)


def row_groups(linear: nn.Linear, name: str = "", lam: float = 0.0, *, bias: bool = False) -> GroupSet:
    """One group per output neuron of a ``Linear``: ``W[o, :]`` (and ``b[o]`` if ``bias``)."""
    w = _weight(linear, (nn.Linear,))
    members = [Member(f"{name}.weight", w, (1,))]
    if bias and linear.bias is not None:
        members.append(Member(f"{name}.bias", linear.bias, ()))
    return GroupSet("row", name, tuple(members), lam)


def column_groups(linear: nn.Linear, name: str = "", lam: float = 0.0) -> GroupSet:
    """One group per input feature of a ``Linear``: ``W[:, i]``."""
    w = _weight(linear, (nn.Linear,))
    return GroupSet("column", name, (Member(f"{name}.weight", w, (0,)),), lam)


def layer_groups(module: nn.Module, name: str = "", lam: float = 0.0) -> GroupSet:
    """The whole weight tensor of one layer as a single group."""
    w = module.weight
    return GroupSet("layer", name, (Member(f"{name}.weight", w, tuple(range(w.ndim))),), lam)


def depth_groups(params: Iterable[tuple[str, nn.Parameter]], name: str = "", lam: float = 0.0) -> GroupSet:
    """All ``params`` (e.g. a residual branch's ``named_parameters()``) as one group: its zero removes
    the whole branch (the seed's depth regularization, ``lambda_d sum_l ||W^(l)||``)."""
    members = tuple(Member(f"{name}.{n}", p, tuple(range(p.ndim))) for n, p in params)
    if not members:
        raise ValueError(f"{name}: a depth group needs at least one parameter")
    return GroupSet("depth", name, members, lam)


def _bn_after(model: nn.Module) -> dict[int, nn.BatchNorm2d]:
    """``id(conv) -> bn`` for every Conv2d directly followed by a BatchNorm2d inside an nn.Sequential."""
    out: dict[int, nn.BatchNorm2d] = {}
    for m in model.modules():
        if isinstance(m, nn.Sequential):
            kids = list(m)
            for a, b in zip(kids, kids[1:]):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    out[id(a)] = b
    return out


def ssl_groups(
    model: nn.Module,
    *,
    filter: float = 0.0,
    channel: float = 0.0,
    shape: float = 0.0,
    layer: float = 0.0,
    row: float = 0.0,
    column: float = 0.0,
    depth: float = 0.0,
    modules: Sequence[str] | None = None,
    input_channels: bool = False,
    output_rows: bool = False,
) -> list[GroupSet]:
    """Every group set of ``model`` for the kinds with a non-zero coefficient (the seed's combinations,
    each kind with its own coefficient).

    * ``filter``, ``channel``, ``shape``, ``layer`` apply to each ``Conv2d`` (``layer`` also to ``Linear``);
      a conv directly followed by ``BatchNorm2d`` in an ``nn.Sequential`` gets the BN scale/shift in its
      filter groups.
    * ``row``, ``column`` apply to each ``Linear``; the last ``Linear`` (the classifier's outputs) gets no
      row groups unless ``output_rows``.
    * ``channel`` skips the first conv (its input channels are the image's) unless ``input_channels``.
    * ``depth`` applies to every module with a ``branch`` (a residual block): one group of all its
      branch parameters.
    * ``modules``: restrict to these module names (as in ``model.named_modules()``).
    """
    bns = _bn_after(model)
    named = [(n, m) for n, m in model.named_modules() if modules is None or n in modules]
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    first_conv = convs[0][1] if convs else None
    last_linear = linears[-1][1] if linears else None
    sets: list[GroupSet] = []
    for n, m in named:
        if isinstance(m, nn.Conv2d):
            if filter:
                sets.append(filter_groups(m, n, filter, bn=bns.get(id(m))))
            if channel and (input_channels or m is not first_conv):
                sets.append(channel_groups(m, n, channel))
            if shape:
                sets.append(shape_groups(m, n, shape))
            if layer:
                sets.append(layer_groups(m, n, layer))
        elif isinstance(m, nn.Linear):
            if row and (output_rows or m is not last_linear):
                sets.append(row_groups(m, n, row))
            if column:
                sets.append(column_groups(m, n, column))
            if layer:
                sets.append(layer_groups(m, n, layer))
        elif depth and isinstance(getattr(m, "branch", None), nn.Module):
            sets.append(depth_groups(m.branch.named_parameters(), n, depth))
    return sets
