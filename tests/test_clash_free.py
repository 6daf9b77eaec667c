"""Clash-free family: construction, the independent checker, errors, determinism and the count formula."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from sparseforge.topology import FAMILIES, Pattern, TopologyError, design, random_uniform, structured
from sparseforge.topology.clash_free import (
    clash_free,
    count_patterns,
    count_settings,
    design_clash_free,
    find_clashes,
    is_clash_free,
    processing_order,
    valid_parallelism,
)

# (n_in, n_out, d_out, z): z = g d_in with g > 1, z = d_in, d_in = k z (k | D), d_in = k z crossing sweeps
SIZES = [
    (1024, 64, 4, 128),  # the FPGA paper's junction 1: d_in = 64, two right nodes per cycle
    (64, 32, 16, 32),  # the FPGA paper's junction 2: d_in = 32 = z
    (96, 48, 6, 24),  # d_in = 12, g = 2
    (64, 8, 4, 8),  # d_in = 32 = 4 z, D = 8: right nodes inside sweeps
    (60, 10, 4, 6),  # d_in = 24 = 4 z, D = 10: right nodes cross sweep boundaries
    (90, 15, 8, 3),  # d_in = 48 = 16 z, D = 30: crossing, long rows
    (1024, 8, 3, 8),  # d_in = 384 = 48 z, D = 128: ~36 expected duplicates per boundary if drawn blindly
]


def banks_per_cycle_bruteforce(p: Pattern, z: int) -> list[Counter]:
    """Bank occupancy per cycle, computed from the rows with plain Python (z a multiple of d_in: a cycle
    is z / d_in whole rows, so the order inside a row is irrelevant)."""
    rows = p.ell().tolist()
    g = z // p.d_in
    return [Counter(u % z for r in rows[c * g : (c + 1) * g] for u in r) for c in range(len(rows) // g)]


@pytest.mark.parametrize("interleaver", [1, 2, 3])
@pytest.mark.parametrize("dither", [False, True])
@pytest.mark.parametrize("n_in,n_out,d_out,z", SIZES)
def test_generated_patterns_are_clash_free_with_exact_degrees(n_in, n_out, d_out, z, interleaver, dither):
    d_in = n_in * d_out // n_out
    for seed in range(3):
        p = clash_free(n_in, n_out, d_out, z=z, interleaver=interleaver, dither=dither, seed=seed)
        assert (p.n_in, p.n_out) == (n_in, n_out)
        assert (p.out_degrees == d_out).all() and (p.in_degrees == d_in).all()
        assert find_clashes(p, z) == [] and is_clash_free(p, z)
        if z % d_in == 0:  # independent of any library ordering
            occ = banks_per_cycle_bruteforce(p, z)
            assert len(occ) == p.edges // z and all(sorted(c) == list(range(z)) and max(c.values()) == 1 for c in occ)
            assert is_clash_free(p, z, within_row="stored")
        else:  # a right node spans k cycles: it must read every bank exactly k times
            k = d_in // z
            for row in p.ell().tolist():
                assert Counter(u % z for u in row) == {b: k for b in range(z)}


def test_random_and_structured_patterns_clash_at_realistic_size():
    z = 128
    for p in (structured(1024, 64, 4, seed=0), random_uniform(1024, 64, d_out=4, seed=0)):
        clashes = find_clashes(p, z)
        assert not is_clash_free(p, z)
        assert len(clashes) > 100  # measured ~1000 of the 32 x 128 (cycle, bank) slots
        c = clashes[0]
        assert c.reads == len(c.nodes) >= 2 and len({u % z for u in c.nodes}) == 1 and c.bank == c.nodes[0] % z
        # the report agrees with a direct count
        order = processing_order(p, z)
        nodes = p.indices[order]
        direct = Counter(((i // z), int(u) % z) for i, u in enumerate(nodes))
        assert sorted((cl.cycle, cl.bank, cl.reads) for cl in clashes) == sorted(
            (c_, b, n) for (c_, b), n in direct.items() if n > 1
        )


def test_find_clashes_names_cycle_bank_nodes_rows():
    # 4 left nodes in 2 banks; row 0 reads nodes 0 and 2 (both bank 0), row 1 reads 1 and 2
    p = Pattern.from_ell(np.array([[0, 2], [1, 2]]), 4)
    clashes = find_clashes(p, 2)
    assert len(clashes) == 1
    c = clashes[0]
    assert (c.cycle, c.bank, c.nodes, c.rows, c.edges) == (0, 0, (0, 2), (0, 0), (0, 1))
    assert sorted(c.lanes) == [0, 1]
    assert is_clash_free(Pattern.from_ell(np.array([[0, 1], [2, 3]]), 4), 2)


def test_banked_order_versus_stored_order_when_rows_span_cycles():
    # d_in = 4 = 2 z: a right node spans two cycles, so the order inside it matters
    p = Pattern.from_ell(np.array([[0, 2, 1, 3]]), 4)  # stored 0,1 | 2,3: banks 0,1 | 0,1
    assert is_clash_free(p, 2, within_row="stored") and is_clash_free(p, 2)
    q = Pattern.from_ell(np.array([[0, 1, 3, 5], [2, 4, 6, 7]]), 8)  # row 0 sorted: banks 0,1,1,1
    assert not is_clash_free(q, 2, within_row="stored")
    assert not is_clash_free(q, 2)  # unbalanced banks (3 x bank 1): no order can fix it
    r = Pattern.from_ell(np.array([[0, 2, 5, 7]]), 8)  # sorted banks 0,0,1,1 -> clashes; banked 0,1,0,1 -> none
    assert not is_clash_free(r, 2, within_row="stored")
    assert is_clash_free(r, 2)
    assert processing_order(r, 2).tolist() == [0, 2, 1, 3]


def test_errors_name_the_numbers_and_what_works():
    with pytest.raises(TopologyError, match=r"z=3 must divide the left layer size N=1024.*divisors of N near z: 1, 2, 4, 8"):
        clash_free(1024, 64, 4, z=3)
    with pytest.raises(TopologyError, match=r"z=5 and the in-degree d_in=24.*N=60, d_in=24: 2, 3, 4, 6"):
        clash_free(60, 20, 8, z=5)
    with pytest.raises(TopologyError, match="z=0"):
        clash_free(64, 32, 16, z=0)
    with pytest.raises(TopologyError, match="interleaver=4"):
        clash_free(64, 32, 16, z=32, interleaver=4)
    with pytest.raises(TopologyError, match="d_out=5"):
        clash_free(64, 48, 5, z=32)  # in-degree 64 * 5 / 48 not an integer
    with pytest.raises(TopologyError, match="needs the option z"):
        design((64, 32), fan_out=(16,), family="clash_free")
    assert valid_parallelism(60, 24) == [1, 2, 3, 4, 6, 12]


def test_determinism_and_family_registration():
    a = clash_free(1024, 64, 4, z=128, interleaver=1, dither=True, seed=7)
    assert a == clash_free(1024, 64, 4, z=128, interleaver=1, dither=True, seed=7)
    assert a != clash_free(1024, 64, 4, z=128, interleaver=1, dither=True, seed=8)
    assert a != clash_free(1024, 64, 4, z=128, interleaver=1, dither=False, seed=7)  # dither matters when g > 1
    assert "clash_free" in FAMILIES
    net = design((128, 64, 32), fan_out=(8, 16), family="clash_free", z=32, interleaver=2, seed=1)
    assert all(is_clash_free(p, 32) for p in net.patterns)
    assert net == design((128, 64, 32), fan_out=(8, 16), family="clash_free", z=32, interleaver=2, seed=1)
    fpga = design_clash_free((1024, 64, 32), fan_out=(4, 16), z=(128, 32), seed=0)
    assert [p.d_in for p in fpga.patterns] == [64, 32]
    assert is_clash_free(fpga.patterns[0], 128) and is_clash_free(fpga.patterns[1], 32)
    with pytest.raises(TopologyError, match="junction 2"):
        design_clash_free((1024, 64, 32), fan_out=(4, 16), z=(128, 3))


# ------------------------------------------------------------------------------------ brute force count
def enumerate_settings(n_in, n_out, d_out, z, interleaver, dither):
    """All interleaver settings, straight from the construction's definition; returns the number of
    valid settings (no right node reads a left node twice) and the set of distinct patterns."""
    D, S = n_in // z, d_out
    C, d_in = S * D, n_in * d_out // n_out
    if interleaver == 1:
        seqs = list(itertools.permutations(range(D)))
    else:
        seqs = [tuple((s0 + t) % D for t in range(D)) for s0 in range(D)]
    if interleaver == 3:
        addr_choices = ([per_bank[b] for _ in range(S) for b in range(z)] for per_bank in itertools.product(seqs, repeat=z))
    else:
        addr_choices = itertools.product(seqs, repeat=S * z)  # index s * z + b
    lane_choices = (
        list(itertools.product(list(itertools.permutations(range(z))), repeat=C)) if dither else [[tuple(range(z))] * C]
    )
    settings, patterns = 0, set()
    for addrs in addr_choices:
        for lanes in lane_choices:
            nodes = []
            for c in range(C):
                s, t = divmod(c, D)
                nodes += [addrs[s * z + lanes[c][l]][t] * z + lanes[c][l] for l in range(z)]
            rows = tuple(tuple(sorted(nodes[r * d_in : (r + 1) * d_in])) for r in range(n_out))
            if any(len(set(r)) < d_in for r in rows):
                continue
            settings += 1
            patterns.add(rows)
    return settings, patterns


BRUTE = [
    # (n_in, n_out, d_out, z, interleaver, dither)
    (4, 8, 2, 2, 1, False), (4, 8, 2, 2, 1, True), (4, 8, 2, 2, 2, True), (4, 8, 2, 2, 3, True),  # d_in = 1, g = 2
    (4, 4, 2, 2, 1, False), (4, 4, 2, 2, 2, True), (4, 4, 2, 2, 3, False),  # d_in = z = 2
    (4, 2, 1, 4, 1, True), (4, 2, 1, 4, 3, True),  # D = 1, g = 2: only the dither chooses
    (6, 4, 2, 3, 1, False), (6, 4, 2, 3, 2, False),  # d_in = z = 3
    (8, 2, 1, 2, 1, False), (8, 2, 1, 2, 2, False), (8, 2, 1, 2, 3, True),  # d_in = 2 z, rows inside sweeps
    (6, 3, 2, 2, 1, False), (6, 3, 2, 2, 2, False), (6, 3, 2, 2, 3, False),  # d_in = 2 z crossing sweeps
    (5, 5, 2, 1, 1, False), (5, 5, 2, 1, 2, False),  # z = 1, k = 2, D = 5: crossing
    (9, 3, 2, 3, 2, False), (9, 3, 2, 3, 3, False),  # d_in = 6 = 2 z, D = 3, crossing
    (4, 1, 1, 2, 1, True),  # d_in = N: the full junction, one pattern
]


@pytest.mark.parametrize("n_in,n_out,d_out,z,interleaver,dither", BRUTE)
def test_count_formulas_match_brute_force(n_in, n_out, d_out, z, interleaver, dither):
    settings, patterns = enumerate_settings(n_in, n_out, d_out, z, interleaver, dither)
    assert count_settings(n_in, n_out, d_out, z, interleaver, dither) == settings
    assert count_patterns(n_in, n_out, d_out, z, interleaver, dither) == len(patterns)


@pytest.mark.parametrize(
    "n_in,n_out,d_out,z,interleaver,dither",
    [(6, 3, 2, 2, 1, False), (6, 3, 2, 2, 2, False), (4, 8, 2, 2, 3, True), (8, 2, 1, 2, 1, False)],
)
def test_generator_draws_exactly_the_enumerated_patterns(n_in, n_out, d_out, z, interleaver, dither):
    _, patterns = enumerate_settings(n_in, n_out, d_out, z, interleaver, dither)
    seen = set()
    for seed in range(12 * len(patterns)):
        p = clash_free(n_in, n_out, d_out, z=z, interleaver=interleaver, dither=dither, seed=seed)
        seen.add(tuple(map(tuple, p.ell().tolist())))
    assert seen == patterns


def test_count_is_a_big_integer_at_realistic_size():
    n = count_patterns(1024, 64, 4, 128, 1, False)
    from math import factorial

    assert n == factorial(8) ** (128 * 4)  # D = 8 addresses per bank, 4 sweeps, 128 banks
    assert count_patterns(1024, 64, 4, 128, 3, False) == 8**128
    assert count_patterns(1024, 64, 4, 128, 1, True) == n * (factorial(128) // factorial(64) ** 2) ** 32
