"""RadiX-Nets checked against an independent dense construction straight from the definition."""

from __future__ import annotations

from math import prod

import numpy as np
import pytest

from sparseforge.topology import FAMILIES, Pattern, TopologyError, design
from sparseforge.topology.radix import (
    kron_blocks,
    mixed_radix_pattern,
    radix_family,
    radix_net,
    radix_path_count,
    radix_sizes,
)


# ------------------------------------------------------------------ brute force from the paper's definition
def brute_layer(n: int, radix: int, place_value: int) -> np.ndarray:
    """Left node j -> right nodes (j + m v) mod n, as an int matrix [n_out, n_in]."""
    w = np.zeros((n, n), dtype=np.int64)
    for j in range(n):
        for m in range(radix):
            w[(j + m * place_value) % n, j] = 1
    return w


def brute_net(radices: list[list[int]], widths: list[int], layout: str = "radix-major") -> list[np.ndarray]:
    n_prime = prod(radices[0])
    mats, layer = [], 0
    for lst in radices:
        v = 1
        for r in lst:
            w = brute_layer(n_prime, r, v)
            ones = np.ones((widths[layer + 1], widths[layer]), dtype=np.int64)
            mats.append(np.kron(w, ones) if layout == "radix-major" else np.kron(ones, w))
            v *= r
            layer += 1
    return mats


def dense_paths(mats: list[np.ndarray]) -> np.ndarray:
    c = mats[0]
    for m in mats[1:]:
        c = m @ c
    return c


CASES = [
    ([[2, 2, 2]], [1, 1, 1, 1]),
    ([[2, 3]], [2, 1, 3]),
    ([[3, 2], [2, 3]], [1, 2, 1, 1, 2]),
    ([[2, 2, 2], [2]], [1, 1, 1, 1, 1]),  # last list's product 2 divides N' = 8
    ([[4, 3], [3, 4], [6]], [2, 1, 1, 1, 1, 3]),
    ([[5]], [3, 2]),
]


@pytest.mark.parametrize("radices,widths", CASES)
@pytest.mark.parametrize("layout", ["radix-major", "block-major"])
def test_matches_definition(radices, widths, layout):
    net = radix_net(radices, widths, layout=layout)
    mats = brute_net(radices, widths, layout)
    assert net.family == "radix"
    assert net.sizes == tuple(prod(radices[0]) * b for b in widths) == radix_sizes(radices, widths)
    assert len(net.patterns) == sum(len(lst) for lst in radices)
    for p, m in zip(net.patterns, mats):
        assert np.array_equal(p.to_dense(), m.astype(bool))


@pytest.mark.parametrize("radices,widths", CASES)
def test_degrees_reachability_and_path_symmetry(radices, widths):
    net = radix_net(radices, widths)
    n_prime = prod(radices[0])
    flat = [r for lst in radices for r in lst]
    for l, p in enumerate(net.patterns):
        # constant degrees r*B_l (in) and r*B_{l+1} (out); density r/N'
        assert set(p.in_degrees.tolist()) == {flat[l] * widths[l]}
        assert set(p.out_degrees.tolist()) == {flat[l] * widths[l + 1]}
        assert p.density == pytest.approx(flat[l] / n_prime)
    c = dense_paths([p.to_dense().astype(np.int64) for p in net.patterns])
    assert c.shape == (net.sizes[-1], net.sizes[0])
    assert (c > 0).all()  # every input reaches every output
    assert c.min() == c.max()  # and all by the same number of paths
    assert c[0, 0] == radix_path_count(radices, widths)


def test_path_count_formula_by_hand():
    assert radix_path_count([[2, 2, 2]], [1, 1, 1, 1]) == 1
    assert radix_path_count([[2, 2, 2], [2]], [1] * 5) == 2  # N'^0 * p_last
    assert radix_path_count([[3, 2], [2, 3]], [1, 2, 1, 1, 2]) == 6 * 2  # N' * B_1 B_2 B_3
    assert radix_path_count([[10, 10]], [30, 8, 1]) == 8


def test_single_list_is_a_unique_path_system():
    # one list whose radices multiply to N': exactly one path between each pair (mixed-radix expansion)
    net = radix_net([[2, 3, 2]])
    c = dense_paths([p.to_dense().astype(np.int64) for p in net.patterns])
    assert np.array_equal(c, np.ones((12, 12), dtype=np.int64))
    # a prefix of the list does NOT connect everything: the guarantee needs the full product
    c2 = dense_paths([p.to_dense().astype(np.int64) for p in net.patterns[:2]])
    assert not (c2 > 0).all()


def test_seed_example_222_is_75_percent_sparse():
    net = radix_net([[2, 2, 2]], [1, 1, 1, 1])
    assert net.sizes == (8, 8, 8, 8)
    assert net.densities == (0.25, 0.25, 0.25)
    assert 1 - net.rho_net == pytest.approx(0.75)
    # Kronecker product keeps the density ("Kronecker-ed network maintains ... sparsity")
    assert radix_net([[2, 2, 2]], [3, 1, 2, 5]).densities == (0.25, 0.25, 0.25)


def test_seed_example_lenet_10_10_widths_30_8_1():
    net = radix_net([[10, 10]], [30, 8, 1])
    assert net.sizes == (3000, 800, 100)
    assert net.densities == (0.1, 0.1)
    assert 1 - net.rho_net == pytest.approx(0.9)
    assert [p.d_in for p in net.patterns] == [300, 80]
    assert [p.d_out for p in net.patterns] == [80, 10]
    a1 = net.patterns[0].to_dense().astype(np.float64)
    a2 = net.patterns[1].to_dense().astype(np.float64)
    c = a2 @ a1  # exact in float64 (small integers)
    assert c.min() == c.max() == 8


def test_mixed_radix_pattern_matches_definition():
    for n, r, v in [(8, 2, 1), (8, 2, 4), (12, 3, 4), (12, 4, 3), (7, 7, 1), (9, 3, 2)]:
        p = mixed_radix_pattern(n, r, v)
        assert np.array_equal(p.to_dense(), brute_layer(n, r, v).astype(bool))
        assert p.d_in == p.d_out == r


def test_kron_blocks_general_csr_pattern():
    rng = np.random.default_rng(3)
    m = rng.random((6, 9)) < 0.3  # variable degrees: the CSR path
    p = Pattern.from_dense(m)
    assert np.array_equal(kron_blocks(p, 2, 3).to_dense(), np.kron(m, np.ones((3, 2))).astype(bool))
    assert np.array_equal(
        kron_blocks(p, 2, 3, "block-major").to_dense(), np.kron(np.ones((3, 2)), m).astype(bool)
    )


# ------------------------------------------------------------------ errors
def test_error_different_products_names_lists_and_products():
    with pytest.raises(TopologyError, match=r"radices\[1\]=\[3, 3\] \(product 9\).*N'=4"):
        radix_net([[2, 2], [3, 3], [2]])
    # last list: product must divide N'
    with pytest.raises(TopologyError, match=r"radices\[1\]=\[3\] \(product 3\).*divide"):
        radix_net([[2, 2], [3]])
    # a dividing last list is fine, a dividing middle list is not
    radix_net([[2, 2], [2]])
    with pytest.raises(TopologyError, match=r"radices\[1\]=\[2\] \(product 2\)"):
        radix_net([[2, 2], [2], [2, 2]])


def test_error_empty_and_bad_radix():
    with pytest.raises(TopologyError, match="non-empty list of radix lists"):
        radix_net([])
    with pytest.raises(TopologyError, match=r"radices\[1\]=\[\] is empty"):
        radix_net([[2, 2], []])
    with pytest.raises(TopologyError, match=r"radices\[0\]\[1\]=0"):
        radix_net([[2, 0]])
    with pytest.raises(TopologyError, match=r"radices\[0\]\[0\]=-2"):
        radix_net([[-2]])
    with pytest.raises(TopologyError, match="list of radix LISTS"):
        radix_net([2, 2])  # type: ignore[list-item]


def test_error_wrong_number_of_widths_says_what_works():
    with pytest.raises(TopologyError, match=r"widths needs 4 entries.*got 3"):
        radix_net([[2, 2, 2]], [1, 2, 1])
    with pytest.raises(TopologyError, match=r"widths\[1\]=0"):
        radix_net([[2, 2]], [1, 0, 1])


def test_error_repeated_shifts():
    with pytest.raises(TopologyError, match="repeats connections"):
        mixed_radix_pattern(8, 3, 4)


# ------------------------------------------------------------------ per-junction family for design()
def test_radix_family_registered_and_matches_kron_of_band():
    assert FAMILIES["radix"] is radix_family
    net = design((64, 32, 16), fan_out=(8, 4), family="radix")
    # junction 1: N' = gcd(64, 32) = 32, B_in = 2, B_out = 1, r = 8 * 32 / 32 = 8
    want1 = np.kron(brute_layer(32, 8, 1), np.ones((1, 2), dtype=np.int64))
    # junction 2: N' = 16, B_in = 2, B_out = 1, r = 4
    want2 = np.kron(brute_layer(16, 4, 1), np.ones((1, 2), dtype=np.int64))
    assert np.array_equal(net.patterns[0].to_dense(), want1.astype(bool))
    assert np.array_equal(net.patterns[1].to_dense(), want2.astype(bool))
    assert net.table()[0]["d_out"] == 8 and net.table()[0]["d_in"] == 16


def test_radix_family_options_and_errors():
    p = radix_family(60, 30, 10, n_prime=15)  # B_in 4, B_out 2, r = 5
    want = np.kron(brute_layer(15, 5, 1), np.ones((2, 4), dtype=np.int64))
    assert np.array_equal(p.to_dense(), want.astype(bool))
    p = radix_family(60, 30, 10, n_prime=15, place_value="spread")  # v = 15 / 5 = 3
    want = np.kron(brute_layer(15, 5, 3), np.ones((2, 4), dtype=np.int64))
    assert np.array_equal(p.to_dense(), want.astype(bool))
    with pytest.raises(TopologyError, match=r"valid N': \[3, 6, 15, 30\]"):
        radix_family(60, 30, 10, n_prime=4)
    with pytest.raises(TopologyError, match="not an integer"):
        radix_family(60, 45, 2)  # in-degree 60 * 2 / 45 is not an integer
    with pytest.raises(TopologyError, match="spread"):
        radix_family(60, 30, 4, place_value="spread")  # r = 4 on N' = 30: 4 does not divide 30
