"""The study recipe schema: the YAML sections (model, data, train), sweep blocks, settings and the
analysis each study runs; validated once, errors name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, NonNegativeInt, field_validator, model_validator

from ...config import ConfigError, DataSpec, TrainSpec, _Strict, merge, parse
from ...data import DATASETS, DataSplits
from ...topology import FAMILIES
from ...train import TrainConfig


RECIPES = Path(__file__).resolve().parent.parent.parent / "recipes"
PREFIX = "study_"
METRICS = ("test_acc", "val_acc", "val_loss", "train_acc", "train_time_s")


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


class StudyData(DataSpec):
    """A dataset (:class:`~sparseforge.config.DataSpec`), optionally reduced: ``top_variance`` features
    kept first, then ``pca`` components."""

    label: str | None = Field(default=None, description="name in tables and plots (default: derived)")
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

    def load(self) -> DataSplits:
        """The dataset, reduced as the spec says (top-variance features first, then PCA); a loader's
        complaint becomes a :class:`ConfigError` naming the dataset."""
        from ...data.transforms import pca_reduce, top_variance_features

        try:
            d = super().load()
            if self.top_variance:
                d = top_variance_features(d, self.top_variance)
            if self.pca:
                d = pca_reduce(d, self.pca, whiten=self.whiten)
        except (TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"data ({self.display()}): {e}") from None
        return d


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
    seeds: list[NonNegativeInt] = Field(default=[0, 1, 2], min_length=1)
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
    merged = merge(recipe.analysis.model_dump(mode="json"), over)
    return parse(_AnalysisOnly, {"analysis": merged}, where=f"{where}settings.{setting}.").analysis
