"""Search spaces and search specs: what a staged model search may vary, parsed from YAML.

A search declares named parameters (``space``), each an ``int``, ``float``, ``categorical`` or ``bool``
with a range, a log flag and a default, and optionally a *list* parameter whose length is another int
parameter (``length: hidden_layers``, plus ``length_offset``: junction densities are one per hidden
layer plus one). Stages (the seed's levels) name the parameters they search; stages run in order,
each fixing the best values of the previous ones, and parameters no stage names stay at their default.

Each stage is exposed as a :class:`StageSpace`: the Optuna distributions of its parameters (list items
are ``"width.0"``, ``"width.1"``, ...; up to the longest list the space allows), a map from the unit
cube (Sobol and random points), and the embedding the Gaussian-process kernel works on
(:meth:`StageSpace.embed`, documented there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, Callable, Literal

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from pydantic import Field, model_validator

from ..config import DataSpec, TrainFields, _Strict
from ..train import TrainConfig

#: value of a list item that does not exist (a missing layer) in the unit coordinates of the embedding
PAD = -0.5
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
#: parameters each model family understands (besides TrainConfig fields)
MODEL_KEYS: dict[str, tuple[str, ...]] = {
    "mlp": ("hidden_layers", "width", "density"),
    "cnn": ("conv_layers", "channels", "downsample", "kernel", "batch_norm", "groups",
            "fc_layers", "fc_width", "density"),
    "synthetic": (),  # any parameter name: a benchmark of the engine alone (see SyntheticSection)
}




class ParamSpec(_Strict):
    """One searchable parameter. ``length`` makes it a list whose length is that int parameter's value
    plus ``length_offset``; its ``default`` is then one value for every item or a list."""

    type: Literal["int", "float", "categorical", "bool"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None
    default: Any = None
    multiple_of: int = Field(default=1, ge=1, description="int values are multiples of this (layer widths)")
    length: str | None = None
    length_offset: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type in ("int", "float"):
            if self.low is None or self.high is None:
                raise ValueError(f"a {self.type} parameter needs low and high")
            if not self.low <= self.high:
                raise ValueError(f"low={self.low} must be <= high={self.high}")
            if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
                raise ValueError(f"an int parameter needs integer low/high, got {self.low}, {self.high}")
            if self.multiple_of > 1 and (self.type != "int" or self.low % self.multiple_of
                                         or self.high % self.multiple_of):
                raise ValueError(f"multiple_of={self.multiple_of} needs an int parameter whose low and high "
                                 f"are multiples of it, got low={self.low}, high={self.high}")
            if self.log and self.low <= 0:
                raise ValueError(f"log=true needs low > 0, got low={self.low}")
            if self.choices is not None:
                raise ValueError(f"choices is only for categorical parameters, not {self.type}")
        elif self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty list of choices")
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("low/high/log are not allowed for a categorical parameter")
        if self.default is None:
            raise ValueError("every parameter needs a default (used before and outside its stage)")
        for v in self.default if isinstance(self.default, list) else [self.default]:
            if not self.contains(v):
                raise ValueError(f"default {v!r} is outside the parameter's range ({self.describe()})")
        return self

    @property
    def choice_list(self) -> list[Any]:
        if self.type == "bool":
            return [False, True]
        return list(self.choices or [])

    def describe(self) -> str:
        if self.type in ("int", "float"):
            return f"{self.type} in [{self.low:g}, {self.high:g}]" + (" (log)" if self.log else "")
        return f"one of {self.choice_list}"

    def contains(self, v: Any) -> bool:
        if self.type == "int":
            return (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and self.low <= v <= self.high
                    and v % self.multiple_of == 0)
        if self.type == "float":
            return isinstance(v, (int, float)) and not isinstance(v, bool) and self.low <= v <= self.high
        if self.type == "bool":
            return isinstance(v, bool)
        return v in self.choice_list

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution of one value (one list item)."""
        if self.type == "int":
            if self.log:  # Optuna has no log with step: values are snapped to multiples (snap)
                return IntDistribution(int(self.low), int(self.high), log=True)
            return IntDistribution(int(self.low), int(self.high), step=self.multiple_of)
        if self.type == "float":
            return FloatDistribution(float(self.low), float(self.high), log=self.log)
        return CategoricalDistribution(self.choice_list)

    def snap(self, v: Any) -> Any:
        """An int value rounded to the nearest allowed multiple (other types unchanged)."""
        if self.type != "int" or self.multiple_of == 1:
            return v
        m = self.multiple_of
        return int(min(max(int(round(v / m)) * m, self.low), self.high))

    # ---------------------------------------------------------------- unit coordinates
    def from_unit(self, u: float) -> Any:
        """Map ``u`` in [0, 1] to a value (log-uniform where ``log``; ints and choices by equal bins)."""
        u = min(max(float(u), 0.0), 1.0)
        if self.type in ("categorical", "bool"):
            c = self.choice_list
            return c[min(int(u * len(c)), len(c) - 1)]
        lo, hi = float(self.low), float(self.high)
        if self.type == "int":
            if self.log:  # equal bins in log space over [lo - 0.5, hi + 0.5]
                a, b = math.log(lo - 0.5 if lo > 0.5 else lo), math.log(hi + 0.5)
                return self.snap(int(min(max(round(math.exp(a + u * (b - a))), lo), hi)))
            m = self.multiple_of
            return int(min(lo + m * math.floor(u * ((hi - lo) / m + 1)), hi))
        if self.log:
            return float(min(max(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))), lo), hi))
        return float(lo + u * (hi - lo))

    def to_unit(self, v: Any) -> float:
        """Coordinate of value ``v`` in [0, 1] (inverse of :meth:`from_unit` up to rounding)."""
        if self.type in ("categorical", "bool"):
            c = self.choice_list
            return (c.index(v) + 0.5) / len(c)
        lo, hi = float(self.low), float(self.high)
        if self.type == "int":  # the centre of v's bin in from_unit
            if self.log:
                a, b = math.log(lo - 0.5 if lo > 0.5 else lo), math.log(hi + 0.5)
                return min(max((math.log(v) - a) / (b - a), 0.0), 1.0)
            m = self.multiple_of
            return (float(v) - lo + 0.5 * m) / (hi - lo + m)
        if hi == lo:
            return 0.5
        if self.log:
            return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (float(v) - lo) / (hi - lo)

    def unit_to_embedding(self, u: np.ndarray) -> np.ndarray:
        """Vectorised ``embed_value(from_unit(u))`` for ``u [m]``: the embedding ``[m, embed_width]`` of the
        value each unit coordinate maps to (ints snapped to their bins, choices one-hot), computed with
        numpy instead of one Python call per value (the sampler scores thousands of candidates)."""
        u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
        if self.type in ("categorical", "bool"):
            k = len(self.choice_list)
            idx = np.minimum((u * k).astype(int), k - 1)
            if k <= 2:
                return idx[:, None].astype(np.float64)
            out = np.zeros((len(u), k))
            out[np.arange(len(u)), idx] = 1 / math.sqrt(2)
            return out
        return self.to_unit_array(self.from_unit_array(u))[:, None]

    def from_unit_array(self, u: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`from_unit` for a number parameter: values ``[m]`` (ints as floats)."""
        lo, hi = float(self.low), float(self.high)
        if self.type == "int":
            m = self.multiple_of
            if self.log:
                a, b = math.log(lo - 0.5 if lo > 0.5 else lo), math.log(hi + 0.5)
                v = np.clip(np.round(np.exp(a + u * (b - a))), lo, hi)
                return np.clip(np.round(v / m) * m, lo, hi) if m > 1 else v
            return np.minimum(lo + m * np.floor(u * ((hi - lo) / m + 1)), hi)
        if self.log:
            return np.clip(np.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))), lo, hi)
        return lo + u * (hi - lo)

    def to_unit_array(self, v: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`to_unit` for a number parameter."""
        lo, hi = float(self.low), float(self.high)
        if self.type == "int":
            if self.log:
                a, b = math.log(lo - 0.5 if lo > 0.5 else lo), math.log(hi + 0.5)
                return np.clip((np.log(v) - a) / (b - a), 0.0, 1.0)
            m = self.multiple_of
            return (v - lo + 0.5 * m) / (hi - lo + m)
        if hi == lo:
            return np.full(len(v), 0.5)
        if self.log:
            return (np.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (v - lo) / (hi - lo)

    def embed_width(self) -> int:
        """Embedding coordinates per value: 1 for numbers and 2-way choices, one-hot for more."""
        return len(self.choice_list) if self.type == "categorical" and len(self.choice_list) > 2 else 1

    def embed_value(self, v: Any) -> np.ndarray:
        if self.type in ("int", "float"):
            return np.array([self.to_unit(v)])
        c = self.choice_list
        if len(c) <= 2:
            return np.array([float(c.index(v))])
        out = np.zeros(len(c))
        out[c.index(v)] = 1 / math.sqrt(2)  # mismatch = squared distance 1, as for two choices
        return out

    def embed_pad(self) -> np.ndarray:
        if self.type in ("int", "float"):
            return np.array([PAD])
        return np.full(self.embed_width(), PAD if self.embed_width() == 1 else 0.0)


class StageSpec(_Strict):
    name: str
    params: list[str] = Field(min_length=1)
    trials: int = Field(ge=1, description="finished trials of this stage (the budget)")





class TrainSection(TrainFields):
    """Training of every trial (seeds come from the study); short by default."""

    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=2e-3, gt=0)


class ObjectiveSection(_Strict):
    """``f = f_p + w_c f_c``; ``f_p = 1 - best validation accuracy``; ``f_c`` = complexity divided by
    the complexity of the reference network (the defaults, updated by ``reference``)."""

    w_c: float = Field(default=0.1, ge=0)
    complexity: Literal["params", "flops", "time"] = "params"
    log10: bool = True
    reference: dict[str, Any] = Field(default_factory=dict)


class SamplerSection(_Strict):
    name: Literal["gp", "tpe", "random", "optuna-gp"] = "gp"
    n_initial: int = Field(default=15, ge=1, description="design (or random) points before the model is used; "
                           "gp raises it to dim + 1 while that leaves half of a stage's trials to the model")
    candidates: int = Field(default=1000, ge=16, description="candidates scored by expected improvement")
    restarts: int = Field(default=2, ge=0, description="extra random restarts of the GP hyperparameter fit")
    seed: int = Field(default=0, ge=0)


class PrunerSection(_Strict):
    """Early stopping of clearly bad trials: after ``warmup_epochs``, a trial whose f so far is worse than
    the ``percentile``-th percentile of the finished trials at that epoch is stopped (Optuna's pruner)."""

    enabled: bool = True
    percentile: float = Field(default=90.0, gt=0, lt=100)
    warmup_epochs: int = Field(default=1, ge=0)
    startup_trials: int = Field(default=5, ge=0)


class SyntheticSection(_Strict):
    """A cheap benchmark with a known optimum, for testing and comparing the engine alone (``model:
    synthetic``): no network is trained. Each parameter named in ``optimum`` adds a term

    ``g(d) = (d^2 + 0.05 (1 - cos(4 pi d))) / 1.1`` with ``d`` = unit coordinate of the value minus that of
    the optimum (numbers; a list is averaged over its items), or 0 / 1 for a matching / other choice,

    and ``f_p`` is the mean of the terms (in [0, 1]; 0 exactly at the optimum, a few local minima per
    dimension) plus Gaussian noise of sd ``noise`` (seeded by the trial's seed). Parameters not named in
    ``optimum`` do not change f (irrelevant dimensions the model must learn to ignore)."""

    optimum: dict[str, Any] = Field(min_length=1)
    noise: float = Field(default=0.0, ge=0)


class SearchSpec(_Strict):
    """Everything one search needs; stored with the study so every worker runs the same search."""

    name: str = "search"
    model: Literal["mlp", "cnn", "synthetic"] = "mlp"
    family: str = "structured"
    data: DataSpec = DataSpec()
    train: TrainSection = TrainSection()
    objective: ObjectiveSection = ObjectiveSection()
    sampler: SamplerSection = SamplerSection()
    pruner: PrunerSection = PrunerSection()
    threads: int = Field(default=1, ge=1, description="torch threads per worker")
    max_retries: int = Field(default=2, ge=0, description="retries of a crashed trial")
    space: dict[str, ParamSpec]
    stages: list[StageSpec] = Field(min_length=1)
    synthetic: SyntheticSection | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchSpec:
        allowed = set(MODEL_KEYS[self.model]) | set(TRAIN_KEYS) - {"seed", "epochs", "eval_batch_size"}
        if (self.model == "synthetic") != (self.synthetic is not None):
            raise ValueError("synthetic: the section is required with model: synthetic and allowed only there "
                             f"(model is {self.model!r})")
        if self.synthetic is not None:
            for k, v in self.synthetic.optimum.items():
                if k not in self.space:
                    raise ValueError(f"synthetic.optimum.{k}: not a parameter of the space; declared: "
                                     f"{', '.join(self.space)}")
                if not self.space[k].contains(v):
                    raise ValueError(f"synthetic.optimum.{k}: {v!r} is outside the parameter's range "
                                     f"({self.space[k].describe()})")
        for name, p in self.space.items():
            if self.model != "synthetic" and name not in allowed:
                raise ValueError(f"space.{name}: not a parameter of model {self.model!r}; "
                                 f"allowed: {', '.join(sorted(allowed))}")
            if p.length is not None:
                if p.length not in self.space or self.space[p.length].type != "int" or self.space[p.length].length:
                    raise ValueError(f"space.{name}.length={p.length!r} must name a scalar int parameter of the space")
                if self.space[p.length].low < 0:
                    raise ValueError(f"space.{p.length}: a list length needs low >= 0")
            elif isinstance(p.default, list):
                raise ValueError(f"space.{name}.default: a list default needs length: <int parameter>")
        stage_of: dict[str, int] = {}
        for i, st in enumerate(self.stages):
            for n in st.params:
                if n not in self.space:
                    raise ValueError(f"stages[{i}] ({st.name}): parameter {n!r} is not declared in space; "
                                     f"declared: {', '.join(self.space)}")
                if n in stage_of:
                    raise ValueError(f"stages[{i}] ({st.name}): parameter {n!r} is already searched in "
                                     f"stage {stage_of[n]} ({self.stages[stage_of[n]].name})")
                stage_of[n] = i
        for n, p in self.space.items():
            if p.length and n in stage_of and stage_of.get(p.length, -1) > stage_of[n]:
                raise ValueError(f"space.{n}: its length {p.length!r} is searched in a later stage; "
                                 f"search it in the same or an earlier stage")
        for k in self.objective.reference:
            if k not in self.space and k not in TRAIN_KEYS:
                raise ValueError(f"objective.reference.{k}: not a parameter of the space")
        return self

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    def stage(self, index: int) -> StageSpace:
        return StageSpace(self, index)

    # ---------------------------------------------------------------- configs
    def list_length(self, name: str, config: dict[str, Any]) -> int:
        p = self.space[name]
        assert p.length is not None
        return int(config[p.length]) + p.length_offset

    def max_length(self, name: str) -> int:
        p = self.space[name]
        assert p.length is not None
        return int(self.space[p.length].high) + p.length_offset

    def complete(self, values: dict[str, Any]) -> dict[str, Any]:
        """A full configuration: defaults, overridden by ``values``; lists cut or padded (with the
        default, or their last value) to the length their length parameter says."""
        cfg: dict[str, Any] = {}
        for n, p in self.space.items():
            cfg[n] = values.get(n, p.default)
        for n, p in self.space.items():
            if p.length is None:
                continue
            want = self.list_length(n, cfg)
            v = cfg[n]
            items = list(v) if isinstance(v, (list, tuple)) else [v] * want
            if len(items) < want:
                d = p.default
                fill = d[-1] if isinstance(d, list) else d
                items += [fill] * (want - len(items))
            cfg[n] = items[:want]
        return cfg

    def default_config(self) -> dict[str, Any]:
        return self.complete({})

    def reference_config(self) -> dict[str, Any]:
        return self.complete(dict(self.objective.reference))

    def train_config(self, config: dict[str, Any], seed: int) -> TrainConfig:
        """TrainConfig from the ``train`` section, overridden by searched training parameters."""
        kw = self.train.model_dump()
        kw.update({k: v for k, v in config.items() if k in TRAIN_KEYS})
        kw["batch_size"] = int(kw["batch_size"])
        return TrainConfig(seed=seed, **kw)


@dataclass(frozen=True)
class Slot:
    """One coordinate of the stage's unit cube: parameter ``name``, list item ``item`` (None: scalar)."""

    name: str
    item: int | None

    @property
    def key(self) -> str:
        return self.name if self.item is None else f"{self.name}.{self.item}"


class StageSpace:
    """The searchable part of one stage, given the values fixed by earlier stages."""

    def __init__(self, spec: SearchSpec, index: int) -> None:
        if not 0 <= index < spec.n_stages:
            raise IndexError(f"stage {index} of {spec.n_stages}")
        self.spec, self.index = spec, index
        st = spec.stages[index]
        # length parameters first, so a list's length is known when its items are suggested
        self.params: tuple[str, ...] = tuple(sorted(st.params, key=lambda n: spec.space[n].length is not None))
        self.name = st.name
        self.trials = st.trials
        self._defaults = spec.default_config()

    @cached_property
    def slots(self) -> tuple[Slot, ...]:
        out = []
        for n in self.params:
            if self.spec.space[n].length is None:
                out.append(Slot(n, None))
            else:
                out += [Slot(n, i) for i in range(self.spec.max_length(n))]
        return tuple(out)

    @property
    def dim(self) -> int:
        return len(self.slots)

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna distributions of every slot (list items up to the longest possible list)."""
        return {s.key: self.spec.space[s.name].distribution() for s in self.slots}

    # ---------------------------------------------------------------- values <-> configs
    def length(self, name: str, values: dict[str, Any], fixed: dict[str, Any]) -> int:
        src = self.spec.space[name].length
        assert src is not None
        v = values[src] if src in values else fixed[src] if src in fixed else self._defaults[src]
        return int(v) + self.spec.space[name].length_offset

    def suggest(self, suggest: Callable[[str, BaseDistribution], Any], fixed: dict[str, Any]) -> dict[str, Any]:
        """Ask ``suggest(key, distribution)`` for every value this stage needs; returns the stage's
        values (lists as lists, only as long as their length says)."""
        values: dict[str, Any] = {}
        for n in self.params:
            p = self.spec.space[n]
            if p.length is None:
                values[n] = p.snap(suggest(n, p.distribution()))
            else:
                values[n] = [p.snap(suggest(f"{n}.{i}", p.distribution()))
                             for i in range(self.length(n, values, fixed))]
        return values

    def values_from_flat(self, flat: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
        """Stage values from flat slot values (``width.0``, ...), lists cut to their lengths."""
        return self.suggest(lambda k, d: flat[k], fixed)

    def from_unit(self, u: np.ndarray) -> dict[str, Any]:
        """Flat slot values from a point of the unit cube ``[dim]``."""
        return {s.key: self.spec.space[s.name].from_unit(x) for s, x in zip(self.slots, u)}

    def to_unit(self, flat: dict[str, Any], rng: np.random.Generator | None = None) -> np.ndarray:
        """Unit coordinates of flat slot values; missing slots (items beyond a list's length) get
        random coordinates (or 0.5 without ``rng``)."""
        out = np.empty(self.dim)
        for i, s in enumerate(self.slots):
            if s.key in flat:
                out[i] = self.spec.space[s.name].to_unit(flat[s.key])
            else:
                out[i] = rng.random() if rng is not None else 0.5
        return out

    @staticmethod
    def flatten(values: dict[str, Any]) -> dict[str, Any]:
        flat = {}
        for n, v in values.items():
            if isinstance(v, list):
                flat.update({f"{n}.{i}": x for i, x in enumerate(v)})
            else:
                flat[n] = v
        return flat

    def key(self, values: dict[str, Any]) -> tuple:
        """Hashable identity of a stage point (for "never propose the same network twice")."""
        return tuple((n, tuple(values[n]) if isinstance(values[n], list) else values[n]) for n in self.params)

    # ---------------------------------------------------------------- GP embedding
    @cached_property
    def groups(self) -> tuple[tuple[str, int], ...]:
        """``(parameter, embedding coordinates)`` per lengthscale group, in embedding order."""
        out = []
        for n in self.params:
            p = self.spec.space[n]
            reps = self.spec.max_length(n) if p.length else 1
            out.append((n, p.embed_width() * reps))
        return tuple(out)

    def embed(self, values: dict[str, Any]) -> np.ndarray:
        """The point the kernel sees: one block per parameter, concatenated.

        * a number: its unit coordinate (log-scaled where declared), so 0..1 spans its range;
        * a choice: 0/1 for two choices, a one-hot vector scaled by 1/sqrt(2) for more (a mismatch is a
          squared distance of 1 either way);
        * a list (layer widths, densities, kernel sizes ...): its items in order, padded to the longest
          possible list with :data:`PAD` (= -0.5, "no layer": half a range below the smallest value);
          the difference in length also enters through the length parameter's own coordinate when the
          same stage searches it.

        The map is into a fixed-dimensional Euclidean space, so a squared-exponential kernel on it is
        positive semi-definite for any set of variable-length lists.
        """
        parts = []
        for n in self.params:
            p = self.spec.space[n]
            if p.length is None:
                parts.append(p.embed_value(values[n]))
            else:
                items = list(values[n])
                for i in range(self.spec.max_length(n)):
                    parts.append(p.embed_value(items[i]) if i < len(items) else p.embed_pad())
        return np.concatenate(parts) if parts else np.zeros(0)

    def embed_units(self, U: np.ndarray, fixed: dict[str, Any]) -> np.ndarray:
        """Embeddings ``[m, embedding dim]`` of the networks that the unit points ``U [m, dim]`` map to, i.e.
        ``embed(values_from_flat(from_unit(u), fixed))`` for every row, vectorised."""
        U = np.atleast_2d(np.asarray(U, dtype=np.float64))
        col = {s.key: i for i, s in enumerate(self.slots)}
        lengths: dict[str, np.ndarray] = {}
        parts = []
        for n in self.params:
            p = self.spec.space[n]
            if p.length is None:
                parts.append(p.unit_to_embedding(U[:, col[n]]))
                if p.type == "int":
                    lengths[n] = p.from_unit_array(np.clip(U[:, col[n]], 0.0, 1.0))
                continue
            src = p.length
            if src in lengths:
                ln = lengths[src] + p.length_offset
            else:
                ln = np.full(len(U), self.length(n, {}, fixed), dtype=np.float64)
            pad = p.embed_pad()
            for i in range(self.spec.max_length(n)):
                e = p.unit_to_embedding(U[:, col[f"{n}.{i}"]])
                parts.append(np.where((i < ln)[:, None], e, pad[None, :]))
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(U), 0))

    def group_index(self) -> np.ndarray:
        """Group id of every embedding coordinate ``[embedding dim]``."""
        return np.concatenate([np.full(w, g) for g, (_, w) in enumerate(self.groups)]).astype(int)
