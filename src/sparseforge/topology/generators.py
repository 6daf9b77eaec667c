"""Pattern generators for one junction: structured (fixed in- and out-degrees) and random.

Every generator takes ``seed`` (an int or a ``numpy.random.Generator``) and is deterministic given it.
Families added later (clash-free, RadiX-Net, expander) register themselves in :data:`FAMILIES` with the
same signature ``fn(n_in, n_out, d_out, *, seed, **options) -> Pattern``.
"""

from __future__ import annotations

import inspect
from typing import Callable, Mapping, Protocol

import numpy as np

from .pattern import Pattern, TopologyError

SeedLike = int | np.random.Generator | None


def as_rng(seed: SeedLike) -> np.random.Generator:
    """A numpy Generator from an int seed (or the generator itself)."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def check_degrees(n_in: int, n_out: int, d_out: int, where: str = "junction") -> int:
    """Validate a fixed out-degree and return the implied in-degree ``n_in * d_out / n_out``.

    Raises :class:`TopologyError` naming the numbers and the nearest out-degrees that would work.
    """
    for name, v in (("n_in", n_in), ("n_out", n_out)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise TopologyError(f"{where}: {name} must be a positive integer, got {v!r}")
    if not isinstance(d_out, (int, np.integer)) or not 1 <= d_out <= n_out:
        raise TopologyError(
            f"{where} ({n_in} -> {n_out}): out-degree d_out={d_out!r} must be an integer in [1, {n_out}] "
            f"(a left node cannot connect to more than the {n_out} right nodes)"
        )
    if (n_in * d_out) % n_out:
        ok = valid_out_degrees(n_in, n_out)
        near = sorted(ok, key=lambda d: (abs(d - d_out), d))[:2]
        raise TopologyError(
            f"{where} ({n_in} -> {n_out}): d_out={d_out} gives in-degree n_in*d_out/n_out = "
            f"{n_in}*{d_out}/{n_out} = {n_in * d_out / n_out:.4g}, not an integer; "
            f"d_out must be a multiple of {n_out // np.gcd(n_in, n_out)}, e.g. {' or '.join(map(str, sorted(near)))}"
        )
    return n_in * d_out // n_out


def valid_out_degrees(n_in: int, n_out: int) -> list[int]:
    """All out-degrees ``d_out`` in [1, n_out] for which ``n_in * d_out / n_out`` is an integer."""
    step = n_out // int(np.gcd(n_in, n_out))
    return list(range(step, n_out + 1, step))


def structured(n_in: int, n_out: int, d_out: int, *, seed: SeedLike = 0) -> Pattern:
    """Random pattern with every left node of out-degree ``d_out`` and every right node of in-degree
    ``d_in = n_in * d_out / n_out`` (Dey's "adjmat_basic").

    Right nodes are filled in order; each picks its ``d_in`` left nodes among those whose out-degree is
    not yet full, with probability proportional to their remaining capacity. A left node whose remaining
    capacity equals the number of right nodes still to fill is forced in, which (by the Gale-Ryser
    condition: every remaining capacity <= remaining right nodes) guarantees that every constraint is met.
    """
    d_in = check_degrees(n_in, n_out, d_out)
    rng = as_rng(seed)
    cap = np.full(n_in, d_out, dtype=np.int64)
    ell = np.empty((n_out, d_in), dtype=np.int64)
    for j in range(n_out):
        remaining = n_out - j
        forced = np.flatnonzero(cap == remaining)
        k = d_in - forced.size
        if k:
            free = np.flatnonzero((cap > 0) & (cap < remaining))
            w = cap[free].astype(np.float64)
            chosen = rng.choice(free, size=k, replace=False, p=w / w.sum())
            row = np.concatenate([forced, chosen])
        else:
            row = forced
        ell[j] = np.sort(row)
        cap[row] -= 1
    return Pattern.from_ell(ell, n_in)


def random_uniform(
    n_in: int,
    n_out: int,
    d_out: float | None = None,
    *,
    density: float | None = None,
    edges: int | None = None,
    mode: str = "fixed",
    seed: SeedLike = 0,
) -> Pattern:
    """Unconstrained random pattern (degrees vary): the baseline the seeds compare against.

    Give exactly one of ``d_out`` (mean out-degree; density ``d_out / n_out``), ``density`` or ``edges``.
    ``mode="fixed"`` places exactly ``round(density * n_in * n_out)`` edges uniformly without replacement;
    ``mode="bernoulli"`` keeps each of the ``n_in * n_out`` edges independently with probability ``density``.
    """
    given = [x is not None for x in (d_out, density, edges)]
    if sum(given) != 1:
        raise TopologyError("random: give exactly one of d_out, density or edges")
    total = n_in * n_out
    if d_out is not None:
        density = d_out / n_out
    if edges is not None:
        density = edges / total
    assert density is not None
    if not 0 < density <= 1:
        raise TopologyError(f"random ({n_in} -> {n_out}): density={density:.4g} must be in (0, 1]")
    rng = as_rng(seed)
    if mode == "fixed":
        k = edges if edges is not None else int(round(density * total))
        flat = rng.choice(total, size=max(k, 1), replace=False)
    elif mode == "bernoulli":
        flat = np.flatnonzero(rng.random(total) < density)
    else:
        raise TopologyError(f"random: mode={mode!r} must be 'fixed' or 'bernoulli'")
    return Pattern.from_edges(flat // n_in, flat % n_in, n_in, n_out)


class Family(Protocol):
    def __call__(self, n_in: int, n_out: int, d_out: int, *, seed: SeedLike = ..., **options) -> Pattern: ...


#: Per-junction pattern families by name. Each maps (n_in, n_out, d_out, seed, options) to a Pattern.
FAMILIES: dict[str, Callable[..., Pattern]] = {
    "structured": structured,
    "random": random_uniform,
}


#: Families whose out-degrees are restricted beyond :func:`valid_out_degrees`: name -> a function of
#: ``(n_in, n_out, **options)`` giving the out-degrees the family builds (ascending; [] when none, or when
#: its options are invalid: the generator then says why). Densities round to these.
OUT_DEGREES: dict[str, Callable[..., list[int]]] = {}


def register_family(name: str, fn: Callable[..., Pattern],
                    out_degrees: Callable[..., list[int]] | None = None) -> None:
    """Make ``fn`` available as ``family=name`` in :func:`sparseforge.topology.design`; ``out_degrees``
    (see :data:`OUT_DEGREES`) when the family builds fewer out-degrees than :func:`valid_out_degrees`."""
    FAMILIES[name] = fn
    if out_degrees is None:
        OUT_DEGREES.pop(name, None)
    else:
        OUT_DEGREES[name] = out_degrees


def check_family_options(family: str, options: Mapping[str, object]) -> None:
    """TopologyError unless every key of ``options`` is one the family's generator takes (its keyword-only
    parameters besides ``seed``; a wrapper that forwards them names its generator in ``takes``; a generator
    with ``**options`` and no ``takes`` accepts any)."""
    gen = FAMILIES[family]
    params = inspect.signature(getattr(gen, "takes", gen)).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and n != "seed"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = f"takes the options {', '.join(allowed)}" if allowed else "takes no options"
        raise TopologyError(f"family {family!r} {takes}; got {', '.join(map(repr, unknown))}")


def family_out_degrees(family: str, n_in: int, n_out: int, **options) -> list[int]:
    """The out-degrees ``family`` builds at ``n_in -> n_out`` with ``options`` (ascending; [] when none)."""
    rule = OUT_DEGREES.get(family)
    return valid_out_degrees(n_in, n_out) if rule is None else rule(n_in, n_out, **options)
