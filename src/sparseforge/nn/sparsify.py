"""Make any model pre-defined sparse before training: replace chosen ``nn.Linear`` layers by
:class:`~sparseforge.nn.SparseLinear` layers of a pattern family.

>>> from torch import nn
>>> from sparseforge import sparsify
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
...                       nn.Linear(100, 10))
>>> report = sparsify(model, density=0.1, seed=0)   # the last layer (the classifier) stays dense
>>> [(r.name, round(r.density, 3)) for r in report.layers]
[('1', 0.1), ('3', 0.1), ('5', 1.0)]

Which layers: every ``nn.Linear`` (sub)module, filtered by ``include`` / ``exclude`` (glob patterns on the
qualified module name such as ``"encoder.*.linear1"``, compiled regular expressions, or module types).
Layers inside ``nn.MultiheadAttention`` are never replaced (attention reads their ``weight`` as a dense
matrix). With ``dense_last=True`` the model's last ``nn.Linear`` (in module order: the classifier) stays
dense. Densities: one number, a dict ``{name or glob: density}`` (first matching key wins), or a rule
``f(name, position, count) -> density`` such as :func:`later_denser`; each is rounded to the nearest
realisable fixed out-degree (``n_in * d_out / n_out`` an integer) that the family builds; a layer whose realised density is off by more
than a quarter (784 -> 300 realises 25%, 50%, 75% and 100% only) gets a ``UserWarning`` naming what it realises.
"""

from __future__ import annotations

import fnmatch
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Union

import numpy as np
import torch
from torch import nn

from ..topology import FAMILIES, Pattern, TopologyError, design, family_out_degrees
from .sparse_linear import SparseLinear

__all__ = ["LayerReport", "SparsifyReport", "later_denser", "select_linears", "sparsify"]

Selector = Union[str, "re.Pattern[str]", type]
DensityRule = Callable[[str, int, int], float]


@dataclass(frozen=True)
class LayerReport:
    """What happened to one selected ``nn.Linear`` (shapes as ``(n_out, n_in)``, like its weight).

    ``requested``: the density asked for; ``density``: the realised one (``edges / (n_in * n_out)``); ``d_out`` /
    ``d_in``: the out/in-degree (int) when every node has the same, else the mean (float: families such as
    "random" vary them); ``params_before`` / ``params_after``: trainable values (weights + bias); ``kept_dense``:
    why it stayed ``nn.Linear`` ("" when it became sparse).
    """

    name: str
    n_in: int
    n_out: int
    requested: float
    density: float
    d_out: int | float
    d_in: int | float
    edges: int
    params_before: int
    params_after: int
    kept_dense: str = ""


@dataclass(frozen=True)
class SparsifyReport:
    """The layers :func:`sparsify` considered and the whole model's parameter counts before and after."""

    layers: list[LayerReport]
    family: str
    seed: int
    model_params_before: int
    model_params_after: int
    options: dict = field(default_factory=dict)

    @property
    def sparse_layers(self) -> list[LayerReport]:
        return [r for r in self.layers if not r.kept_dense]

    def rows(self) -> list[dict]:
        """One dict per layer (for CSV / tables)."""
        return [dict(layer=r.name, shape=f"{r.n_out}x{r.n_in}", requested=r.requested, density=r.density,
                     d_out=r.d_out, d_in=r.d_in, edges=r.edges, params_before=r.params_before,
                     params_after=r.params_after, note=r.kept_dense) for r in self.layers]

    def to_markdown(self) -> str:
        """A Markdown table, one row per layer, then the model totals."""
        lines = ["| layer | shape (out x in) | requested | actual | d_out / d_in | edges | params before | params after |",
                 "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in self.layers:
            note = f" ({r.kept_dense})" if r.kept_dense else ""
            lines.append(f"| {r.name}{note} | {r.n_out}x{r.n_in} | {100 * r.requested:.3g}% | {100 * r.density:.3g}% "
                         f"| {_degree(r.d_out)} / {_degree(r.d_in)} | {r.edges:,} | {r.params_before:,} "
                         f"| {r.params_after:,} |")
        b, a = self.model_params_before, self.model_params_after
        lines.append(f"\nmodel parameters: {b:,} -> {a:,} ({100 * a / b:.3g}% kept, family {self.family}, seed {self.seed})")
        return "\n".join(lines)

    __str__ = to_markdown


def _degree(d: int | float) -> str:
    """A report's degree: the common one as is, a mean (degrees vary) as ``~12.3``."""
    return str(d) if isinstance(d, (int, np.integer)) else f"~{d:.3g}"


def _degrees(p: Pattern) -> tuple[int | float, int | float]:
    """``(d_out, d_in)`` of ``p``: the common degrees, or their means where nodes differ."""
    return (p.d_out if p.is_fixed_out_degree else p.edges / p.n_in,
            p.d_in if p.is_fixed_in_degree else p.edges / p.n_out)


def _warn_if_far(name: str, n_in: int, n_out: int, requested: float, realised: float, family: str,
                 options: dict) -> None:
    """A UserWarning when rounding to an out-degree the family builds moved a layer's density by more than a
    quarter."""
    if 0.8 <= realised / requested <= 1.25:
        return
    allowed = sorted({d / n_out for d in family_out_degrees(family, n_in, n_out, **options)})
    near = sorted(allowed, key=lambda d: abs(d - requested))[:4]
    warnings.warn(f"sparsify: layer {name!r} ({n_in} -> {n_out}, family {family!r}) gets density "
                  f"{100 * realised:.3g}% for the {100 * requested:.3g}% asked: a junction is designed from one "
                  f"out-degree d_out (n_in * d_out / n_out an integer, and what the family needs), and the "
                  f"densities nearest the request are {', '.join(f'{100 * d:.3g}%' for d in sorted(near))}",
                  UserWarning, stacklevel=3)


def later_denser(first: float, last: float) -> DensityRule:
    """A density rule for :func:`sparsify`: geometric from ``first`` (first sparsified layer) to ``last``
    (the last one), so junctions nearer the output are denser (seed 000: "rho_2 > rho_1 is better")."""
    for name, v in (("first", first), ("last", last)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= 1:
            raise ValueError(f"later_denser: {name}={v!r} must be a number in (0, 1]")

    def rule(name: str, position: int, count: int) -> float:
        t = position / (count - 1) if count > 1 else 1.0
        return float(first * (last / first) ** t)

    return rule


def _selectors(value, field_name: str) -> list[Selector]:
    items = [] if value is None else list(value) if isinstance(value, (list, tuple, set)) else [value]
    for s in items:
        if not isinstance(s, (str, re.Pattern, type)):
            raise ValueError(f"{field_name}: {s!r} is not allowed; give glob strings (e.g. 'encoder.*.linear1'), "
                             f"compiled regular expressions (re.compile(...)) or module types (nn.Linear)")
    return items


def _matches(name: str, module: nn.Module, selectors: list[Selector]) -> bool:
    for s in selectors:
        if isinstance(s, type) and isinstance(module, s):
            return True
        if isinstance(s, re.Pattern) and s.search(name):
            return True
        if isinstance(s, str) and fnmatch.fnmatchcase(name, s):
            return True
    return False


def _linears(model: nn.Module) -> list[tuple[list[str], nn.Linear]]:
    """Every distinct ``nn.Linear`` outside attention, with all the names it is reachable under."""
    inside_attention = {id(m) for a in model.modules() if isinstance(a, nn.MultiheadAttention) for m in a.modules()}
    found: dict[int, tuple[list[str], nn.Linear]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        if isinstance(m, nn.Linear) and id(m) not in inside_attention:
            found.setdefault(id(m), ([], m))[0].append(name)
    return list(found.values())


def select_linears(model: nn.Module, include=None, exclude=None) -> list[str]:
    """Names of the ``nn.Linear`` layers :func:`sparsify` would consider (before ``dense_last``)."""
    inc, exc = _selectors(include, "include"), _selectors(exclude, "exclude")
    return [names[0] for names, m in _linears(model)
            if (not inc or any(_matches(n, m, inc) for n in names)) and not any(_matches(n, m, exc) for n in names)]


def _check_density(v: object, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not 0 < float(v) <= 1:
        raise ValueError(f"density{where}={v!r} is not allowed: a density must be a number in (0, 1]")
    return float(v)


def _densities(density, names: list[str]) -> list[float]:
    if isinstance(density, Mapping):
        out = []
        for name in names:
            key = next((k for k in density if k == name or fnmatch.fnmatchcase(name, str(k))), None)
            if key is None:
                raise ValueError(f"density: layer {name!r} matches no key of {list(density)}; add it (or a glob "
                                 f"such as '*') or leave it out with exclude=")
            out.append(_check_density(density[key], f"[{key!r}]"))
        return out
    if callable(density):
        return [_check_density(density(n, i, len(names)), f" rule for {n!r}") for i, n in enumerate(names)]
    return [_check_density(density, "")] * len(names)


def _layer_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _no_fast_path(module: nn.Module, args):
    """A no-op forward pre-hook: ``nn.TransformerEncoderLayer``'s inference fast path reads ``linear1.weight``
    as a dense matrix; any hook on a submodule makes it take the regular path that calls the layers."""
    return None


def sparsify(
    model: nn.Module,
    density: float | Mapping[str, float] | DensityRule = 0.1,
    *,
    family: str = "structured",
    include: Selector | Iterable[Selector] | None = None,
    exclude: Selector | Iterable[Selector] | None = None,
    dense_last: bool = True,
    seed: int = 0,
    keep_weights: bool = False,
    **family_options,
) -> SparsifyReport:
    """Replace chosen ``nn.Linear`` layers of ``model`` (in place) by pre-defined sparse ``SparseLinear`` ones.

    Args:
        model: any ``nn.Module``; its other layers and their weights are left untouched.
        density: per layer fraction of kept connections in (0, 1]: one number, ``{name or glob: density}``,
            or a rule ``f(name, position, count)`` (e.g. :func:`later_denser`). Rounded to the nearest
            realisable fixed out-degree the family builds (:func:`~sparseforge.topology.family_out_degrees`);
            a layer that rounds to density 1 stays ``nn.Linear``.
        family: pattern family, a name in :data:`sparseforge.topology.FAMILIES` ("structured", "random",
            "clash_free", "grouped", "expander", "radix", ...); ``family_options`` go to its generator
            (e.g. ``z=`` for clash_free, ``group=`` for grouped).
        include, exclude: glob strings on qualified module names, compiled regexes, or module types.
        dense_last: keep the model's last ``nn.Linear`` (the classifier) dense even when selected.
        seed: layer ``i`` of the selection uses an independent stream derived from ``(seed, i)``.
        keep_weights: copy the dense weights on the pattern (``SparseLinear.from_dense``) instead of a fresh
            sparse initialisation (uniform ``+-1/sqrt(d_in)``, the default: pre-defined sparsity trains from
            scratch).

    Returns: a :class:`SparsifyReport` (``print(report)`` shows the table).

    Raises ``ValueError`` (one line naming the argument, the value and what is allowed) for a density
    outside (0, 1], an unknown family, or a selection that matches no layer.
    """
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not a known pattern family; choose one of {sorted(FAMILIES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed={seed!r} must be an integer")
    all_linears = _linears(model)
    chosen = set(select_linears(model, include, exclude))
    candidates = [(names, m) for names, m in all_linears if names[0] in chosen]
    if isinstance(model, nn.Linear):
        raise ValueError("model is itself an nn.Linear, which cannot be replaced in place; wrap it "
                         "(nn.Sequential(layer)) or build sparseforge.nn.SparseLinear directly")
    if not candidates:
        found = [names[0] for names, _ in all_linears]
        raise ValueError(f"include={include!r}, exclude={exclude!r} matched no nn.Linear layer; the model's "
                         f"nn.Linear layers (outside attention) are {found or 'none'}")
    last = all_linears[-1][1] if dense_last else None
    params_before = sum(p.numel() for p in model.parameters())
    targets = [(names, m) for names, m in candidates if m is not last]
    if not targets:
        raise ValueError(f"include={include!r} matched only the last layer {candidates[0][0][0]!r}, which "
                         f"dense_last=True keeps dense; pass dense_last=False to sparsify it")
    requested = _densities(density, [names[0] for names, _ in targets])
    patterns: list[Pattern] = []  # every pattern first: a bad layer leaves the model unchanged
    for i, ((names, layer), rho) in enumerate(zip(targets, requested)):
        try:
            topo = design((layer.in_features, layer.out_features), density=rho, family=family,
                          seed=_layer_seed(seed, i), **family_options)
        except TopologyError as e:
            raise TopologyError(f"layer {names[0]!r} ({layer.in_features} -> {layer.out_features}), family "
                                f"{family!r}: {e}") from None
        patterns.append(topo.patterns[0])
        _warn_if_far(names[0], layer.in_features, layer.out_features, rho, topo.patterns[0].density, family,
                     family_options)
    in_encoder = {id(m) for blk in model.modules() if isinstance(blk, nn.TransformerEncoderLayer) for m in blk.modules()}
    reports = []
    for i, ((names, layer), rho, pattern) in enumerate(zip(targets, requested, patterns)):
        n_in, n_out = layer.in_features, layer.out_features
        dense_params = n_in * n_out + (n_out if layer.bias is not None else 0)
        if pattern.density == 1.0:
            reports.append(LayerReport(names[0], n_in, n_out, rho, 1.0, n_out, n_in, n_in * n_out, dense_params,
                                       dense_params, "rounds to dense"))
            continue
        w = layer.weight
        if keep_weights:
            new = SparseLinear.from_dense(w.detach(), pattern, None if layer.bias is None else layer.bias.detach())
        else:
            new = SparseLinear(pattern, bias=layer.bias is not None, device=w.device, dtype=w.dtype)
            new.reset_parameters(generator=torch.Generator().manual_seed(_layer_seed(seed, i)))
        new.train(layer.training)
        if id(layer) in in_encoder:
            new.register_forward_pre_hook(_no_fast_path)
        for name in names:
            model.set_submodule(name, new)
        reports.append(LayerReport(names[0], n_in, n_out, rho, pattern.density, *_degrees(pattern),
                                   pattern.edges, dense_params, new.num_parameters()))
    if last is not None and any(m is last for _, m in candidates):
        n_in, n_out = last.in_features, last.out_features
        p = n_in * n_out + (n_out if last.bias is not None else 0)
        reports.append(LayerReport(all_linears[-1][0][0], n_in, n_out, 1.0, 1.0, n_out, n_in, n_in * n_out, p, p,
                                   "last layer"))
    return SparsifyReport(reports, family, int(seed), params_before, sum(p.numel() for p in model.parameters()),
                          dict(family_options))

