"""Typed run configurations, validated once at the boundary (CLI flags or a YAML file).

Errors name the field, the value given and what is allowed (:class:`ConfigError`). Inside the library
the validated values are passed on as plain dataclasses and trusted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

if TYPE_CHECKING:  # the layers below load torch; imported where used, so validating a config stays quick
    from .topology import NetworkTopology
    from .train import TrainConfig

if TYPE_CHECKING:
    from .data import DataSplits



class _Strict(BaseModel):
    """Unknown keys are errors; so are infinite and NaN numbers (``lr: .inf`` would train to NaN)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(_Strict):
    """A pre-defined sparse MLP: layer sizes and exactly one of fan_out, fan_in, density."""

    net: list[int] = Field(default=[784, 112, 10], min_length=2, description="N_net = (N_0, ..., N_L)")
    fan_out: list[int] | None = None
    fan_in: list[int] | None = None
    density: list[float] | float | None = None
    rho_net: float | None = Field(default=None, gt=0, le=1, description="overall density (degrees allocated)")
    family: str = "structured"
    seed: int = Field(default=0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict, description="family options, e.g. {z: 4}")

    @model_validator(mode="after")
    def _one_degree_spec(self) -> ModelSpec:
        given = [k for k in ("fan_out", "fan_in", "density", "rho_net") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of fan_out, fan_in, density, rho_net; got {given}")
        return self

    def topology(self) -> NetworkTopology:
        """Build the topology (FC when no degrees are given)."""
        from .topology import TopologyError, allocate_density, design

        kw = {k: getattr(self, k) for k in ("fan_out", "fan_in", "density") if getattr(self, k) is not None}
        try:
            if self.rho_net is not None:
                kw = {"fan_out": allocate_density(self.net, self.rho_net, family=self.family, **self.options)}
            if not kw:
                kw = {"density": 1.0}
            return design(self.net, family=self.family, seed=self.seed, **kw, **self.options)
        except TopologyError as e:
            raise ConfigError(f"model: {e}") from None


class DataSpec(_Strict):
    """A dataset by name (see :data:`sparseforge.data.DATASETS`): ``limit`` samples per split (None: all),
    split and shuffled by ``seed``; ``options`` go to the loader."""

    name: str = "mnist"
    root: Path | None = None
    val_size: int | float | None = None
    limit: int | None = Field(default=None, gt=0)
    seed: int = Field(default=0, ge=0)
    options: dict[str, Any] = Field(default_factory=dict, description="dataset options, e.g. {variant: difficult}")

    def load(self) -> "DataSplits":
        """The train/val/test splits this spec names."""
        from .data import load_dataset

        return load_dataset(self.name, root=self.root, val_size=self.val_size, seed=self.seed, limit=self.limit,
                            **self.options)


class TrainFields(_Strict):
    """The optimisation settings of :class:`~sparseforge.train.TrainConfig`, validated (no seed: a
    section that draws its own seeds, as the search does, builds on this)."""

    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=256, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    lr_schedule: Literal["constant", "exponential", "step", "cosine"] = "constant"
    lr_decay: float = Field(default=1.0, gt=0, le=1)
    lr_step: int = Field(default=10, ge=1)


class TrainSpec(TrainFields):
    seed: int = Field(default=0, ge=0)

    def to_config(self) -> TrainConfig:
        from .train import TrainConfig

        return TrainConfig(**self.model_dump())


class RunSpec(_Strict):
    """Everything ``sparseforge train`` needs."""

    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec()
    threads: int | None = Field(default=None, ge=1, description="torch intra-op threads")


def _explain(err: ValidationError, where: str) -> ConfigError:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        given = e.get("input")
        given_s = "" if isinstance(given, dict) else f" (given {given!r})"
        lines.append(f"{where}{loc}: {e['msg']}{given_s}")
    return ConfigError("; ".join(lines))


def parse(model: type[_Strict], data: dict, where: str = "") -> Any:
    """Validate ``data`` as ``model``; errors become one :class:`ConfigError` naming each field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise _explain(e, where) from None


class _DuplicateKey(Exception):
    def __init__(self, key: object, first: int, again: int) -> None:
        super().__init__(f"duplicate key {key!r} on line {again} (first given on line {first}); give each key once")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise _DuplicateKey(key, seen[key], key_node.start_mark.line + 1)
                seen[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: yaml's own error follows
                pass
        return super().construct_mapping(node, deep=deep)


def read_mapping(path: str | Path) -> dict:
    """The YAML mapping in ``path`` (unvalidated). A missing file, a directory, a binary or empty file, bad YAML,
    a key given twice or a top level that is not a mapping is a :class:`ConfigError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"config file {path} is a directory, not a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML text file (binary content)") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror or e}") from None
    if "\0" in text:
        raise ConfigError(f"{path}: not a YAML text file (binary content)")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty (only comments or blank lines); give at least one setting, "
                          "or leave out the config file to use the defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


RECIPES = Path(__file__).parent / "recipes"


RECIPE_PREFIXES = {"study": "study_", "prune": "prune_", "ssl": "ssl_", "search": "search_", "hw fixed": "hw_"}


def recipe_names(prefix: str) -> list[str]:
    """The packaged recipes of one command (files ``recipes/<prefix>*.yaml``) by their one name scheme:
    the file name without the command's prefix, words joined by ``-`` (``prune_tiny.yaml`` -> ``tiny``)."""
    return sorted(p.stem[len(prefix):].replace("_", "-") for p in RECIPES.glob(f"{prefix}*.yaml"))


def resolve_recipe(path: str | Path, prefix: str) -> Path:
    """``path`` itself when it is an existing file (or a directory, refused by :func:`read_mapping`), else the
    packaged recipe of that name: ``tiny``, ``prune-tiny``, ``prune_tiny`` and ``prune_tiny.yaml`` all name
    ``recipes/prune_tiny.yaml``. Otherwise a ConfigError listing the command's recipes."""
    path = Path(path)
    if path.exists():
        return path
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    stem = stem.replace("-", "_")
    for cand in (RECIPES / f"{prefix}{stem}.yaml", RECIPES / f"{stem}.yaml"):
        if cand.is_file() and cand.name.startswith(prefix):
            return cand
    raise ConfigError(f"{str(path)!r} is neither a file nor a packaged recipe; recipes: "
                      f"{', '.join(recipe_names(prefix))} (list them all with `sparseforge recipes`)")


def load_yaml(path: str | Path, model: type[_Strict] = RunSpec) -> Any:
    """Read and validate a YAML config file."""
    return parse(model, read_mapping(path), where=f"{path}: ")


def drop_none(d: dict) -> dict:
    """``d`` without None values, recursively (unset CLI flags), and without sections left empty."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = drop_none(v)
            if v:
                out[k] = v
        elif v is not None:
            out[k] = v
    return out


def merge(base: dict, override: dict) -> dict:
    """Deep-merge ``override`` into ``base`` (CLI flags over a YAML file)."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
