"""RadiX-Nets: deterministic sparse topologies from mixed-radix numeral systems.

Robinett & Kepner, "RadiX-Net: Structured Sparse Matrices for Deep Neural Networks" (2019), as used by
Alford, Robinett, Milechin & Kepner (seed 004).

**Mixed-radix layer.** On ``N'`` nodes, a radix ``r`` at place value ``v`` connects left node ``j`` to the
right nodes ``(j + m v) mod N'`` for ``m = 0..r-1``. Its adjacency (left -> right) is
``sum_{m<r} P^{m v}`` with ``P`` the cyclic shift; in this library's weight orientation
(``weight[n_out, n_in]``) right node ``i`` reads from left nodes ``(i - m v) mod N'``. Every node has in-
and out-degree ``r`` as long as the ``r`` shifts ``m v`` are distinct mod ``N'``.

**Mixed-radix system.** A list ``(r_1, ..., r_k)`` with product ``N'`` gives ``k`` layers; layer ``i``
uses place value ``v_i = r_1 ... r_{i-1}``. Every integer ``s < N'`` has exactly one mixed-radix expansion
``s = sum_i m_i v_i`` (``m_i < r_i``), so the ``k`` layers together connect every input to every output
by exactly one path: their path-count matrix is the all-ones matrix ``J``.

**Extended system (several lists).** Lists are concatenated; each list restarts its place values at 1.
As in the paper (and its reference code), every list but the last must have product exactly ``N'`` (the
product of the first list), and the last list's product ``p`` need only *divide* ``N'``. The last list's
layers then have path-count matrix ``sum_{s<p} P^s`` (a band) and the whole system has path-count matrix
``N'^(M-2) * p * J`` for ``M >= 2`` lists (``J`` for one list): every input reaches every output, all by
the same number of paths.

**Kronecker step.** Given dense widths ``B = (B_0, ..., B_L)`` (``L`` = total number of radices), layer
``l`` has ``N' B_l`` nodes and junction ``l`` is ``kron(W_l, ones(B_{l+1}, B_l))`` in weight orientation:
node ``a`` of the mixed-radix layer becomes the block of nodes ``a B_l .. a B_l + B_l - 1``
(``layout="radix-major"``, the default). ``layout="block-major"`` uses ``kron(ones, W_l)`` instead
(node ``b N' + a``), which is the node order of the paper's reference code; the two differ only by a
relabelling of the nodes in each layer. The Kronecker product keeps densities (``r / N'`` per junction),
constant degrees (in ``r B_l``, out ``r B_{l+1}``) and path symmetry; path counts are multiplied by
``B_1 ... B_{L-1}``.

The seed's examples, as read here:

* "radix values (2, 2, 2), 75% sparsity": ``radix_net([[2, 2, 2]], [1, 1, 1, 1])``; ``N' = 8``, each
  junction has degree 2 of 8 (density 25%), and every input reaches every output by exactly one path.
* "LeNet 300-100: N = [10, 10], B = [30, 8, 1] = 90% sparse": one mixed-radix system ``(10, 10)``
  (``N' = 100``, two junctions), widths ``(30, 8, 1)``: ``radix_net([[10, 10]], [30, 8, 1])`` gives
  layer sizes ``(3000, 800, 100)``, density ``10/100 = 10%`` in both junctions (90% sparse), 8 paths
  between every input-output pair. (Reading ``N = [10, 10]`` as two lists ``[[10], [10]]`` would give
  ``N' = 10`` and radix 10 on 10 nodes, i.e. dense junctions, contradicting the quoted 90%.)
"""

from __future__ import annotations

from math import gcd, prod
from typing import Literal, Sequence

import numpy as np

from .generators import SeedLike, check_degrees, register_family
from .network import NetworkTopology
from .pattern import Pattern, TopologyError

Layout = Literal["radix-major", "block-major"]

__all__ = [
    "kron_blocks",
    "mixed_radix_pattern",
    "radix_family",
    "radix_net",
    "radix_path_count",
    "radix_sizes",
]


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_shift(n: int, radix: int, place_value: int, where: str) -> None:
    if not _is_int(n) or n < 1:
        raise TopologyError(f"{where}: number of nodes n={n!r} must be a positive integer")
    if not _is_int(radix) or radix < 1:
        raise TopologyError(f"{where}: radix={radix!r} must be an integer >= 1")
    if not _is_int(place_value) or place_value < 1:
        raise TopologyError(f"{where}: place_value={place_value!r} must be an integer >= 1")
    period = n // gcd(n, int(place_value))
    if radix > period:
        raise TopologyError(
            f"{where}: radix {radix} at place value {place_value} on n={n} nodes repeats connections "
            f"(the shifts m*{place_value} mod {n} take only {period} distinct values); "
            f"use radix <= {period} or a place value v with n/gcd(n, v) >= {radix}, e.g. v=1"
        )


def _radix_ell(n: int, radix: int, place_value: int) -> np.ndarray:
    """ELL ``[n, radix]`` of one mixed-radix layer: right node ``i`` reads ``(i - m v) mod n``."""
    i = np.arange(n, dtype=np.int64)[:, None]
    m = np.arange(radix, dtype=np.int64)[None, :]
    return (i - m * int(place_value)) % n


def kron_blocks(pattern: Pattern, b_in: int, b_out: int, layout: Layout = "radix-major") -> Pattern:
    """Kronecker product of a junction with a dense ``b_out x b_in`` block (every edge becomes a block).

    Args:
        pattern: junction ``[n_out, n_in]``.
        b_in, b_out: block widths (left, right).
        layout: ``"radix-major"``: result ``kron(mask, ones(b_out, b_in))``, node ``a`` becomes nodes
            ``a*b .. a*b + b - 1``; ``"block-major"``: ``kron(ones(b_out, b_in), mask)``, node ``a`` becomes
            nodes ``a, a + n, a + 2n, ...``.

    Returns:
        Pattern ``[n_out * b_out, n_in * b_in]`` with in-degrees multiplied by ``b_in`` and out-degrees by
        ``b_out``; density unchanged.
    """
    for name, v in (("b_in", b_in), ("b_out", b_out)):
        if not _is_int(v) or v < 1:
            raise TopologyError(f"kron_blocks: {name}={v!r} must be a positive integer")
    b_in, b_out = int(b_in), int(b_out)
    if layout not in ("radix-major", "block-major"):
        raise TopologyError(f"kron_blocks: layout={layout!r} must be 'radix-major' or 'block-major'")
    n_in, n_out = pattern.n_in, pattern.n_out
    k = np.arange(b_in, dtype=np.int64)
    if pattern.is_fixed_in_degree:  # fast path: ELL in, ELL out
        ell = pattern.ell()  # [n_out, d]
        if layout == "radix-major":  # left c -> c*b_in + k; right a -> a*b_out + j
            cols = (ell[:, :, None] * b_in + k).reshape(n_out, -1)
            return Pattern.from_ell(np.repeat(cols, b_out, axis=0), n_in * b_in)
        cols = (k[None, :, None] * n_in + ell[:, None, :]).reshape(n_out, -1)  # left c -> k*n_in + c
        return Pattern.from_ell(np.tile(cols, (b_out, 1)), n_in * b_in)  # right a -> j*n_out + a
    rows, idx = pattern.rows, pattern.indices  # general CSR: expand every edge into a block
    j = np.arange(b_out, dtype=np.int64)
    if layout == "radix-major":
        r = rows[:, None, None] * b_out + j[None, :, None]
        c = idx[:, None, None] * b_in + k[None, None, :]
    else:
        r = j[None, :, None] * n_out + rows[:, None, None]
        c = k[None, None, :] * n_in + idx[:, None, None]
    r, c = np.broadcast_arrays(r, c)
    return Pattern.from_edges(r.reshape(-1), c.reshape(-1), n_in * b_in, n_out * b_out)


def mixed_radix_pattern(n: int, radix: int, place_value: int = 1) -> Pattern:
    """One mixed-radix layer on ``n`` nodes: ``sum_{m<radix} P^{m * place_value}``.

    Returns:
        Pattern ``[n, n]`` (weight orientation): right node ``i`` reads left nodes
        ``(i - m * place_value) mod n`` for ``m < radix``; in- and out-degree ``radix``, density
        ``radix / n``.

    Raises:
        TopologyError: when the shifts are not distinct mod ``n`` (``n / gcd(n, place_value) < radix``).
    """
    _check_shift(n, radix, place_value, "mixed_radix_pattern")
    return Pattern.from_ell(_radix_ell(int(n), int(radix), int(place_value)), int(n))


def _validate_radices(radices: Sequence[Sequence[int]]) -> tuple[int, list[list[int]]]:
    """Check the (extended) mixed-radix system; return ``(N', lists)``."""
    if isinstance(radices, (str, bytes)) or not isinstance(radices, Sequence) or len(radices) == 0:
        raise TopologyError(
            f"radices={radices!r} must be a non-empty list of radix lists, e.g. [[2, 2, 2]] or [[10, 10]]"
        )
    lists: list[list[int]] = []
    for k, lst in enumerate(radices):
        if _is_int(lst):
            raise TopologyError(
                f"radices[{k}]={lst!r} is a number; radices is a list of radix LISTS, e.g. [{list(radices)!r}]"
            )
        if not isinstance(lst, Sequence) or len(lst) == 0:
            raise TopologyError(f"radices[{k}]={lst!r} is empty; every radix list needs at least one radix >= 1")
        for i, r in enumerate(lst):
            if not _is_int(r) or r < 1:
                raise TopologyError(f"radices[{k}][{i}]={r!r}: every radix must be an integer >= 1")
        lists.append([int(r) for r in lst])
    products = [prod(lst) for lst in lists]
    n_prime = products[0]
    bad = [k for k in range(1, len(lists) - 1) if products[k] != n_prime]
    last_bad = len(lists) > 1 and n_prime % products[-1] != 0
    if bad or last_bad:
        offenders = bad + ([len(lists) - 1] if last_bad else [])
        named = ", ".join(f"radices[{k}]={lists[k]} (product {products[k]})" for k in offenders)
        divisors = [d for d in range(1, n_prime + 1) if n_prime % d == 0]
        raise TopologyError(
            f"radix lists have incompatible products: {named}, while radices[0]={lists[0]} sets "
            f"N'={n_prime}. Every list but the last must have product exactly N'={n_prime}; the last "
            f"list's product must divide N' (one of {divisors})"
        )
    return n_prime, lists


def _check_widths(widths: Sequence[int], n_layers: int, lists: list[list[int]]) -> list[int]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise TopologyError(f"widths={widths!r} must be a list of {n_layers + 1} positive integers")
    if len(widths) != n_layers + 1:
        raise TopologyError(
            f"widths: radices {lists} have {n_layers} radices in all, i.e. {n_layers} junctions and "
            f"{n_layers + 1} layers, so widths needs {n_layers + 1} entries (e.g. {[1] * (n_layers + 1)}), "
            f"got {len(widths)}: {list(widths)}"
        )
    for i, b in enumerate(widths):
        if not _is_int(b) or b < 1:
            raise TopologyError(f"widths[{i}]={b!r}: every dense width must be a positive integer")
    return [int(b) for b in widths]


def radix_sizes(radices: Sequence[Sequence[int]], widths: Sequence[int]) -> tuple[int, ...]:
    """Layer sizes ``(N' B_0, ..., N' B_L)`` of :func:`radix_net` (validates like it)."""
    n_prime, lists = _validate_radices(radices)
    b = _check_widths(widths, sum(len(lst) for lst in lists), lists)
    return tuple(n_prime * w for w in b)


def radix_path_count(radices: Sequence[Sequence[int]], widths: Sequence[int]) -> int:
    """Number of paths between every input and every output of :func:`radix_net` (the same for all pairs).

    ``N'^(M-2) * p_last * B_1 ... B_{L-1}`` for ``M >= 2`` lists (``p_last`` the last list's product),
    ``B_1 ... B_{L-1}`` for one list.
    """
    n_prime, lists = _validate_radices(radices)
    b = _check_widths(widths, sum(len(lst) for lst in lists), lists)
    m = len(lists)
    base = 1 if m == 1 else n_prime ** (m - 2) * prod(lists[-1])
    return base * prod(b[1:-1])


def radix_net(
    radices: Sequence[Sequence[int]],
    widths: Sequence[int] | None = None,
    *,
    layout: Layout = "radix-major",
) -> NetworkTopology:
    """Build a RadiX-Net.

    Args:
        radices: the (extended) mixed-radix system: a list of radix lists, e.g. ``[[2, 2, 2]]`` or
            ``[[10, 10]]``; all lists but the last must have the same product ``N'``, the last list's
            product must divide ``N'``. ``L`` = total number of radices = number of junctions.
        widths: dense widths ``B = (B_0, ..., B_L)`` (``L + 1`` positive integers); default all ones.
        layout: node order of the Kronecker step (see module docstring).

    Returns:
        NetworkTopology with sizes ``(N' B_0, ..., N' B_L)`` and family ``"radix"``. Junction ``l`` (the
        ``l``-th radix ``r`` overall, at place value ``v``) is ``kron(sum_{m<r} P^{m v}, ones(B_{l+1}, B_l))``:
        in-degree ``r B_l``, out-degree ``r B_{l+1}``, density ``r / N'``.

    Raises:
        TopologyError: empty system or list, a radix < 1, incompatible list products (named with their
            products), or a wrong number of widths (says how many are needed).
    """
    n_prime, lists = _validate_radices(radices)
    n_layers = sum(len(lst) for lst in lists)
    b = _check_widths([1] * (n_layers + 1) if widths is None else widths, n_layers, lists)
    patterns = []
    layer = 0
    for lst in lists:
        place_value = 1
        for r in lst:
            base = mixed_radix_pattern(n_prime, r, place_value)
            patterns.append(kron_blocks(base, b[layer], b[layer + 1], layout))
            place_value *= r
            layer += 1
    return NetworkTopology(tuple(n_prime * w for w in b), tuple(patterns), family="radix", seed=None)


def radix_family(
    n_in: int,
    n_out: int,
    d_out: int,
    *,
    seed: SeedLike = None,
    n_prime: int | None = None,
    place_value: int | str = 1,
    layout: Layout = "radix-major",
) -> Pattern:
    """One junction as a single-radix RadiX layer, for ``design(..., family="radix")``.

    The junction is ``kron(sum_{m<r} P^{m v}, ones(B_out, B_in))`` on ``N'`` mixed-radix nodes with
    ``B_in = n_in / N'``, ``B_out = n_out / N'``, radix ``r = d_out / B_out = d_out N' / n_out``.
    By default ``N' = gcd(n_in, n_out)`` (the finest structure; largest ``N'``): then ``r`` is an integer
    exactly when ``n_in d_out / n_out`` is, so every out-degree that :func:`check_degrees` accepts works.

    Args:
        n_in, n_out, d_out: junction sizes and out-degree (in-degree ``r B_in``).
        seed: ignored (the construction is deterministic); accepted for the family signature.
        n_prime: number of mixed-radix nodes ``N'``; must divide ``gcd(n_in, n_out)`` and make
            ``d_out N' / n_out`` an integer.
        place_value: shift step ``v`` (default 1: each right block reads ``r`` consecutive left blocks), or
            ``"spread"``: ``v = N' / r`` (each right block reads ``r`` evenly spaced left blocks; needs
            ``r`` to divide ``N'``).
        layout: node order of the Kronecker step.

    Note: path symmetry across junctions needs the place values of a whole mixed-radix system; build
    whole networks with :func:`radix_net` for that guarantee. This family gives one structured junction.
    """
    check_degrees(n_in, n_out, d_out, "radix junction")
    g = gcd(int(n_in), int(n_out))
    if n_prime is None:
        n_prime = g
    where = f"radix junction ({n_in} -> {n_out}, d_out={d_out})"
    ok = [d for d in range(1, g + 1) if g % d == 0 and (d_out * d) % n_out == 0]
    if not _is_int(n_prime) or n_prime < 1 or g % n_prime or (d_out * n_prime) % n_out:
        raise TopologyError(
            f"{where}: n_prime={n_prime!r} must divide gcd(n_in, n_out)={g} and make the radix "
            f"d_out*N'/n_out an integer; valid N': {ok}"
        )
    n_prime = int(n_prime)
    r = d_out * n_prime // n_out
    if place_value == "spread":
        if n_prime % r:
            raise TopologyError(
                f"{where}: place_value='spread' needs the radix r={r} to divide N'={n_prime}; "
                f"use an integer place_value or another n_prime (valid N': {ok})"
            )
        place_value = n_prime // r
    elif not _is_int(place_value):
        raise TopologyError(f"{where}: place_value={place_value!r} must be a positive integer or 'spread'")
    _check_shift(n_prime, r, int(place_value), where)
    base_pattern = Pattern.from_ell(_radix_ell(n_prime, r, int(place_value)), n_prime)
    return kron_blocks(base_pattern, n_in // n_prime, n_out // n_prime, layout)


register_family("radix", radix_family)
