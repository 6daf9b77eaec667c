"""Loading a recipe and expanding a setting into its configurations (validated, keyed by a hash of
the settings); the degree source of a configuration resolved on the data's sizes; the data itself."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import ConfigError, merge, parse, read_mapping
from ...topology import NetworkTopology, TopologyError, design, design_clash_free, radix_net
from ...topology.degrees import auto_parallelism, out_degrees, radix_widths
from ...topology.degrees import target_density as degree_target
from .schema import (effective_analysis, JunctionAnalysis, PREFIX, Recipe, RECIPES, RedundancyAnalysis, SECTIONS,
                     Setting, StudyConfig, StudyModel)


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
        out.append(dict(name=path.stem[len(PREFIX):].replace("_", "-"), path=path, title=recipe.title, claim=recipe.claim,
                        settings=settings))
    return out


def resolve_recipe(name: str | Path) -> Path:
    """A YAML path, or a packaged study by name (``junction-densities``, ``junction_densities`` or
    ``study_junction_densities``)."""
    from ...config import resolve_recipe as resolve

    return resolve(name, PREFIX)


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


def _set_path(d: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            d[p] = nxt
        d = nxt
    d[parts[-1]] = value


def fmt_value(v: Any) -> str:
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
        merged = merge(base, {sec: getattr(block, sec) for sec in SECTIONS})
        paths = list(block.grid)
        for values in itertools.product(*(block.grid[p] for p in paths)):
            cfg = json.loads(json.dumps(merged))  # deep copy
            for p, v in zip(paths, values):
                _set_path(cfg, p, v)
            assign = tuple((p.split(".", 1)[1], v) for p, v in zip(paths, values))
            text = ", ".join(f"{k}={fmt_value(v)}" for k, v in assign)
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


def _degree_source(model: StudyModel) -> dict:
    """The degree source of ``model`` as the plain arguments of :func:`~sparseforge.topology.degrees.out_degrees`."""
    return dict(fan_out=model.fan_out, density=model.density, rho_net=model.rho_net, fixed=model.fixed or None,
                dense_last=model.dense_last, round_to_budget=model.round_down, edges_like=model.edges_like,
                radices=model.radices)


def resolve_fan_out(model: StudyModel, sizes: tuple[int, ...]) -> tuple[int, ...]:
    """Per-junction out-degrees of ``model`` on ``sizes`` (FC when no degree source is given)."""
    return out_degrees(sizes, **_degree_source(model))


def target_density(model: StudyModel, sizes: tuple[int, ...], realised: float) -> float:
    """The overall density the spec asks for (the realised one where it gives degrees directly)."""
    return degree_target(sizes, realised, density=model.density, rho_net=model.rho_net,
                         edges_like=model.edges_like, fan_out=model.fan_out, radices=model.radices)


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
        _, widths = radix_widths(model.radices, sizes)
        topo = radix_net(model.radices, widths, **model.options)
    elif model.family == "clash_free":
        d_in = [n * d // m for n, m, d in zip(sizes[:-1], sizes[1:], fan_out)]
        if model.z == "auto":
            zs = [auto_parallelism(n, di, model.z_max) for n, di in zip(sizes[:-1], d_in)]
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
    from ...topology.analysis import summarize

    s = summarize(topo)
    return dict(
        connectivity=s["paths"]["connectivity"],
        path_cv=s["paths"]["cv"] if s["paths"]["cv"] is not None else float("nan"),
        min_spectral_gap=s["min_spectral_gap"],
        min_scatter=s["scatter"]["min"],
    )
