"""Sparsity schedules: the target sparsity as a pure function of the optimizer step.

A schedule ``s`` maps a step ``t >= 0`` (optimizer steps taken so far) to a sparsity in ``[0, 1)``
(fraction of weights pruned) and is monotonically non-decreasing in ``t``, so a pruned weight never
needs to come back. Every schedule is a small frozen dataclass: calling it is the whole behaviour,
:meth:`to_dict` / :func:`schedule_from_dict` round-trip it through configs (JSON/YAML).

Following ``torch/ao/pruning/scheduler/cubic_scheduler.py`` (Zhu & Gupta 2017, "To prune, or not to
prune"), the cubic schedule is

    s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_1 - t_0))^3      for t_0 <= t <= t_1,

0 before ``t_0`` (dense training) and ``s_f`` after ``t_1``; with ``every = k`` the step is first
rounded down to ``t_0 + k * floor((t - t_0) / k)``, so the target only changes (and pruning only
happens) every ``k`` steps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

__all__ = [
    "Schedule",
    "Constant",
    "Linear",
    "Cubic",
    "Piecewise",
    "FunctionSchedule",
    "SCHEDULES",
    "schedule_from_dict",
    "check_monotone",
]


def _check_sparsity(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name}={value!r}: a sparsity must be a number in [0, 1)")


def _check_steps(start: int, end: int, every: int) -> None:
    for name, v in (("start", start), ("end", end), ("every", every)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name}={v!r}: steps must be non-negative integers")
    if end < start:
        raise ValueError(f"end={end} must be >= start={start}")
    if every < 1:
        raise ValueError(f"every={every}: pruning frequency must be >= 1 step")


class Schedule:
    """Base of all schedules: ``schedule(step) -> sparsity``; subclasses are frozen dataclasses."""

    kind: str = ""

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def final(self) -> float:
        """The sparsity reached at the end (``s(t)`` for large ``t``)."""
        raise NotImplementedError  # pragma: no cover

    def to_dict(self) -> dict:
        """JSON/YAML-ready description; :func:`schedule_from_dict` rebuilds the schedule."""
        return {"kind": self.kind, **asdict(self)}  # type: ignore[call-overload]

    def quantize(self, step: int, start: int, every: int) -> int:
        """The step rounded down to the last pruning step ``start + k * every`` (``step`` if before start)."""
        if step <= start:
            return step
        return start + ((step - start) // every) * every


@dataclass(frozen=True)
class Constant(Schedule):
    """``0`` before step ``start``, ``sparsity`` from then on (one-shot pruning at ``start``)."""

    sparsity: float
    start: int = 0
    kind = "constant"

    def __post_init__(self) -> None:
        _check_sparsity("sparsity", self.sparsity)
        _check_steps(self.start, self.start, 1)

    def __call__(self, step: int) -> float:
        return float(self.sparsity) if step >= self.start else 0.0

    @property
    def final(self) -> float:
        return float(self.sparsity)


@dataclass(frozen=True)
class _Ramp(Schedule):
    """0 before ``start``; ``initial`` at ``start`` rising to ``target`` at ``end`` along :meth:`ramp`;
    ``target`` from ``end`` on. With ``every = k`` the value changes only every ``k`` steps."""

    initial: float = 0.0
    target: float = 0.9
    start: int = 0
    end: int = 1000
    every: int = 1

    def __post_init__(self) -> None:
        _check_sparsity("initial", self.initial)
        _check_sparsity("target", self.target)
        _check_steps(self.start, self.end, self.every)
        if self.target < self.initial:
            raise ValueError(f"target={self.target} < initial={self.initial}: schedules must not decrease")

    def ramp(self, frac: float) -> float:  # pragma: no cover - abstract
        """The sparsity at fraction ``frac`` in [0, 1) of the way from ``start`` to ``end``."""
        raise NotImplementedError

    def __call__(self, step: int) -> float:
        if step < self.start:
            return 0.0
        if step >= self.end:
            return float(self.target)
        t = self.quantize(step, self.start, self.every)
        return float(self.ramp((t - self.start) / (self.end - self.start)))

    @property
    def final(self) -> float:
        return float(self.target)


@dataclass(frozen=True)
class Linear(_Ramp):
    """``initial`` at ``start`` rising linearly to ``target`` at ``end`` (0 before start)."""

    kind = "linear"

    def ramp(self, frac: float) -> float:
        return self.initial + (self.target - self.initial) * frac


@dataclass(frozen=True)
class Cubic(_Ramp):
    """Zhu & Gupta: ``s_t = s_f + (s_i - s_f)(1 - (t - start)/(end - start))^3`` between start and end,
    with ``s_i = initial`` and ``s_f = target``.

    0 before ``start``, ``target`` from ``end`` on; prunes every ``every`` steps. Fast at first
    (many redundant weights), slow near the end (few weights left to lose).
    """

    kind = "cubic"

    def ramp(self, frac: float) -> float:
        return self.target + (self.initial - self.target) * (1.0 - frac) ** 3


@dataclass(frozen=True)
class Piecewise(Schedule):
    """A user-given monotone ``s(t)`` as points ``[(step, sparsity), ...]``, linearly interpolated.

    0 before the first point's step (unless it is step 0), the last sparsity after the last point. Steps
    must increase strictly and sparsities must not decrease (checked).
    """

    points: tuple[tuple[int, float], ...] = field(default_factory=tuple)
    kind = "piecewise"

    def __post_init__(self) -> None:
        pts = tuple((int(t), float(s)) for t, s in self.points)
        object.__setattr__(self, "points", pts)
        if not pts:
            raise ValueError("points: give at least one (step, sparsity) pair")
        for i, (t, s) in enumerate(pts):
            _check_sparsity(f"points[{i}] sparsity", s)
            if t < 0:
                raise ValueError(f"points[{i}] step={t} must be >= 0")
            if i and (t <= pts[i - 1][0] or s < pts[i - 1][1]):
                raise ValueError(
                    f"points[{i}]=({t}, {s}) after {pts[i - 1]}: steps must increase and sparsities must not decrease"
                )

    def __call__(self, step: int) -> float:
        pts = self.points
        if step < pts[0][0]:
            return 0.0
        for (t0, s0), (t1, s1) in zip(pts[:-1], pts[1:]):
            if step < t1:
                return float(s0 + (s1 - s0) * (step - t0) / (t1 - t0))
        return float(pts[-1][1])

    @property
    def final(self) -> float:
        return float(self.points[-1][1])

    def to_dict(self) -> dict:
        return {"kind": self.kind, "points": [list(p) for p in self.points]}


@dataclass(frozen=True)
class FunctionSchedule(Schedule):
    """Any Python ``fn(step) -> sparsity`` (not serialisable; use :class:`Piecewise` in configs).

    ``horizon`` is the step from which ``fn`` is constant (used for :attr:`final` and by
    :func:`check_monotone`). The function is checked for monotonicity on ``[0, horizon]`` when made.
    """

    fn: Callable[[int], float]
    horizon: int = 1000
    kind = "function"

    def __post_init__(self) -> None:
        check_monotone(self.fn, range(0, self.horizon + 1, max(1, self.horizon // 1000)))

    def __call__(self, step: int) -> float:
        s = float(self.fn(step))
        _check_sparsity(f"s({step})", s)
        return s

    @property
    def final(self) -> float:
        return self(self.horizon)

    def to_dict(self) -> dict:
        raise TypeError("a FunctionSchedule wraps Python code and cannot go into a config; use Piecewise points")


SCHEDULES: dict[str, type[Schedule]] = {
    "constant": Constant, "linear": Linear, "cubic": Cubic, "piecewise": Piecewise,
}


def schedule_from_dict(d: dict) -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.to_dict` output (``{"kind": ..., fields...}``)."""
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in SCHEDULES:
        raise ValueError(f"schedule kind={kind!r}: choose one of {sorted(SCHEDULES)}")
    if kind == "piecewise":
        d["points"] = tuple(tuple(p) for p in d.get("points", ()))
    try:
        return SCHEDULES[kind](**d)
    except TypeError as e:
        raise ValueError(f"schedule {kind}: {e}") from None


def check_monotone(schedule: Callable[[int], float], steps: Sequence[int] | range) -> None:
    """Raise ``ValueError`` naming the first step where ``schedule`` decreases or leaves [0, 1)."""
    prev, prev_t = -math.inf, None
    for t in steps:
        s = float(schedule(t))
        if not 0.0 <= s < 1.0:
            raise ValueError(f"s({t}) = {s}: a sparsity must be in [0, 1)")
        if s < prev:
            raise ValueError(f"s({t}) = {s} < s({prev_t}) = {prev}: the schedule must be non-decreasing")
        prev, prev_t = s, t
