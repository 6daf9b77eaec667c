"""Studies of pre-defined sparsity: the "trends and guidelines" of seed 000 and the family comparison of 004.

One generic runner, five recipes (``recipes/study_*.yaml``):

* a **recipe** names a study, the claim it tests, an ``analysis`` (how rows become a conclusion) and one
  or more **settings** (``tiny`` for CI, ``medium``, ``full``);
* a setting is a base ``model`` / ``data`` / ``train`` section, a list of ``seeds`` and a ``sweep`` of
  blocks; each block overrides the base and may carry a ``grid`` (dotted paths -> lists of values) whose
  Cartesian product gives its configurations. Every configuration is validated up front
  (:class:`StudyConfig`: unknown keys refused, errors name the field, the value and what is allowed);
* every (configuration, seed) is a **sub-run** ``runs/<label>-<hash>/seed<s>/`` with its training
  checkpoint (``train/``) and a ``result.json`` written last: a finished sub-run is reused, a crashed one
  resumes from its last epoch, and a configuration that changes gets a new hash (never a stale result);
* rows are **aggregated** over seeds (mean, min, max, sample std), the study's analysis computes its
  conclusion from the numbers (e.g. "rho_2 > rho_1 better in k of n comparisons"), and the run directory
  gets ``runs.csv`` (one row per sub-run), ``table.csv`` (one row per configuration), the analysis'
  own tables, PNG figures, ``summary.json`` and ``report.md``.

What a seed controls: the network's pattern (``design(..., seed=s)``), the weight initialisation
(``torch.manual_seed(s)``) and the shuffling (``TrainConfig.seed = s``). The data split is fixed by
``data.seed`` so that every seed sees the same samples.

Model specification (``model:`` in a recipe; exactly one degree source, none = fully connected):

* ``net``: layer sizes; ``auto`` as first / last entry = the data's number of features / classes;
* ``density`` (one for all junctions, or one per junction), ``fan_out`` (per junction),
* ``rho_net`` (overall density; degrees by :func:`~sparseforge.topology.allocate_density`, which keeps
  the last junction dense when ``dense_last``), optionally with ``fixed: {junction: density}``: those
  junctions at that density, the rest of the edge budget spread evenly over the others (study 1),
* ``edges_like``: the edge budget of the fully connected net of these sizes, allocated as ``rho_net``
  (equal parameter counts for "large sparse vs small dense", study 2); with ``round_down`` (also for
  ``rho_net``) degrees are rounded down so that no net has more weights than the target,
* ``radices``: the degrees of the RadiX-Net with these radices on ``net`` (``net`` must be a multiple of
  ``N'`` = product of the first radix list); with ``family: radix`` the RadiX-Net itself (study 5).

``family`` is any of :data:`sparseforge.topology.FAMILIES`; ``clash_free`` takes ``z`` (one, one per
junction, or ``auto``: per junction the largest valid ``z <= z_max`` with ``z <= N / 2``, i.e. at least two
addresses per bank) and the options ``interleaver`` / ``dither``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Sequence, Union

import torch
from pydantic import Field, field_validator, model_validator

from .. import io
from ..config import ConfigError, TrainSpec, _Strict, parse, read_mapping
from ..data import DATASETS, DataSplits, load_dataset
from ..data.transforms import pca_reduce, top_variance_features
from ..nn import SparseMLP
from ..topology import (FAMILIES, NetworkTopology, TopologyError, allocate_density, design, design_clash_free,
                        nearest_out_degree, radix_net, resolve_out_degrees, valid_out_degrees)
from ..topology.clash_free import valid_parallelism
from ..train import Callback, TrainConfig, fit
from ..runs import RunStore
from ..runs.plots import save_figure, subplots

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
PREFIX = "study_"
METRICS = ("test_acc", "val_acc", "val_loss", "train_acc", "train_time_s")

__all__ = [
    "AnalysisResult", "Planned", "Recipe", "StudyConfig", "StudyResult", "aggregate", "build_topology",
    "expand", "list_studies", "load_recipe", "resolve_recipe", "run_study", "seeds_for",
]


# =========================================================================================== recipe models
class StudyModel(_Strict):
    """Which pre-defined sparse MLP to train (see the module docstring for the degree sources)."""

    net: list[Union[int, Literal["auto"]]] = Field(default=["auto", 112, "auto"], min_length=2)
    family: str = "structured"
    density: Union[float, list[float], None] = None
    fan_out: list[int] | None = None
    rho_net: float | None = Field(default=None, gt=0, le=1)
    fixed: dict[int, float] = Field(default_factory=dict, description="with rho_net: {junction (1-based): density}")
    dense_last: bool = True
    round_down: bool = Field(default=False, description="with rho_net / edges_like: never more weights than the "
                             "target (degrees rounded down instead of to the nearest)")
    edges_like: list[int] | None = Field(default=None, min_length=2)
    radices: list[list[int]] | None = None
    z: Union[int, list[int], Literal["auto"]] = "auto"
    z_max: int = Field(default=128, ge=1)
    options: dict[str, Any] = Field(default_factory=dict, description="family options, e.g. {interleaver: 2}")

    @field_validator("family")
    @classmethod
    def _family(cls, v: str) -> str:
        if v not in FAMILIES:
            raise ValueError(f"family {v!r} is not known; allowed: {', '.join(sorted(FAMILIES))}")
        return v

    @field_validator("net")
    @classmethod
    def _net(cls, v: list) -> list:
        for i, n in enumerate(v):
            if n == "auto" and 0 < i < len(v) - 1:
                raise ValueError(f"net[{i}]='auto': only the input (first) and output (last) sizes can be auto")
            if n != "auto" and n < 1:
                raise ValueError(f"net[{i}]={n}: layer sizes must be positive integers or 'auto'")
        return v

    @field_validator("density")
    @classmethod
    def _density(cls, v):
        for d in [v] if isinstance(v, (int, float)) else (v or []):
            if not 0 < d <= 1:
                raise ValueError(f"density {d} must be in (0, 1]")
        return v

    @field_validator("fixed")
    @classmethod
    def _fixed(cls, v: dict[int, float]) -> dict[int, float]:
        for j, d in v.items():
            if j < 1:
                raise ValueError(f"fixed: junction {j} must be >= 1 (junctions are numbered from 1)")
            if not 0 < d <= 1:
                raise ValueError(f"fixed: junction {j} density {d} must be in (0, 1]")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> StudyModel:
        given = [k for k in ("density", "fan_out", "rho_net", "edges_like", "radices") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of density, fan_out, rho_net, edges_like, radices; got {given}")
        if self.z != "auto" and self.family != "clash_free":
            raise ValueError(f"z={self.z} is the parallelism of family clash_free; family is {self.family!r}")
        if self.round_down and self.rho_net is None and self.edges_like is None:
            raise ValueError("round_down applies to rho_net or edges_like; give one of them")
        if self.fixed and self.rho_net is None:
            raise ValueError("fixed junction densities need rho_net (the overall density to reach)")
        if self.family == "radix" and self.radices is None and any(k in self.options for k in ("radices", "widths")):
            raise ValueError("give the radix system as model.radices, not in options")
        return self


class StudyData(_Strict):
    """A dataset, optionally reduced: ``top_variance`` features kept first, then ``pca`` components."""

    name: str = "mnist"
    label: str | None = Field(default=None, description="name in tables and plots (default: derived)")
    root: Path | None = None
    val_size: Union[int, float, None] = None
    limit: int | None = Field(default=None, gt=0)
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict, description="loader options, e.g. {variant: difficult}")
    top_variance: int | None = Field(default=None, gt=0, description="keep the k highest-variance features")
    pca: int | None = Field(default=None, gt=0, description="project onto the first k principal components")
    whiten: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        key = v.strip().lower().replace("_", "-")
        if key not in DATASETS:
            raise ValueError(f"dataset {v!r} is not known; allowed: {', '.join(sorted(DATASETS))}")
        return key

    def display(self) -> str:
        if self.label:
            return self.label
        parts = [self.name] + [str(self.options[k]) for k in ("variant",) if k in self.options]
        if self.top_variance:
            parts.append(f"top{self.top_variance}")
        if self.pca:
            parts.append(f"pca{self.pca}")
        return "-".join(parts)


class StudyTrain(TrainSpec):
    """:class:`~sparseforge.config.TrainSpec` plus ``l2``: the seeds' ``lambda`` in ``C0 + lambda ||w||^2``
    (sets ``weight_decay = 2 lambda``). ``seed`` is not allowed: the study's seeds set it."""

    l2: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _checks(self) -> StudyTrain:
        if "seed" in self.model_fields_set:
            raise ValueError("train.seed is set by the study's seeds (setting.seeds / --seeds); remove it")
        if self.l2 is not None and "weight_decay" in self.model_fields_set:
            raise ValueError("give l2 (lambda) or weight_decay (= 2 lambda), not both")
        return self

    def to_config(self, seed: int) -> TrainConfig:
        d = self.model_dump(exclude={"l2", "seed"})
        if self.l2 is not None:
            d["weight_decay"] = 2 * self.l2
        return TrainConfig(**d, seed=seed)


class StudyConfig(_Strict):
    """One fully resolved configuration (what one sub-run trains, per seed)."""

    model: StudyModel = StudyModel()
    data: StudyData = StudyData()
    train: StudyTrain = StudyTrain()


SECTIONS = ("model", "data", "train")


class Block(_Strict):
    """Part of a sweep: overrides of the base sections, and a grid of dotted paths -> values."""

    group: str | None = Field(default=None, description="curve / group name in tables and plots")
    label: str | None = Field(default=None, description="label template, e.g. '{group} {family}': grid values "
                              "by their path without the section ('fixed.2' as fixed_2), and group")
    model: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("grid")
    @classmethod
    def _paths(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in v.items():
            head = path.split(".")[0]
            if head not in SECTIONS or "." not in path:
                raise ValueError(f"grid path {path!r} must start with one of {', '.join(s + '.' for s in SECTIONS)}"
                                 " (e.g. model.rho_net)")
            if not values:
                raise ValueError(f"grid path {path!r} has no values")
            if path == "train.seed":
                raise ValueError(f"grid path {path!r}: seeds are the setting's seeds, not a grid axis")
        return v


class Setting(_Strict):
    seeds: list[int] = Field(default=[0, 1, 2], min_length=1)
    threads: int = Field(default=1, ge=1, description="torch intra-op threads")
    note: str = Field(default="", description="free text for the report (e.g. what it took, what it gave)")
    model: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    sweep: list[Block] = Field(min_length=1)
    analysis: dict[str, Any] = Field(default_factory=dict, description="overrides of the recipe's analysis options")


class JunctionAnalysis(_Strict):
    """Study 1: at equal rho_net, is a denser later junction better?"""

    kind: Literal["junction_densities"]
    early: int = Field(default=1, ge=1)
    late: int = Field(default=2, ge=1)
    tolerance: float = Field(default=0.1, ge=0, description="max relative difference of the realised rho_net")


class LargeSparseAnalysis(_Strict):
    """Study 2: equal weights, growing hidden width (group = one weight budget)."""

    kind: Literal["large_sparse"]


class RedundancyAnalysis(_Strict):
    """Study 3: accuracy drop from the group's FC net; ``pairs`` = [more redundant, less redundant] groups."""

    kind: Literal["redundancy"]
    pairs: list[tuple[str, str]] = Field(min_length=1)


class RegularizationAnalysis(_Strict):
    """Study 4: per density (group), the L2 coefficient with the best mean validation accuracy."""

    kind: Literal["regularization"]


class FamiliesAnalysis(_Strict):
    """Study 5: families at equal junction densities (group = one density point)."""

    kind: Literal["families"]
    topology_metrics: bool = Field(default=True, description="connectivity / symmetry / spectral gap per sub-run")


AnalysisSpec = Annotated[
    Union[JunctionAnalysis, LargeSparseAnalysis, RedundancyAnalysis, RegularizationAnalysis, FamiliesAnalysis],
    Field(discriminator="kind"),
]


class Recipe(_Strict):
    """A ``recipes/study_*.yaml`` file."""

    name: str
    title: str
    claim: str = Field(description="the seed's statement under test")
    source: str = ""
    analysis: AnalysisSpec
    settings: dict[str, Setting] = Field(min_length=1)


class _AnalysisOnly(_Strict):
    analysis: AnalysisSpec


def effective_analysis(recipe: Recipe, setting: str, where: str = ""):
    """The recipe's analysis with the setting's ``analysis`` overrides (e.g. its own group pairs)."""
    over = recipe.settings[setting].analysis
    if not over:
        return recipe.analysis
    merged = _merge(recipe.analysis.model_dump(mode="json"), over)
    return parse(_AnalysisOnly, {"analysis": merged}, where=f"{where}settings.{setting}.").analysis


# =========================================================================================== loading
def list_studies(directory: Path = RECIPES) -> list[dict]:
    """The packaged studies: name, file, title, claim and settings (with their sub-run counts)."""
    out = []
    for path in sorted(directory.glob(f"{PREFIX}*.yaml")):
        recipe = load_recipe(path)
        settings = {}
        for s in recipe.settings:
            plan = expand(recipe, s)
            settings[s] = len(plan) * len(recipe.settings[s].seeds)
        out.append(dict(name=path.stem[len(PREFIX):], path=path, title=recipe.title, claim=recipe.claim,
                        settings=settings))
    return out


def resolve_recipe(name: str | Path) -> Path:
    """A YAML path, or a packaged study by name (``junction_densities`` or ``study_junction_densities``)."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    for cand in (RECIPES / f"{PREFIX}{p.name}.yaml", RECIPES / f"{p.name}.yaml", RECIPES / p.name):
        if cand.is_file() and cand.name.startswith(PREFIX):
            return cand
    known = ", ".join(sorted(q.stem[len(PREFIX):] for q in RECIPES.glob(f"{PREFIX}*.yaml")))
    raise ConfigError(f"study {str(name)!r} is not known; allowed: {known} (or a path to a study YAML file)")


def load_recipe(name: str | Path) -> Recipe:
    """Read and validate a recipe, including every configuration of every setting."""
    path = resolve_recipe(name)
    data = read_mapping(path)
    recipe = parse(Recipe, data, where=f"{path.name}: ")
    for s in recipe.settings:
        expand(recipe, s, where=f"{path.name}: ")
    return recipe


def seeds_for(setting: Setting, n: int | None) -> list[int]:
    """The setting's seeds, or its first ``n`` (extended by consecutive integers past the last)."""
    seeds = list(setting.seeds)
    if n is None:
        return seeds
    if n < 1:
        raise ConfigError(f"--seeds: {n} must be >= 1")
    while len(seeds) < n:
        seeds.append(max(seeds) + 1)
    return seeds[:n]


# =========================================================================================== expansion
@dataclass(frozen=True)
class Planned:
    """One configuration of a setting: ``label`` (unique), ``group``, the validated spec and its ``key``
    (directory name: label slug + hash of the spec, so a changed configuration never reuses results)."""

    label: str
    group: str
    spec: StudyConfig
    key: str
    assignments: tuple[tuple[str, Any], ...] = ()


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _set_path(d: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            d[p] = nxt
        d = nxt
    d[parts[-1]] = value


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _key(label: str, spec: StudyConfig) -> str:
    # only what differs from the defaults: a new option (with its default) keeps earlier results valid
    blob = json.dumps(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
    digest = hashlib.sha1(blob.encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9.=+_-]+", "_", label).strip("_")[:60] or "config"
    return f"{slug}-{digest}"


def expand(recipe: Recipe, setting: str, where: str = "") -> list[Planned]:
    """Every configuration of ``setting``, validated, in recipe order.

    Raises :class:`ConfigError` naming the setting, the block, the configuration and the field.
    """
    if setting not in recipe.settings:
        raise ConfigError(f"{where}--setting {setting!r} is not in study {recipe.name!r}; "
                          f"allowed: {', '.join(recipe.settings)}")
    s = recipe.settings[setting]
    base = {sec: getattr(s, sec) for sec in SECTIONS}
    plan: list[Planned] = []
    seen: dict[str, str] = {}
    for b, block in enumerate(s.sweep):
        merged = _merge(base, {sec: getattr(block, sec) for sec in SECTIONS})
        paths = list(block.grid)
        for values in itertools.product(*(block.grid[p] for p in paths)):
            cfg = json.loads(json.dumps(merged))  # deep copy
            for p, v in zip(paths, values):
                _set_path(cfg, p, v)
            assign = tuple((p.split(".", 1)[1], v) for p, v in zip(paths, values))
            text = ", ".join(f"{k}={_fmt(v)}" for k, v in assign)
            group = block.group or (f"block {b + 1}" if len(s.sweep) > 1 else "all")
            if block.label:
                names = {k.replace(".", "_"): v for k, v in assign} | {"group": group}
                try:
                    label = block.label.format(**names)
                except (KeyError, IndexError, ValueError, AttributeError) as e:
                    raise ConfigError(f"{where}settings.{setting}.sweep[{b}].label: template {block.label!r} "
                                      f"fails ({type(e).__name__}: {e}); names allowed: {', '.join(names)}") from None
            else:
                label = f"{block.group}: {text}" if block.group and text else (block.group or text or f"config {len(plan) + 1}")
            at = f"{where}settings.{setting}.sweep[{b}] ({label}): "
            spec = parse(StudyConfig, cfg, where=at)
            _check_static(spec, recipe, at)
            key = _key(label, spec)
            if label in seen:
                raise ConfigError(f"{at}two configurations are labelled {label!r}; give the blocks distinct groups")
            digest = key.rsplit("-", 1)[1]
            if digest in seen.values():
                other = next(k for k, v in seen.items() if v == digest)
                raise ConfigError(f"{at}configuration {label!r} is identical to {other!r}")
            seen[label] = digest
            plan.append(Planned(label, group, spec, key, assign))
    _check_analysis(effective_analysis(recipe, setting, where), plan, f"{where}settings.{setting}: ")
    return plan


def _check_static(spec: StudyConfig, recipe: Recipe, where: str) -> None:
    """Checks that need no data: degrees resolve when the sizes are known."""
    m = spec.model
    if all(n != "auto" for n in m.net):
        try:
            resolve_fan_out(m, tuple(int(n) for n in m.net))
        except TopologyError as e:
            raise ConfigError(f"{where}model: {e}") from None


def _check_analysis(a, plan: list[Planned], where: str) -> None:
    groups = list(dict.fromkeys(p.group for p in plan))
    if isinstance(a, RedundancyAnalysis):
        for i, (more, less) in enumerate(a.pairs):
            for g in (more, less):
                if g not in groups:
                    raise ConfigError(f"{where}analysis.pairs[{i}]: group {g!r} is not in this setting; "
                                      f"allowed: {', '.join(groups)}")
    if isinstance(a, JunctionAnalysis):
        for p in plan:
            n_j = len(p.spec.model.net) - 1
            for name, j in (("early", a.early), ("late", a.late)):
                if j > n_j:
                    raise ConfigError(f"{where}analysis.{name}={j}: {p.label!r} has only {n_j} junctions")


# =========================================================================================== topology
def resolve_sizes(model: StudyModel, n_features: int, n_classes: int) -> tuple[int, ...]:
    """``net`` with ``auto`` replaced by the data's feature / class counts (explicit sizes are checked)."""
    sizes = [n_features if (n == "auto" and i == 0) else n_classes if n == "auto" else int(n)
             for i, n in enumerate(model.net)]
    if sizes[0] != n_features:
        raise ConfigError(f"model.net[0]={sizes[0]}: the data has {n_features} input features (use 'auto')")
    if sizes[-1] != n_classes:
        raise ConfigError(f"model.net[-1]={sizes[-1]}: the data has {n_classes} classes (use 'auto')")
    return tuple(sizes)


def _fc(sizes: Sequence[int]) -> list[int]:
    return [a * b for a, b in zip(sizes[:-1], sizes[1:])]


def _solve_fixed(sizes: tuple[int, ...], rho_net: float, fixed: dict[int, float]) -> tuple[int, ...]:
    """Out-degrees with junctions ``fixed`` at their densities and the rest of the budget spread evenly."""
    n_j = len(sizes) - 1
    fc = _fc(sizes)
    d: list[int | None] = [None] * n_j
    for j, dens in fixed.items():
        if not 1 <= j <= n_j:
            raise TopologyError(f"fixed: junction {j} does not exist; N_net={list(sizes)} has junctions 1..{n_j}")
        d[j - 1] = nearest_out_degree(sizes[j - 1], sizes[j], dens)
    free = [i for i in range(n_j) if d[i] is None]
    if not free:
        raise TopologyError(f"fixed={fixed}: every junction is fixed; leave at least one free to reach rho_net")
    fixed_edges = sum(sizes[i] * d[i] for i in range(n_j) if d[i] is not None)
    free_fc = sum(fc[i] for i in free)
    rest = (rho_net * sum(fc) - fixed_edges) / free_fc
    lo = (fixed_edges + sum(sizes[i] * valid_out_degrees(sizes[i], sizes[i + 1])[0] for i in free)) / sum(fc)
    hi = (fixed_edges + free_fc) / sum(fc)
    if rest <= 0 or rest > 1 + 1e-9:
        raise TopologyError(
            f"rho_net={rho_net:g} with fixed={fixed}: the free junctions would need density {rest:.4g}; "
            f"with these fixed densities rho_net must be in [{lo:.4g}, {hi:.4g}]"
        )
    for i in free:
        d[i] = nearest_out_degree(sizes[i], sizes[i + 1], min(rest, 1.0))
    return tuple(int(v) for v in d)  # type: ignore[arg-type]


def _radix_widths(model: StudyModel, sizes: tuple[int, ...]) -> tuple[int, list[int]]:
    radices = model.radices or []
    if not radices or any(not lst for lst in radices):
        raise TopologyError(f"radices={radices}: give a non-empty list of non-empty radix lists, e.g. [[2, 5]]")
    n_prime = math.prod(radices[0])
    n_radices = sum(len(lst) for lst in radices)
    if n_radices != len(sizes) - 1:
        raise TopologyError(f"radices={radices} have {n_radices} radices (junctions) but N_net={list(sizes)} "
                            f"has {len(sizes) - 1} junctions")
    bad = [n for n in sizes if n % n_prime]
    if bad:
        raise TopologyError(f"radices={radices}: every layer size must be a multiple of N'={n_prime} "
                            f"(product of the first list); N_net={list(sizes)} has {bad}")
    return n_prime, [n // n_prime for n in sizes]


def _round_down(sizes: tuple[int, ...], d_out: tuple[int, ...], budget: float) -> tuple[int, ...]:
    """Lower out-degrees (earlier junctions first, one realisable step at a time) until the edges fit
    ``budget``; the last junction only when the others are at their smallest degree."""
    d = list(d_out)
    order = list(range(len(d) - 1)) + [len(d) - 1]
    edges = lambda: sum(n * k for n, k in zip(sizes[:-1], d))  # noqa: E731
    while edges() > budget + 1e-9:
        for i in order:
            ok = [v for v in valid_out_degrees(sizes[i], sizes[i + 1]) if v < d[i]]
            if ok:
                d[i] = ok[-1]
                break
        else:
            raise TopologyError(f"N_net={list(sizes)}: even the smallest degrees have {edges()} weights, more than "
                                f"the budget {budget:.0f}")
    return tuple(d)


def resolve_fan_out(model: StudyModel, sizes: tuple[int, ...]) -> tuple[int, ...]:
    """Per-junction out-degrees of ``model`` on ``sizes`` (FC when no degree source is given)."""
    if model.fan_out is not None:
        return resolve_out_degrees(sizes, fan_out=model.fan_out)
    if model.density is not None:
        return resolve_out_degrees(sizes, density=model.density)
    if model.rho_net is not None:
        if model.fixed:
            d = _solve_fixed(sizes, model.rho_net, model.fixed)
        else:
            d = allocate_density(sizes, model.rho_net, dense_last=model.dense_last)
        return _round_down(sizes, d, model.rho_net * sum(_fc(sizes))) if model.round_down else d
    if model.edges_like is not None:
        budget = sum(_fc(model.edges_like))
        rho = budget / sum(_fc(sizes))
        if rho > 1:
            raise TopologyError(f"edges_like={model.edges_like} has {budget} weights, more than the FC net "
                                f"N_net={list(sizes)} ({sum(_fc(sizes))}); widen the net or shrink the budget")
        d = allocate_density(sizes, rho, dense_last=model.dense_last)
        return _round_down(sizes, d, budget) if model.round_down else d
    if model.radices is not None:
        from ..topology.radix import radix_sizes

        n_prime, widths = _radix_widths(model, sizes)
        radix_sizes(model.radices, widths)  # validates the system (list products)
        radices = [r for lst in model.radices for r in lst]
        return tuple(r * widths[i + 1] for i, r in enumerate(radices))
    return tuple(sizes[1:])


def target_density(model: StudyModel, sizes: tuple[int, ...], realised: float) -> float:
    """The overall density the spec asks for (the realised one where it gives degrees directly)."""
    if model.rho_net is not None:
        return float(model.rho_net)
    if isinstance(model.density, (int, float)):
        return float(model.density)
    if model.edges_like is not None:
        return sum(_fc(model.edges_like)) / sum(_fc(sizes))
    if model.density is None and model.fan_out is None and model.radices is None:
        return 1.0
    return realised


def _auto_z(n_in: int, d_in: int, z_max: int) -> int:
    """The largest valid parallelism ``z <= z_max`` whose banks hold at least 2 addresses (``z <= n_in / 2``:
    with ``z = n_in`` every cycle would read the left layer in order and the pattern degenerates into blocks)."""
    ok = [z for z in valid_parallelism(n_in, d_in) if z <= z_max and 2 * z <= n_in]
    return max(ok) if ok else 1


def build_topology(model: StudyModel, sizes: tuple[int, ...], seed: int) -> tuple[NetworkTopology, dict]:
    """The network of ``model`` on ``sizes`` with pattern seed ``seed``, and extra facts for the row
    (``z`` per junction for clash-free). Raises :class:`TopologyError`."""
    fan_out = resolve_fan_out(model, sizes)
    try:
        return _build(model, sizes, fan_out, seed)
    except TypeError as e:  # an option the family does not take
        raise TopologyError(f"family {model.family!r} with options {model.options}: {e}") from None


def _build(model: StudyModel, sizes: tuple[int, ...], fan_out: tuple[int, ...], seed: int) -> tuple[NetworkTopology, dict]:
    info: dict = {}
    if model.family == "radix" and model.radices is not None:
        _, widths = _radix_widths(model, sizes)
        topo = radix_net(model.radices, widths, **model.options)
    elif model.family == "clash_free":
        d_in = [n * d // m for n, m, d in zip(sizes[:-1], sizes[1:], fan_out)]
        if model.z == "auto":
            zs = [_auto_z(n, di, model.z_max) for n, di in zip(sizes[:-1], d_in)]
        else:
            zs = [model.z] * len(fan_out) if isinstance(model.z, int) else list(model.z)
        topo = design_clash_free(sizes, z=zs, fan_out=fan_out, seed=seed, **model.options)
        info["z"] = zs
    else:
        topo = design(sizes, fan_out=fan_out, family=model.family, seed=seed, **model.options)
    if tuple(topo.sizes) != tuple(sizes):  # pragma: no cover - radix_net sizes are checked above
        raise TopologyError(f"built sizes {topo.sizes} differ from N_net={sizes}")
    return topo, info


def topology_metrics(topo: NetworkTopology) -> dict:
    """Connectivity facts for the families study: path connectivity and symmetry, spectral gaps, scatter."""
    from ..topology.analysis import summarize

    s = summarize(topo)
    return dict(
        connectivity=s["paths"]["connectivity"],
        path_cv=s["paths"]["cv"] if s["paths"]["cv"] is not None else float("nan"),
        min_spectral_gap=s["min_spectral_gap"],
        min_scatter=s["scatter"]["min"],
    )


# =========================================================================================== data
def load_study_data(spec: StudyData) -> DataSplits:
    """The dataset of ``spec``, reduced as it says (top-variance features first, then PCA)."""
    try:
        d = load_dataset(spec.name, root=spec.root, val_size=spec.val_size, seed=spec.seed, limit=spec.limit,
                         **spec.options)
        if spec.top_variance:
            d = top_variance_features(d, spec.top_variance)
        if spec.pca:
            d = pca_reduce(d, spec.pca, whiten=spec.whiten)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"data ({spec.display()}): {e}") from None
    return d


# =========================================================================================== runner
@dataclass
class AnalysisResult:
    """What a study's analysis produced: conclusion sentences, a machine-readable verdict, extra tables
    (name -> rows, each written as ``<name>.csv`` and shown in the report) and figure file names."""

    conclusions: list[str]
    verdict: dict
    tables: dict[str, list[dict]] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    columns: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


@dataclass
class StudyResult:
    recipe: Recipe
    setting: str
    seeds: list[int]
    rows: list[dict]
    table: list[dict]
    analysis: AnalysisResult
    trained: int
    reused: int
    wall_s: float
    run_dir: Path


Notify = Callable[[dict], None]


def _row(p: Planned, seed: int, data: DataSplits, topo: NetworkTopology, info: dict, model: SparseMLP,
         state, train_cfg: TrainConfig, elapsed: float) -> dict:
    sizes = tuple(topo.sizes)
    rho = topo.rho_net
    hist = state.history
    row: dict = dict(
        label=p.label, group=p.group, key=p.key, seed=seed,
        dataset=p.spec.data.display(), n_features=sizes[0], n_classes=data.n_classes,
        net="-".join(map(str, sizes)), hidden=sizes[1] if len(sizes) > 2 else 0,
        family="fc" if rho == 1 else p.spec.model.family,
        target_rho_net=round(target_density(p.spec.model, sizes, rho), 10), rho_net=rho,
    )
    for i, d in enumerate(topo.densities):
        row[f"rho_{i + 1}"] = d
    row.update(
        fan_out=" ".join(str(int(pt.edges // pt.n_in)) if pt.edges % pt.n_in == 0 else f"{pt.edges / pt.n_in:.2f}"
                         for pt in topo.patterns),
        edges=topo.edges, params=model.num_parameters(), flops_per_sample=model.flops_per_sample(),
        l2=train_cfg.weight_decay / 2, weight_decay=train_cfg.weight_decay, epochs=len(hist),
        train_acc=hist[-1]["train_acc"], val_acc=hist[-1]["val_acc"], val_loss=hist[-1]["val_loss"],
        test_acc=state.metrics["test_acc"], test_loss=state.metrics["test_loss"],
        train_time_s=sum(h["epoch_time_s"] for h in hist), wall_s=elapsed,
    )
    if "z" in info:
        row["z"] = " ".join(map(str, info["z"]))
    for k, v in p.assignments:
        row.setdefault(f"set:{k}", _fmt(v))
    return row


def run_study(
    recipe: Recipe,
    setting: str,
    run_dir: str | Path,
    *,
    seeds: int | None = None,
    notify: Notify | None = None,
    callbacks_for: Callable[[str], Sequence[Callback]] = lambda label: (),
    overwrite: bool = False,
) -> StudyResult:
    """Run (or resume) every sub-run of ``setting``, then aggregate, analyse and write the outputs.

    Args:
        recipe: a validated recipe (:func:`load_recipe`).
        setting: one of ``recipe.settings``.
        run_dir: where everything goes; finished sub-runs found there are reused, partial ones resumed. A
            :class:`~sparseforge.runs.RunStore`: a study of another recipe or setting there is refused naming
            the fields, unless ``overwrite`` (then it is cleared); more seeds may be added.
        seeds: use this many seeds instead of the setting's list (:func:`seeds_for`).
        notify: called after every sub-run with ``index``, ``total``, ``label``, ``seed``, ``reused``, ``row``.
        callbacks_for: training callbacks per sub-run (e.g. progress bars), given its display label.

    Returns a :class:`StudyResult`; writes ``runs.csv``, ``table.csv``, the analysis' CSV tables, its
    figures, ``summary.json`` and ``report.md`` in ``run_dir``.
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    plan = expand(recipe, setting)
    s = recipe.settings[setting]
    seed_list = seeds_for(s, seeds)
    # what the sub-runs depend on; seeds, notes and analysis options only add runs or change the outputs
    settings = {"study": recipe.name, "setting": setting,
                "config": s.model_dump(mode="json", exclude={"seeds", "threads", "note", "analysis"})}
    with RunStore(run_dir, settings, command="study", overwrite=overwrite):
        io.write_json(run_dir / "study.json", dict(
            recipe=recipe.model_dump(mode="json"), setting=setting, seeds=seed_list,
            configs=[dict(label=p.label, group=p.group, key=p.key, spec=p.spec.model_dump(mode="json")) for p in plan],
        ))
        cache: dict[str, DataSplits] = {}
        rows: list[dict] = []
        trained = reused = 0
        total = len(plan) * len(seed_list)
        spec = effective_analysis(recipe, setting)
        want_metrics = isinstance(spec, FamiliesAnalysis) and spec.topology_metrics
        index = 0
        for p in plan:
            for seed in seed_list:
                index += 1
                sub = run_dir / "runs" / p.key / f"seed{seed}"
                result = sub / "result.json"
                if result.exists():
                    saved = json.loads(result.read_text())
                    if saved.get("key") == p.key and saved.get("seed") == seed:
                        row = dict(saved["row"], label=p.label, group=p.group)
                        rows.append(row)
                        reused += 1
                        if notify:
                            notify(dict(index=index, total=total, label=p.label, seed=seed, reused=True, row=row))
                        continue
                dkey = json.dumps(p.spec.data.model_dump(mode="json"), sort_keys=True)
                if dkey not in cache:
                    cache[dkey] = load_study_data(p.spec.data)
                data = cache[dkey]
                try:
                    sizes = resolve_sizes(p.spec.model, data.n_features, data.n_classes)
                    topo, info = build_topology(p.spec.model, sizes, seed)
                except (TopologyError, ConfigError) as e:
                    raise ConfigError(f"settings.{setting} ({p.label}): model: {e}") from None
                torch.manual_seed(seed)
                model = SparseMLP(topo)
                cfg = p.spec.train.to_config(seed)
                t1 = time.perf_counter()
                state = fit(model, data, cfg, callbacks=callbacks_for(f"[{index}/{total}] {p.label} s{seed}"),
                            run_dir=sub / "train", resume=True)
                row = _row(p, seed, data, topo, info, model, state, cfg, time.perf_counter() - t1)
                if want_metrics:
                    row.update(topology_metrics(topo))
                io.write_json(result, dict(key=p.key, seed=seed, row=row, history=state.history))
                rows.append(row)
                trained += 1
                if notify:
                    notify(dict(index=index, total=total, label=p.label, seed=seed, reused=False, row=row))
        extra = ("connectivity", "path_cv", "min_spectral_gap", "min_scatter") if want_metrics else ()
        table = aggregate(rows, metrics=METRICS + extra)
        analysis = ANALYSES[spec.kind](spec, table, rows, run_dir)
        res = StudyResult(recipe, setting, seed_list, rows, table, analysis, trained, reused,
                          time.perf_counter() - t0, run_dir)
        write_outputs(res)
    return res


# =========================================================================================== aggregation
def aggregate(rows: Sequence[dict], by: str = "key", metrics: Sequence[str] = METRICS) -> list[dict]:
    """One row per distinct ``by`` (first-seen order): the first row's other columns, ``n_seeds``,
    ``seeds`` and for every metric present ``<m>_mean``, ``<m>_min``, ``<m>_max``, ``<m>_std`` (sample
    standard deviation, 0 for one seed). NaN values of a metric are ignored."""
    groups: dict[Any, list[dict]] = {}
    for r in rows:
        groups.setdefault(r[by], []).append(r)
    per_seed = {"seed", "test_loss", "wall_s", "epochs"}
    out = []
    for rs in groups.values():
        agg = {k: v for k, v in rs[0].items() if k not in metrics and k not in per_seed}
        agg["n_seeds"] = len(rs)
        agg["seeds"] = " ".join(str(r.get("seed")) for r in rs)
        for m in metrics:
            vals = [float(r[m]) for r in rs if m in r and r[m] is not None and not math.isnan(float(r[m]))]
            if not vals:
                continue
            agg[f"{m}_mean"] = statistics.fmean(vals)
            agg[f"{m}_min"] = min(vals)
            agg[f"{m}_max"] = max(vals)
            agg[f"{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out.append(agg)
    return out


def _pct(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.{digits}f}%"


def _acc(r: dict, m: str = "test_acc") -> str:
    """``mean [min, max]`` in percent."""
    return f"{100 * r[m + '_mean']:.2f} [{100 * r[m + '_min']:.2f}, {100 * r[m + '_max']:.2f}]"


def _dens(r: dict) -> str:
    ks = sorted((k for k in r if re.fullmatch(r"rho_\d+", k)), key=lambda k: int(k[4:]))
    return ", ".join(f"{100 * r[k]:.1f}%" for k in ks)


# =========================================================================================== plotting
def _curves(ax, rows: Sequence[dict], x: str, y: str, group: str, *, scale: float = 100.0,
            label_fmt: Callable[[Any], str] = str) -> None:
    """Mean with min-max error bars of aggregated ``y`` (``<y>_mean/_min/_max``) against ``x``, per group."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(r[group], []).append(r)
    for name, rs in groups.items():
        rs = sorted(rs, key=lambda r: r[x])
        xs = [r[x] for r in rs]
        mean = [scale * r[f"{y}_mean"] for r in rs]
        lo = [scale * (r[f"{y}_mean"] - r[f"{y}_min"]) for r in rs]
        hi = [scale * (r[f"{y}_max"] - r[f"{y}_mean"]) for r in rs]
        ax.errorbar(xs, mean, yerr=[lo, hi], marker="o", capsize=3, label=label_fmt(name))


def _plain_log_ticks(axis) -> None:
    """Tick labels 5, 10, 20 instead of 5x10^0 on a log axis."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _finish(ax, xlabel: str, ylabel: str, title: str = "", logx: bool = True) -> None:
    if logx:
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _with_pct_x(rows: Sequence[dict], key: str = "rho_net") -> list[dict]:
    return [dict(r, **{f"{key}_pct": 100 * r[key]}) for r in rows]


# =========================================================================================== analyses
def analyse_junction_densities(spec: JunctionAnalysis, table: list[dict], rows: list[dict], run_dir: Path) -> AnalysisResult:
    """Pairs at the same target rho_net (realised within ``tolerance``): one with the later junction
    denser than the earlier, one the other way round; the first should win."""
    e, l = f"rho_{spec.early}", f"rho_{spec.late}"
    sparse = [r for r in table if r["rho_net"] < 1]
    by_target: dict[float, list[dict]] = {}
    for r in sparse:
        by_target.setdefault(r["target_rho_net"], []).append(r)
    comps, mono = [], []
    skipped = 0
    for t, rs in sorted(by_target.items()):
        later = [r for r in rs if r[l] > r[e] + 1e-12]
        earlier = [r for r in rs if r[l] < r[e] - 1e-12]
        for a in later:
            for b in earlier:
                rel = abs(a["rho_net"] - b["rho_net"]) / max(a["rho_net"], b["rho_net"])
                if rel > spec.tolerance:
                    skipped += 1
                    continue
                diff = a["test_acc_mean"] - b["test_acc_mean"]
                comps.append({
                    "target_rho_net": t, "later_denser": a["label"], "earlier_denser": b["label"],
                    f"{e}_a": a[e], f"{l}_a": a[l], "rho_net_a": a["rho_net"], "edges_a": a["edges"],
                    f"{e}_b": b[e], f"{l}_b": b[l], "rho_net_b": b["rho_net"], "edges_b": b["edges"],
                    "acc_a": a["test_acc_mean"], "acc_b": b["test_acc_mean"], "diff": diff,
                    "win": diff > 0, "separated": a["test_acc_min"] > b["test_acc_max"],
                    "fewer_or_equal_edges": a["edges"] <= b["edges"],
                })
        for a, b in itertools.combinations(sorted(rs, key=lambda r: r[l]), 2):
            if b[l] > a[l] and abs(a["rho_net"] - b["rho_net"]) / max(a["rho_net"], b["rho_net"]) <= spec.tolerance:
                mono.append(b["test_acc_mean"] > a["test_acc_mean"])
    k, n = sum(c["win"] for c in comps), len(comps)
    sep = sum(c["win"] and c["separated"] for c in comps)
    fair = [c for c in comps if c["fewer_or_equal_edges"]]
    n_seeds = max((r["n_seeds"] for r in table), default=0)
    conclusions = []
    if n:
        mean_diff = statistics.fmean(c["diff"] for c in comps)
        conclusions.append(
            f"**{l} > {e} better in {k} of {n} comparisons** at equal rho_net (mean test accuracy over {n_seeds} "
            f"seeds; realised rho_net within {100 * spec.tolerance:g}% of each other); {sep} of the {k} wins have "
            f"non-overlapping min-max ranges over seeds; mean difference {100 * mean_diff:+.2f} points."
        )
        conclusions.append(
            f"Where the {l} > {e} net has no more weights than its rival: better in "
            f"{sum(c['win'] for c in fair)} of {len(fair)}."
        )
    else:
        conclusions.append(f"No comparison possible: no target rho_net has both a configuration with {l} > {e} "
                           f"and one with {l} < {e} (within {100 * spec.tolerance:g}% of each other).")
    if mono:
        conclusions.append(f"More generally, the denser {l} of two configurations at the same target rho_net was "
                           f"better in {sum(mono)} of {len(mono)} pairs.")
    if skipped:
        conclusions.append(f"{skipped} pairs were left out because their realised rho_net differ by more than "
                           f"{100 * spec.tolerance:g}%.")
    verdict = dict(claim_supported=bool(n) and k > n / 2, wins=k, comparisons=n, separated_wins=sep,
                   fair_wins=sum(c["win"] for c in fair), fair_comparisons=len(fair),
                   denser_late_wins=sum(mono), denser_late_pairs=len(mono))

    fig, ax = subplots(figsize=(6.5, 4.2))
    _curves(ax, _with_pct_x(sparse), "rho_net_pct", "test_acc", "group")
    fc = [r for r in table if r["rho_net"] == 1]
    if fc:
        ax.axhline(100 * statistics.fmean(r["test_acc_mean"] for r in fc), ls="--", c="gray", label="fully connected")
    _finish(ax, "overall density rho_net (%)", "test accuracy (%)",
            f"each curve: {l} fixed, {e} varied ({table[0]['dataset']}, N={table[0]['net']})")
    save_figure(fig, run_dir / "accuracy_vs_density.png")
    return AnalysisResult(conclusions, verdict, {"comparisons": comps}, ["accuracy_vs_density.png"],
                          columns={"comparisons": [
                              ("target rho_net", "target_rho_net:pct"), (f"{l} > {e}", "later_denser"),
                              (f"{l} < {e}", "earlier_denser"), ("rho_net a / b", "rho_net_a/rho_net_b:pct"),
                              ("acc a", "acc_a:pct"), ("acc b", "acc_b:pct"), ("a - b (points)", "diff:pts"),
                              ("a better", "win")]})


def analyse_large_sparse(spec: LargeSparseAnalysis, table: list[dict], rows: list[dict], run_dir: Path) -> AnalysisResult:
    """Per weight budget (group): accuracy against hidden width; does the wide sparse net beat the FC one?"""
    groups: dict[str, list[dict]] = {}
    for r in table:
        groups.setdefault(r["group"], []).append(r)
    summary, conclusions = [], []
    steps_up = steps = wins_widest = wins_any = budgets = separated = 0
    for g, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["hidden"])
        fc = next((r for r in rs if r["rho_net"] == 1), rs[0])
        best = max(rs, key=lambda r: r["test_acc_mean"])
        widest = rs[-1]
        ups = [b["test_acc_mean"] > a["test_acc_mean"] for a, b in zip(rs, rs[1:])]
        spread = (max(r["edges"] for r in rs) - min(r["edges"] for r in rs)) / fc["edges"]
        budgets += 1
        steps += len(ups)
        steps_up += sum(ups)
        wins_widest += widest["test_acc_mean"] > fc["test_acc_mean"] and widest is not fc
        wins_any += any(r["test_acc_mean"] > fc["test_acc_mean"] for r in rs if r is not fc)
        clear = best is not fc and best["test_acc_min"] > fc["test_acc_max"]
        separated += clear
        summary.append(dict(group=g, fc_hidden=fc["hidden"], fc_acc=fc["test_acc_mean"], best_hidden=best["hidden"],
                            best_rho_net=best["rho_net"], best_acc=best["test_acc_mean"], widest_hidden=widest["hidden"],
                            widest_rho_net=widest["rho_net"], widest_acc=widest["test_acc_mean"],
                            rises=sum(ups), steps=len(ups), edges_spread=spread, separated=clear))
        conclusions.append(
            f"{g}: FC N_1={fc['hidden']} {_pct(fc['test_acc_mean'])}; best N_1={best['hidden']} at rho_net "
            f"{_pct(best['rho_net'], 1)} {_pct(best['test_acc_mean'])} ({100 * (best['test_acc_mean'] - fc['test_acc_mean']):+.2f} "
            f"points; min-max ranges over seeds {'separate' if clear else 'overlap'}); widest N_1={widest['hidden']} {_pct(widest['test_acc_mean'])}; accuracy rises with width in "
            f"{sum(ups)} of {len(ups)} steps; weights equal within {100 * spread:.1f}%."
        )
    conclusions.insert(0, f"**A larger sparse net beat the small dense net of the same weight count in {wins_any} of "
                          f"{budgets} budgets** (the widest one in {wins_widest} of {budgets}; the best one by more "
                          f"than the seed ranges in {separated} of {budgets}); accuracy rose with hidden width in "
                          f"{steps_up} of {steps} steps.")
    verdict = dict(claim_supported=wins_any > budgets / 2, budgets=budgets, wins_any=wins_any, wins_widest=wins_widest,
                   separated=separated, rises=steps_up, steps=steps)
    from matplotlib.ticker import FuncFormatter

    fig, ax = subplots(figsize=(6.5, 4.2))
    _curves(ax, table, "hidden", "test_acc", "group")
    for r in table:
        ax.annotate(f"{100 * r['rho_net']:.0f}%", (r["hidden"], 100 * r["test_acc_mean"]), fontsize=7,
                    textcoords="offset points", xytext=(3, -10))
    _finish(ax, "hidden width N_1 (log; labels: rho_net)", "test accuracy (%)",
            f"equal number of weights per curve ({table[0]['dataset']})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({r["hidden"] for r in table}))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    save_figure(fig, run_dir / "accuracy_vs_width.png")
    return AnalysisResult(conclusions, verdict, {"budgets": summary}, ["accuracy_vs_width.png"],
                          columns={"budgets": [
                              ("budget", "group"), ("FC N_1", "fc_hidden"), ("FC acc", "fc_acc:pct"),
                              ("best N_1", "best_hidden"), ("best rho_net", "best_rho_net:pct"), ("best acc", "best_acc:pct"),
                              ("widest N_1", "widest_hidden"), ("widest acc", "widest_acc:pct"), ("rises", "rises"),
                              ("steps", "steps")]})


def _drops(table: list[dict], rows: list[dict]) -> list[dict]:
    """Aggregated rows with ``drop_mean/min/max`` (the group's FC accuracy minus this config's, per seed) and
    ``rel_drop_mean`` (the same divided by the FC net's margin above chance, ``acc_FC - 1 / n_classes``: the
    fraction of what the FC net learned that sparsification lost; comparable across datasets of different
    difficulty)."""
    fc_by_group_seed = {(r["group"], r["seed"]): r["test_acc"] for r in rows if r["rho_net"] == 1}
    per_cfg: dict[str, list[float]] = {}
    rel_cfg: dict[str, list[float]] = {}
    for r in rows:
        base = fc_by_group_seed.get((r["group"], r["seed"]))
        if base is None:
            continue
        per_cfg.setdefault(r["key"], []).append(base - r["test_acc"])
        chance = 1.0 / r["n_classes"] if r.get("n_classes") else 0.0
        if base > chance:
            rel_cfg.setdefault(r["key"], []).append((base - r["test_acc"]) / (base - chance))
    out = []
    for r in table:
        d = per_cfg.get(r["key"])
        if d:
            r = dict(r, drop_mean=statistics.fmean(d), drop_min=min(d), drop_max=max(d))
            rel = rel_cfg.get(r["key"])
            r["rel_drop_mean"] = statistics.fmean(rel) if rel else float("nan")
        out.append(r)
    return out


def analyse_redundancy(spec: RedundancyAnalysis, table: list[dict], rows: list[dict], run_dir: Path) -> AnalysisResult:
    """Accuracy lost by sparsifying (vs the same data's FC net, per seed), less vs more redundant inputs."""
    table = _drops(table, rows)
    missing = sorted({r["group"] for r in table} - {r["group"] for r in table if r["rho_net"] == 1})
    by = {(r["group"], r["target_rho_net"]): r for r in table if "drop_mean" in r and r["rho_net"] < 1}
    comps, conclusions = [], []
    for more, less in spec.pairs:
        targets = sorted({t for g, t in by if g == more} & {t for g, t in by if g == less})
        pair = []
        for t in targets:
            a, b = by[(less, t)], by[(more, t)]
            pair.append(dict(target_rho_net=t, less_redundant=less, more_redundant=more,
                             rho_net_less=a["rho_net"], rho_net_more=b["rho_net"],
                             drop_less=a["drop_mean"], drop_more=b["drop_mean"],
                             rel_drop_less=a["rel_drop_mean"], rel_drop_more=b["rel_drop_mean"],
                             acc_less=a["test_acc_mean"], acc_more=b["test_acc_mean"],
                             less_loses_more=a["drop_mean"] > b["drop_mean"],
                             less_loses_more_rel=a["rel_drop_mean"] > b["rel_drop_mean"]))
        comps += pair
        if pair:
            lo = pair[0]
            conclusions.append(
                f"{less} vs {more}: {less} lost more in {sum(c['less_loses_more'] for c in pair)} of {len(pair)} "
                f"densities ({sum(c['less_loses_more_rel'] for c in pair)} of {len(pair)} relative to the margin above "
                f"chance); at target rho_net {_pct(lo['target_rho_net'], 1)} the drops are {100 * lo['drop_less']:.2f} vs "
                f"{100 * lo['drop_more']:.2f} points ({_pct(lo['rel_drop_less'], 0)} vs {_pct(lo['rel_drop_more'], 0)} "
                "of the margin)."
            )
        else:
            conclusions.append(f"{less} vs {more}: no common sparse density to compare.")
    k, n = sum(c["less_loses_more"] for c in comps), len(comps)
    k_rel = sum(c["less_loses_more_rel"] for c in comps)
    conclusions.insert(0, f"**Less redundant inputs lost more accuracy when sparsified in {k} of {n} comparisons** "
                          f"(drop = FC accuracy of the same data and seed minus sparse accuracy, mean over seeds); "
                          f"relative to the FC net's margin above chance in {k_rel} of {n}.")
    weak = [(r["group"], r["test_acc_mean"], 1.0 / r["n_classes"]) for r in table
            if r["rho_net"] == 1 and r.get("n_classes") and r["test_acc_mean"] < 0.5]
    for g, acc, chance in weak:
        conclusions.append(f"Caution: the FC net of {g} reaches only {_pct(acc)} (chance {_pct(chance)}), so its "
                           "drops are bounded by that; the relative drop is the fairer measure there.")
    if missing:
        conclusions.append(f"No FC baseline (rho_net = 1) for {missing}: their drops are not computed.")
    verdict = dict(claim_supported=bool(n) and k > n / 2, wins=k, comparisons=n, wins_relative=k_rel)
    fig, axes = subplots(1, 2, figsize=(11, 4.2))
    sparse_rows = [r for r in table if r["rho_net"] < 1 and "drop_mean" in r]
    _curves(axes[0], _with_pct_x(table), "rho_net_pct", "test_acc", "group")
    _finish(axes[0], "overall density rho_net (%)", "test accuracy (%)", "accuracy")
    _curves(axes[1], _with_pct_x(sparse_rows), "rho_net_pct", "drop", "group")
    _finish(axes[1], "overall density rho_net (%)", "accuracy drop vs FC (points)", "drop from the same data's FC net")
    save_figure(fig, run_dir / "redundancy.png")
    return AnalysisResult(conclusions, verdict, {"comparisons": comps, "drops": [
        dict(group=r["group"], dataset=r["dataset"], target_rho_net=r["target_rho_net"], rho_net=r["rho_net"],
             test_acc=r["test_acc_mean"], drop_mean=r["drop_mean"], drop_min=r["drop_min"], drop_max=r["drop_max"],
             rel_drop_mean=r["rel_drop_mean"])
        for r in sparse_rows]}, ["redundancy.png"],
        columns={"comparisons": [
            ("target rho_net", "target_rho_net:pct"), ("less redundant", "less_redundant"),
            ("drop", "drop_less:pts"), ("rel. drop", "rel_drop_less:pct"), ("more redundant", "more_redundant"),
            ("drop ", "drop_more:pts"), ("rel. drop ", "rel_drop_more:pct"), ("less loses more", "less_loses_more"),
            ("relative", "less_loses_more_rel")], "drops": []})


def _best_l2(rs: Sequence[dict], acc: str, loss: str) -> dict:
    """Highest validation accuracy; ties broken by lower validation loss, then by smaller l2."""
    return max(rs, key=lambda r: (round(r[acc], 12), -r[loss], -r["l2"]))


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def analyse_regularization(spec: RegularizationAnalysis, table: list[dict], rows: list[dict], run_dir: Path) -> AnalysisResult:
    """Per density (group): the l2 with the best mean validation accuracy; does it shrink with density?"""
    groups: dict[str, list[dict]] = {}
    for r in table:
        groups.setdefault(r["group"], []).append(r)
    best_rows = []
    for g, rs in groups.items():
        best = _best_l2(rs, "val_acc_mean", "val_loss_mean")
        zero = next((r for r in rs if r["l2"] == 0), None)
        per_seed = []
        for seed in sorted({x["seed"] for x in rows if x["group"] == g}):
            srs = [x for x in rows if x["group"] == g and x["seed"] == seed]
            per_seed.append(_best_l2(srs, "val_acc", "val_loss")["l2"])
        val_range = statistics.fmean(r["val_acc_max"] - r["val_acc_min"] for r in rs)
        best_rows.append(dict(group=g, rho_net=best["rho_net"], best_l2=best["l2"],
                              val_acc=best["val_acc_mean"], test_acc=best["test_acc_mean"],
                              val_gain=best["val_acc_mean"] - zero["val_acc_mean"] if zero else None,
                              val_range=val_range,
                              test_acc_l2_0=zero["test_acc_mean"] if zero else None,
                              val_acc_l2_0=zero["val_acc_mean"] if zero else None,
                              per_seed_best=" ".join(f"{v:g}" for v in per_seed),
                              per_seed_mean=statistics.fmean(per_seed) if per_seed else None))
    best_rows.sort(key=lambda r: -r["rho_net"])
    seq = [r["best_l2"] for r in best_rows]
    steps = list(zip(seq, seq[1:]))
    k = sum(b <= a for a, b in steps)
    strict = sum(b < a for a, b in steps)
    rho_s = _spearman([r["rho_net"] for r in best_rows], seq)
    trend = " -> ".join(f"{r['best_l2']:g} ({_pct(r['rho_net'], 1)})" for r in best_rows)
    conclusions = [
        f"**Best L2 coefficient (lambda, by mean validation accuracy) as density falls: {trend}**; "
        f"non-increasing in {k} of {len(steps)} steps ({strict} strictly smaller); Spearman rank correlation of "
        f"density and best lambda "
        + ("undefined (one of them is constant)." if math.isnan(rho_s) else f"{rho_s:+.2f}.")
        if steps else f"Best lambda: {trend} (one density only).",
    ]
    if best_rows and steps:
        a, b = best_rows[0], best_rows[-1]
        rel = "smaller than" if b["best_l2"] < a["best_l2"] else "equal to" if b["best_l2"] == a["best_l2"] else "larger than"
        conclusions.append(f"At the sparsest density ({_pct(b['rho_net'], 1)}) the best lambda is {rel} the one at the densest "
                           f"({_pct(a['rho_net'], 1)}): {b['best_l2']:g} vs {a['best_l2']:g}.")
    clear = [r for r in best_rows if r["val_gain"] is not None and r["val_gain"] > r["val_range"]]
    with_zero = [r for r in best_rows if r["val_gain"] is not None]
    if with_zero:
        conclusions.append(
            f"The chosen lambda beat lambda = 0 on validation by more than the mean seed range at {len(clear)} of "
            f"{len(with_zero)} densities ("
            + ", ".join(f"{r['group']}: {100 * r['val_gain']:+.2f} vs {100 * r['val_range']:.2f} points" for r in with_zero)
            + "); below that the choice is within noise.")
    gains = [(r["group"], r["test_acc"] - r["test_acc_l2_0"]) for r in best_rows if r["test_acc_l2_0"] is not None]
    if gains:
        conclusions.append("Test accuracy gained by the chosen lambda over lambda = 0: "
                           + ", ".join(f"{g}: {100 * d:+.2f} points" for g, d in gains) + ".")
    verdict = dict(claim_supported=bool(steps) and k == len(steps) and seq[-1] < seq[0],
                   non_increasing_steps=k, steps=len(steps), strictly_smaller=strict, spearman=rho_s,
                   beyond_noise=len(clear),
                   best_l2={r["group"]: r["best_l2"] for r in best_rows})
    fig, axes = subplots(1, 2, figsize=(11, 4.2))
    _curves(axes[0], table, "l2", "val_acc", "group")
    _finish(axes[0], "L2 coefficient lambda (symlog)", "validation accuracy (%)", "validation accuracy", logx=False)
    nz = [r["l2"] for r in table if r["l2"] > 0]
    axes[0].set_xscale("symlog", linthresh=min(nz) if nz else 1e-6)
    axes[1].plot([100 * r["rho_net"] for r in best_rows], seq, marker="o")
    _finish(axes[1], "overall density rho_net (%)", "best lambda (symlog)", "lambda chosen by validation")
    axes[1].set_yscale("symlog", linthresh=min(nz) if nz else 1e-6)
    save_figure(fig, run_dir / "regularization.png")
    return AnalysisResult(conclusions, verdict, {"best_l2": best_rows}, ["regularization.png"],
                          columns={"best_l2": [
                              ("density", "group"), ("rho_net", "rho_net:pct"), ("best lambda", "best_l2:g"),
                              ("val acc", "val_acc:pct"), ("test acc", "test_acc:pct"), ("test acc, lambda=0", "test_acc_l2_0:pct"),
                              ("best lambda per seed", "per_seed_best")]})


def analyse_families(spec: FamiliesAnalysis, table: list[dict], rows: list[dict], run_dir: Path) -> AnalysisResult:
    """Per density point (group): families ranked by mean test accuracy, spread vs seed noise."""
    groups: dict[str, list[dict]] = {}
    for r in table:
        if r["rho_net"] < 1:
            groups.setdefault(r["group"], []).append(r)
    fc = [r for r in table if r["rho_net"] == 1]
    summary, conclusions = [], []
    wins: dict[str, int] = {}
    radix_vs_random = []
    for g in list(groups):
        rs = groups[g] = sorted(groups[g], key=lambda r: -r["test_acc_mean"])
        spread = rs[0]["test_acc_mean"] - rs[-1]["test_acc_mean"]
        noise = statistics.fmean(r["test_acc_max"] - r["test_acc_min"] for r in rs)
        wins[rs[0]["family"]] = wins.get(rs[0]["family"], 0) + 1
        fams = {r["family"]: r for r in rs}
        if "radix" in fams and "random" in fams:
            radix_vs_random.append(fams["radix"]["test_acc_mean"] - fams["random"]["test_acc_mean"])
        summary.append(dict(group=g, rho_net=rs[0]["rho_net"], densities=_dens(rs[0]),
                            ranking=" > ".join(f"{r['family']} {100 * r['test_acc_mean']:.2f}" for r in rs),
                            best=rs[0]["family"], spread=spread, seed_range=noise))
        verdict_txt = "within" if spread <= noise else "beyond"
        conclusions.append(f"rho_net {_pct(rs[0]['rho_net'], 1)} (junctions {_dens(rs[0])}): "
                           + " > ".join(f"{r['family']} {_pct(r['test_acc_mean'])}" for r in rs)
                           + f"; spread of family means {100 * spread:.2f} points, {verdict_txt} the mean seed range "
                           f"({100 * noise:.2f} points).")
    within = sum(s["spread"] <= s["seed_range"] for s in summary)
    conclusions.insert(0, f"**Families at equal junction densities: spread within seed noise at {within} of "
                          f"{len(summary)} densities**; best family per density: "
                          + ", ".join(f"{f} ({c})" for f, c in sorted(wins.items(), key=lambda kv: -kv[1])) + ".")
    if radix_vs_random:
        conclusions.append("RadiX-Net minus random (seed 004: 'random and explicit RadiX-Net layers behave the "
                           "same'): " + ", ".join(f"{100 * d:+.2f}" for d in radix_vs_random) + " points.")
    if fc:
        conclusions.append(f"Fully connected: {_pct(statistics.fmean(r['test_acc_mean'] for r in fc))}.")
    verdict = dict(points=len(summary), within_noise=within, best_counts=wins, radix_minus_random=radix_vs_random)
    fig, ax = subplots(figsize=(6.5, 4.2))
    sparse = [r for g in groups.values() for r in g]
    _curves(ax, _with_pct_x(sparse), "rho_net_pct", "test_acc", "family")
    if fc:
        ax.axhline(100 * statistics.fmean(r["test_acc_mean"] for r in fc), ls="--", c="gray", label="fully connected")
    _finish(ax, "overall density rho_net (%)", "test accuracy (%)",
            f"families at equal junction densities (N={sparse[0]['net'] if sparse else ''})")
    save_figure(fig, run_dir / "families.png")
    metric_cols = [c for c in ("connectivity", "path_cv", "min_spectral_gap", "min_scatter") if f"{c}_mean" in (sparse[0] if sparse else {})]
    per_family = [dict(group=r["group"], family=r["family"], rho_net=r["rho_net"], test_acc=r["test_acc_mean"],
                       test_min=r["test_acc_min"], test_max=r["test_acc_max"],
                       **{c: r[f"{c}_mean"] for c in metric_cols}) for r in sparse]
    return AnalysisResult(conclusions, verdict, {"families": per_family}, ["families.png"],
                          columns={"families": [("density point", "group"), ("family", "family"),
                                                ("rho_net", "rho_net:pct"), ("test acc", "test_acc:pct"),
                                                ("min", "test_min:pct"), ("max", "test_max:pct")]
                                   + [(c, f"{c}:3f") for c in metric_cols]})


ANALYSES: dict[str, Callable[..., AnalysisResult]] = {
    "junction_densities": analyse_junction_densities,
    "large_sparse": analyse_large_sparse,
    "redundancy": analyse_redundancy,
    "regularization": analyse_regularization,
    "families": analyse_families,
}


# =========================================================================================== outputs
def _cell(r: dict, spec: str) -> str:
    name, _, fmt = spec.partition(":")
    if "/" in name:
        return " / ".join(_cell(r, f"{n}:{fmt}") for n in name.split("/"))
    v = r.get(name)
    if v is None:
        return "n/a"
    if fmt == "pct":
        return _pct(v)
    if fmt == "pts":
        return f"{100 * v:+.2f}"
    if fmt == "g":
        return f"{v:g}"
    if fmt == "3f":
        return f"{v:.3f}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def md_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> list[str]:
    """Markdown table lines; ``columns`` = (header, ``key[:fmt]``) with fmt pct, pts, g or 3f."""
    out = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_cell(r, c) for _, c in columns) + " |" for r in rows]
    return out


def write_outputs(res: StudyResult) -> None:
    """runs.csv, table.csv, <analysis tables>.csv, summary.json and report.md (figures are already written)."""
    d = res.run_dir
    io.write_csv(d / "runs.csv", res.rows)
    io.write_csv(d / "table.csv", res.table)
    for name, rows in res.analysis.tables.items():
        if rows:
            io.write_csv(d / f"{name}.csv", rows)
    io.write_json(d / "summary.json", dict(
        study=res.recipe.name, setting=res.setting, seeds=res.seeds, conclusions=res.analysis.conclusions,
        verdict=res.analysis.verdict, trained=res.trained, reused=res.reused, wall_s=res.wall_s,
        train_time_s=sum(r.get("train_time_s", 0.0) for r in res.rows),
        files=sorted(p.name for p in d.iterdir() if p.is_file() and not p.name.startswith(".")),
    ))
    io.write_text(d / "report.md", report_markdown(res))


def report_markdown(res: StudyResult) -> str:
    r, s = res.recipe, res.recipe.settings[res.setting]
    datasets = list(dict.fromkeys(x["dataset"] for x in res.table))
    nets = list(dict.fromkeys(x["net"] for x in res.table))
    train = StudyTrain.model_validate(s.train) if s.train else StudyTrain()
    train_s = sum(x.get("train_time_s", 0.0) for x in res.rows)
    lines = [
        f"# {r.title}",
        "",
        f"> Claim under test ({r.source or 'seed'}): *{r.claim}*",
        "",
        f"Setting **{res.setting}**: {len(res.table)} configurations x {len(res.seeds)} seeds ({res.seeds}); "
        f"data {', '.join(datasets)}; networks {', '.join(nets)}; base training {train.epochs} epochs, "
        f"{train.optimizer} lr {train.lr:g} ({train.lr_schedule}), batch {train.batch_size}"
        + (f", L2 lambda {train.l2:g}" if train.l2 else "") + f"; {s.threads} torch thread(s). "
        f"Every network is trained from scratch with its pre-defined pattern (sparse all the way).",
        "",
        f"This invocation trained {res.trained} sub-runs and reused {res.reused}; training time of all sub-runs "
        f"{train_s:.0f} s; wall time of this invocation {res.wall_s:.0f} s.",
    ]
    if s.note:
        lines += ["", s.note.strip()]
    lines += ["", "## Conclusion", ""] + [f"- {c}" for c in res.analysis.conclusions]
    for name, rows in res.analysis.tables.items():
        cols = res.analysis.columns.get(name)
        if rows and cols:
            lines += ["", f"### {name.replace('_', ' ')}", ""] + md_table(rows, cols)
    lines += ["", "## Results (test accuracy %, mean [min, max] over seeds)", ""]
    cols = [("configuration", "label"), ("data", "dataset"), ("N_net", "net"), ("family", "family"),
            ("rho_net", "rho_net:pct"), ("junction densities", "dens"), ("weights", "edges")]
    if any(x.get("l2") for x in res.table):
        cols.append(("lambda", "l2:g"))
    cols += [("val acc", "val"), ("test acc", "test"), ("seeds", "n_seeds")]
    view = [dict(x, dens=_dens(x), val=_acc(x, "val_acc"), test=_acc(x)) for x in res.table]
    lines += md_table(view, cols)
    lines += [""] + [f"![{f}]({f})" for f in res.analysis.figures]
    lines += ["", "Files: `runs.csv` (one row per sub-run), `table.csv` (per configuration, aggregated), "
              + ", ".join(f"`{n}.csv`" for n, rows in res.analysis.tables.items() if rows)
              + ", `summary.json`; sub-runs in `runs/<configuration>/seed<s>/`.",
              "", f"Reproduce: `sparseforge study {r.name} --setting {res.setting}"
              + (f" --seeds {len(res.seeds)}" if res.seeds != list(s.seeds) else "") + "`", ""]
    return "\n".join(lines)
