"""Optuna samplers for a search stage: the GP + EI engine of seed 003, and the baselines.

:class:`GPEISampler` is a custom :class:`optuna.samplers.BaseSampler`. Its relative search space is the
whole stage (every list item up to the longest list; items beyond a trial's list length are ignored),
so Optuna asks it once per trial (``sample_relative``) and it proposes one complete network:

1. the first ``n_design`` trials of the stage (:func:`design_size`: at least ``n_initial``, up to
   ``dim + 1`` but at most half the stage's budget), or while fewer than 2 observations exist, take
   point ``#trial.number`` of a space-filling design (:meth:`GPEISampler.design_point`): scrambled Sobol
   (scipy.stats.qmc.Sobol) in the continuous coordinates, and every few-valued discrete coordinate
   (depth, a choice, a bool) stratified so that ``k`` consecutive design points take each of its ``k``
   values once (two Sobol points cannot cover three depths, and then the model never sees one of them).
   The design is indexed by trial number, so a restarted or second worker continues it;
2. afterwards it fits the GP of :mod:`sparseforge.search.gp` to the finished (and pruned) trials
   (hyperparameters by marginal likelihood, warm-started from this sampler's previous fit) plus the
   ``prior`` observations handed over from earlier stages (trials of earlier stages that lie in this
   stage's slice of the space, e.g. the previous stage's best at this stage's defaults: they cost
   nothing, set the incumbent EI must beat, and are never re-proposed), conditions it on the trials
   other workers are running (kriging believer: a pending point "observed" at its posterior mean loses
   its uncertainty, so N workers do not propose N near-duplicates), and maximises expected improvement
   over the noise-free incumbent by a cheap multi-start search: ``candidates`` points (70% uniform, 30%
   perturbations of the five best trials) are scored, then the ``LOCAL_STARTS`` best, plus the best
   candidate of every value of every few-valued discrete coordinate (so an unexplored depth or choice
   gets its EI maximised too, not just sampled once), are refined by ``LOCAL_ROUNDS`` rounds of shrinking
   random perturbations in the unit cube (ints and choices move by whole bins there, so every point
   scored is a real network). It proposes the best point that is neither finished nor running.
   The GP is fitted to the objective values after the monotone warp :data:`WARP`
   (:func:`~sparseforge.search.gp.output_warp`; default none: the values are ``log10 f`` already).

Every random choice is seeded from ``(seed, stage, trial.number)``.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Callable, Sequence

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import qmc

from .gp import GaussianProcess, Hyper, expected_improvement, output_warp
from .space import StageSpace

SAMPLERS = ("gp", "tpe", "random", "optuna-gp")
MIN_POINTS = 2
LOCAL_TOP = 5
LOCAL_SD = 0.12
#: a full hyperparameter fit (not warm-started) every REFIT observations
REFIT = 8
#: EI refinement: starts, rounds, perturbations per start and round, perturbation sd per round (unit cube)
LOCAL_STARTS = 5
LOCAL_ROUNDS = 3
LOCAL_MOVES = 24
LOCAL_STEPS = (0.08, 0.04, 0.02)
#: a discrete coordinate with at most this many values is stratified in the design and gets one EI start
#: per value (depths, choices, bools; not 32 layer widths)
MAX_STRATA = 6
#: monotone warp of the objective values before the GP fit (:func:`sparseforge.search.gp.output_warp`):
#: "none"; "yeo-johnson" or "rank" for the ablations in the README (better at w_c = 1 on the Fashion
#: CNN, worse at w_c = 0.1 and on the smooth synthetic benchmark)
WARP = "none"
#: candidates (in EI order) and then random points checked against the floor when no refined start passes
FLOOR_CHECKS = 200


def design_size(n_initial: int, dim: int, trials: int) -> int:
    """Trials of a stage's space-filling design: ``n_initial``, raised to ``dim + 1`` (enough points to
    see every coordinate move) as long as that leaves half the stage's ``trials`` to the model."""
    return max(int(n_initial), min(int(dim) + 1, int(trials) // 2))


def discrete_values(p: Any) -> list | None:
    """Every value of a parameter (one list item) with at most :data:`MAX_STRATA` values; None for a
    float or a many-valued int."""
    if p.type in ("categorical", "bool"):
        vals = p.choice_list
    elif p.type == "int":
        vals = list(range(int(p.low), int(p.high) + 1, p.multiple_of))
    else:
        return None
    return vals if len(vals) <= MAX_STRATA else None


class GPEISampler(BaseSampler):
    """Gaussian-process + expected-improvement proposals over one :class:`StageSpace`.

    Args:
        stage: the stage's space.
        fixed: values fixed by earlier stages (they give the lengths of lists this stage does not search).
        n_initial: Sobol points before the GP is used.
        candidates: points scored by EI per proposal.
        restarts: extra random starts of the hyperparameter fit.
        seed: base seed.
        threads: BLAS threads for the GP (1 keeps fits cheap on shared cores).
        use_pending: condition on running trials (kriging believer); False only to measure what it buys.
        prior: ``(values, objective)`` observed before this stage at points of its space (stage values
            as :meth:`StageSpace.values_from_flat` gives them), e.g. from :func:`stage_prior`.
        n_design: trials of the space-filling design; None: :func:`design_size`.
        floor: the least objective value of a full configuration, known before training
            (:func:`~sparseforge.search.objective.complexity_floor`); a network whose floor is not below
            the best value observed cannot become the best trial and is never proposed. None: no floor.
    """

    def __init__(self, stage: StageSpace, fixed: dict[str, Any] | None = None, *, n_initial: int = 15,
                 candidates: int = 1000, restarts: int = 2, seed: int = 0, threads: int | None = 1,
                 use_pending: bool = True, prior: Sequence[tuple[dict[str, Any], float]] = (),
                 n_design: int | None = None, floor: Callable[[dict[str, Any]], float] | None = None) -> None:
        self.stage, self.fixed = stage, dict(fixed or {})
        self.floor = floor
        self.use_pending = use_pending
        self.n_initial, self.candidates, self.restarts = n_initial, candidates, restarts
        self.n_design = design_size(n_initial, stage.dim, stage.trials) if n_design is None else int(n_design)
        self.prior = [(dict(v), float(y)) for v, y in prior if math.isfinite(float(y))]
        # few-valued discrete coordinates: (column, values) for the design's strata and the EI starts
        space = stage.spec.space
        self._discrete = [(j, vals) for j, s in enumerate(stage.slots)
                          if (vals := discrete_values(space[s.name])) is not None]
        self.seed, self.threads = seed, threads
        self._fallback = RandomSampler(seed=seed)
        self.last_phase: str | None = None
        self.last_time_s: float = 0.0
        self.last_gp: GaussianProcess | None = None
        self._hyper: Hyper | None = None  # previous fit: warm start of the next one

    # ------------------------------------------------------------------ Optuna interface
    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.stage.distributions()

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        t0 = time.perf_counter()
        try:
            return self._propose(study, trial)
        finally:
            self.last_time_s = time.perf_counter() - t0

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    # ------------------------------------------------------------------ proposals
    def _rng(self, trial: FrozenTrial) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.stage.index, trial.number])

    def _values(self, t: FrozenTrial) -> dict[str, Any] | None:
        try:
            return self.stage.values_from_flat(t.params, self.fixed)
        except KeyError:  # a running trial that has not suggested everything yet
            return None

    def observations(self, study: Study) -> tuple[list[dict], np.ndarray, list[dict]]:
        """(values, objective) of the ``prior`` observations and of finished and pruned trials with a finite
        value; values of running ones."""
        trials = study.get_trials(deepcopy=False)
        obs, ys, pending = [v for v, _ in self.prior], [y for _, y in self.prior], []
        for t in trials:
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.value is not None and math.isfinite(t.value):
                v = self._values(t)
                if v is not None:
                    obs.append(v)
                    ys.append(float(t.value))
            elif t.state == TrialState.RUNNING:
                v = self._values(t)
                if v is not None:
                    pending.append(v)
        return obs, np.asarray(ys, dtype=np.float64), pending

    def sobol_point(self, index: int) -> np.ndarray:
        """Point ``index`` of the stage's scrambled Sobol sequence ``[dim]``."""
        m = max(int(math.ceil(math.log2(index + 1))), 0)
        sob = qmc.Sobol(d=self.stage.dim, scramble=True, seed=np.random.default_rng([self.seed, self.stage.index, 7]))
        return sob.random_base2(m)[index] if m > 0 else sob.random(1)[0]

    def design_point(self, index: int) -> np.ndarray:
        """Point ``index`` of the stage's design ``[dim]``: :meth:`sobol_point`, with every few-valued
        discrete coordinate replaced by a stratum: points ``b*k .. b*k + k-1`` take each of its ``k``
        values once, in an order drawn per block ``b`` (a Latin design over the discrete coordinates)."""
        u = self.sobol_point(index)
        space = self.stage.spec.space
        for j, vals in self._discrete:
            block, pos = divmod(index, len(vals))
            order = np.random.default_rng([self.seed, self.stage.index, 11, j, block]).permutation(len(vals))
            u[j] = space[self.stage.slots[j].name].to_unit(vals[int(order[pos])])
        return u

    def _propose(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        rng = self._rng(trial)
        obs, ys, pending = self.observations(study)
        seen = {self.stage.key(v) for v in obs + pending}
        best_seen = float(ys.min()) if len(ys) else math.inf
        if trial.number < self.n_design or len(obs) < MIN_POINTS:
            self.last_phase = "sobol"
            flat = self.stage.from_unit(self.design_point(trial.number))
            for _ in range(100):  # a repeated or hopeless network: move on at random
                values = self.stage.values_from_flat(flat, self.fixed)
                if self.stage.key(values) not in seen and not self.hopeless(values, best_seen):
                    break
                flat = self.stage.from_unit(rng.random(self.stage.dim))
            return flat
        self.last_phase = "gp"
        groups = self.stage.group_index()
        X = np.stack([self.stage.embed(v) for v in obs])
        # warm start from the previous fit; a full fit (prior centre + random restarts) every REFIT trials
        warm = self._hyper if len(obs) % REFIT else None
        gp = GaussianProcess(X, output_warp(ys, WARP), groups, restarts=self.restarts if warm is None else 0,
                             seed=int(rng.integers(2**31)), threads=self.threads, warm_start=warm)
        self._hyper = gp.hyper
        self.last_gp = gp
        best = gp.incumbent()
        seen_e = {_row_key(e) for e in X}
        if pending:
            P = np.stack([self.stage.embed(v) for v in pending])
            seen_e |= {_row_key(e) for e in P}
            if self.use_pending:
                gp = gp.condition_on_pending(P)
        units, embs = self._distinct(self._candidates(rng, obs, ys), seen_e)
        if not len(units):  # everything proposed already exists: fall back to a random point
            return self.stage.from_unit(rng.random(self.stage.dim))
        pool_u, pool_ei = self.maximize_ei(gp, best, units, embs, seen_e, rng)
        if self.floor is None:
            return self.stage.from_unit(pool_u[int(np.argmax(pool_ei))])
        # the best refined start that can still beat the best value seen; else the best such candidate

        def ranked():
            yield from (pool_u[i] for i in np.argsort(-pool_ei))
            mu, sd = gp.predict(embs)
            yield from (units[i] for i in np.argsort(-expected_improvement(mu, sd, best))[:FLOOR_CHECKS])
            yield from rng.random((FLOOR_CHECKS, self.stage.dim))

        for u in ranked():
            flat = self.stage.from_unit(u)
            values = self.stage.values_from_flat(flat, self.fixed)
            if self.stage.key(values) not in seen and not self.hopeless(values, best_seen):
                return flat
        return self.stage.from_unit(pool_u[int(np.argmax(pool_ei))])  # nothing passes: the model's choice

    def hopeless(self, values: dict[str, Any], best_seen: float) -> bool:
        """Whether the network of stage ``values`` cannot beat ``best_seen`` (the lowest value observed)
        whatever it learns: its :attr:`floor` (a bound known before training) is not below it."""
        if self.floor is None or not math.isfinite(best_seen):
            return False
        return self.floor(self.stage.spec.complete({**self.fixed, **values})) >= best_seen

    def maximize_ei(self, gp: GaussianProcess, best: float, units: np.ndarray, embs: np.ndarray, seen: set,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Multi-start maximisation of EI over ``f* = best``: score the candidate networks ``units [m, dim]``
        (embeddings ``embs [m, D]``), then refine the starts of :meth:`_starts` by ``LOCAL_ROUNDS`` rounds of
        shrinking perturbations (networks in ``seen``, keys of embeddings, are skipped; scored ones join
        it). Returns the refined starts ``[k, dim]`` and their EI ``[k]`` (the proposal is the argmax)."""
        mu, sd = gp.predict(embs)
        ei = expected_improvement(mu, sd, best)
        top = self._starts(units, ei)
        pool_u, pool_ei = units[top].copy(), ei[top].copy()
        owner = np.repeat(np.arange(len(pool_u)), LOCAL_MOVES)
        for step in LOCAL_STEPS[:LOCAL_ROUNDS]:
            base = pool_u[owner]
            mask = rng.random(base.shape) < max(2.0 / max(self.stage.dim, 1), 0.25)
            moves = np.clip(base + mask * step * rng.standard_normal(base.shape), 0.0, 1.0)
            self._discrete_moves(moves, base, mask, rng)
            mu_, e_, kept = self._distinct(moves, seen, with_rows=True)
            if not len(mu_):
                continue
            m2, s2 = gp.predict(e_)
            ei2 = expected_improvement(m2, s2, best)
            for j in np.argsort(-ei2):  # best first: the first improvement of each start wins
                o = owner[kept[j]]
                if ei2[j] > pool_ei[o]:
                    pool_u[o], pool_ei[o] = mu_[j], ei2[j]
        return pool_u, pool_ei

    def _discrete_moves(self, moves: np.ndarray, base: np.ndarray, mask: np.ndarray,
                        rng: np.random.Generator) -> None:
        """In place: every moved few-valued discrete coordinate of ``moves [m, dim]`` goes to another value
        (an int to a neighbour, a choice to any other), since a small continuous step would stay in a bin
        a sixth of the cube wide."""
        space = self.stage.spec.space
        for j, vals in self._discrete:
            rows = np.flatnonzero(mask[:, j])
            if not len(rows):
                continue
            p, k = space[self.stage.slots[j].name], len(vals)
            idx = _value_index(p, k, base[rows, j])
            if p.type == "int":
                new = np.clip(idx + rng.choice([-1, 1], size=len(rows)), 0, k - 1)
            else:
                new = (idx + rng.integers(1, k, size=len(rows))) % k
            centres = np.array([p.to_unit(v) for v in vals])
            moves[rows, j] = centres[new]

    def _starts(self, units: np.ndarray, ei: np.ndarray) -> np.ndarray:
        """Rows of ``units [m, dim]`` to refine: the ``LOCAL_STARTS`` highest ``ei [m]``, and the highest
        of every value of every few-valued discrete coordinate (each depth, each choice), once each."""
        rows = list(np.argsort(-ei)[:LOCAL_STARTS])
        space = self.stage.spec.space
        for j, vals in self._discrete:
            bins = _value_index(space[self.stage.slots[j].name], len(vals), units[:, j])
            for b in range(len(vals)):
                idx = np.flatnonzero(bins == b)
                if len(idx):
                    rows.append(int(idx[np.argmax(ei[idx])]))
        return np.array(sorted(set(rows), key=rows.index), dtype=int)

    def _distinct(self, units: np.ndarray, seen: set, with_rows: bool = False):
        """Unit points ``[m, dim]`` -> (units, embeddings[, rows in ``units``]) of those whose network is
        not in ``seen`` (keys of embeddings; they join it), each network once."""
        embs = self.stage.embed_units(units, self.fixed)
        rounded = np.round(embs, 9) + 0.0
        rows = []
        for i, r in enumerate(rounded):
            key = r.tobytes()
            if key not in seen:
                seen.add(key)
                rows.append(i)
        rows_a = np.asarray(rows, dtype=int)
        out = (units[rows_a], embs[rows_a])
        return (*out, rows_a) if with_rows else out

    def _candidates(self, rng: np.random.Generator, obs: Sequence[dict], ys: np.ndarray) -> np.ndarray:
        """Candidate unit points ``[candidates, dim]``: 70% uniform, 30% perturbations (sd ``LOCAL_SD`` in
        a random subset of coordinates, at least one) of the ``LOCAL_TOP`` best observations; slots beyond
        a list's length get random coordinates."""
        n_local = int(0.3 * self.candidates)
        dim = self.stage.dim
        uniform = rng.random((self.candidates - n_local, dim))
        if n_local == 0 or dim == 0:
            return uniform
        best = np.argsort(ys)[:LOCAL_TOP]
        centres = np.stack([self.stage.to_unit(self.stage.flatten(obs[int(i)]), rng) for i in best])
        base = centres[np.arange(n_local) % len(best)]
        move = rng.random((n_local, dim)) < max(1.0 / max(dim, 1), 0.3)
        move[np.arange(n_local), rng.integers(dim, size=n_local)] = True
        local = np.clip(base + move * LOCAL_SD * rng.standard_normal((n_local, dim)), 0.0, 1.0)
        return np.vstack([uniform, local])


def _value_index(p: Any, k: int, u: np.ndarray) -> np.ndarray:
    """Index in :func:`discrete_values` of the value each unit coordinate ``u [m]`` maps to (vectorised
    ``from_unit``; ``k`` values)."""
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    if p.type in ("categorical", "bool"):
        return np.minimum((u * k).astype(int), k - 1)
    return np.round((p.from_unit_array(u) - p.low) / p.multiple_of).astype(int)


def _row_key(e: np.ndarray) -> bytes:
    """Identity of a network from its embedding (items beyond a list's length are padding, so two unit
    points of one network share it); rounded so float noise does not split one network in two."""
    return (np.round(e, 9) + 0.0).tobytes()  # + 0.0: -0.0 and 0.0 are one key


def make_sampler(name: str, stage: StageSpace, fixed: dict[str, Any], *, n_initial: int = 15,
                 candidates: int = 1000, restarts: int = 2, seed: int = 0, salt: Sequence[int] = (),
                 prior: Sequence[tuple[dict[str, Any], float]] = (),
                 floor: Callable[[dict[str, Any]], float] | None = None) -> BaseSampler:
    """A sampler by name: ``"gp"`` (:class:`GPEISampler`), or the baselines ``"tpe"`` (multivariate TPE),
    ``"random"`` and ``"optuna-gp"`` (Optuna's own GPSampler), with ``n_initial`` random start-up trials.

    Optuna's samplers keep their random state in memory, so a restarted worker seeded alike would repeat
    their proposals: ``salt`` (e.g. the number of trials already in the stage and the worker's rank)
    is mixed into their seed. ``prior`` (observations of earlier stages in this stage's space) and
    ``floor`` (the objective's bound known before training) are used by ``"gp"`` only; Optuna's samplers
    have no way to take them.
    """
    if name == "gp":
        return GPEISampler(stage, fixed, n_initial=n_initial, candidates=candidates, restarts=restarts, seed=seed,
                           prior=prior, floor=floor)
    s = int(np.random.default_rng([seed, stage.index, *salt]).integers(2**31))
    from optuna.exceptions import ExperimentalWarning
    from optuna.samplers import GPSampler, TPESampler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        if name == "random":
            return RandomSampler(seed=s)
        if name == "tpe":
            return TPESampler(seed=s, n_startup_trials=n_initial, multivariate=True, group=True, constant_liar=True)
        if name == "optuna-gp":
            return GPSampler(seed=s, n_startup_trials=n_initial)
    raise ValueError(f"sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
