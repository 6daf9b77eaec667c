"""Random expander junctions: degrees, determinism, uniform sampling, expansion vs grouped connections."""

from __future__ import annotations

import numpy as np
import pytest

from sparseforge.topology import FAMILIES, TopologyError, design
from sparseforge.topology.expander import block_diagonal, expander, sample_rows


def top_singular_values(mask: np.ndarray) -> np.ndarray:
    """Brute force: square roots of the eigenvalues of the smaller Gram matrix, descending."""
    a = mask.astype(np.float64)
    g = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a
    return np.sqrt(np.clip(np.linalg.eigvalsh(g)[::-1], 0, None))


def gap_dense(mask: np.ndarray) -> float:
    s = top_singular_values(mask)
    return 1 - s[1] / s[0]


@pytest.mark.parametrize("n_in,n_out,d_out", [(784, 300, 75), (100, 200, 6), (64, 64, 5), (10, 3, 3)])
def test_fixed_in_degree(n_in, n_out, d_out):
    p = expander(n_in, n_out, d_out, seed=1)
    d_in = n_in * d_out // n_out
    assert p.shape == (n_out, n_in)
    assert p.is_fixed_in_degree and p.d_in == d_in
    assert p.edges == n_in * d_out
    dense = p.to_dense()
    assert (dense.sum(axis=1) == d_in).all()  # brute-force row count (no duplicates collapse edges)
    assert dense.sum() == p.edges


def test_side_out_fixes_out_degree():
    p = expander(120, 80, 6, seed=2, side="out")
    dense = p.to_dense()
    assert (dense.sum(axis=0) == 6).all()
    assert not p.is_fixed_in_degree  # in-degree varies (w.h.p.; fixed seed)
    assert dense.sum() == 120 * 6
    # "auto" lets the smaller layer sample, like the paper's code
    assert expander(120, 80, 6, seed=2, side="auto").is_fixed_in_degree
    assert expander(80, 120, 9, seed=2, side="auto").is_fixed_out_degree
    with pytest.raises(TopologyError, match="side"):
        expander(80, 120, 9, side="both")  # type: ignore[arg-type]


def test_deterministic_given_seed():
    a = expander(300, 100, 10, seed=7)
    assert a == expander(300, 100, 10, seed=7)
    assert a == expander(300, 100, 10, seed=np.random.default_rng(7))
    assert a != expander(300, 100, 10, seed=8)


def test_bad_degree_is_named():
    with pytest.raises(TopologyError, match="not an integer"):
        expander(100, 30, 7)


def test_sampling_is_uniform():
    # each right node picks d_in of n_in uniformly: out-degrees ~ Binomial(n_out, d_in / n_in)
    n_in, n_out, d_in = 2000, 1000, 20
    p = expander(n_in, n_out, n_out * d_in // n_in, seed=0)
    q = d_in / n_in
    deg = p.out_degrees
    assert deg.mean() == pytest.approx(n_out * q)
    assert deg.var() == pytest.approx(n_out * q * (1 - q), rel=0.2)
    # pairs of left nodes co-occur in a row at the rate of uniform d_in-subsets
    rows = sample_rows(20000, 6, 3, np.random.default_rng(1))
    assert (np.diff(rows, axis=1) > 0).all()
    pair01 = np.mean((rows == 0).any(axis=1) & (rows == 1).any(axis=1))
    assert pair01 == pytest.approx(3 * 2 / (6 * 5), abs=0.02)


def test_registered_for_design():
    assert FAMILIES["expander"] is expander
    net = design((784, 300, 100), fan_out=(75, 25), family="expander", seed=3)
    assert [p.d_in for p in net.patterns] == [196, 75]
    assert net == design((784, 300, 100), fan_out=(75, 25), family="expander", seed=3)


def test_block_diagonal_is_grouped_and_disconnected():
    p = block_diagonal(240, 120, 10)
    want = np.kron(np.eye(12, dtype=bool), np.ones((10, 20), dtype=bool))
    assert np.array_equal(p.to_dense(), want)
    assert gap_dense(p.to_dense()) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(TopologyError, match="divide"):
        block_diagonal(240, 120, 7)  # 7 does not divide 120


@pytest.mark.parametrize("n_in,n_out,d_out", [(240, 120, 10), (392, 196, 49), (800, 100, 10)])
def test_expansion_beats_block_diagonal(n_in, n_out, d_out):
    e = expander(n_in, n_out, d_out, seed=0).to_dense()
    b = block_diagonal(n_in, n_out, d_out).to_dense()
    assert e.sum() == b.sum()  # equal density
    g_e, g_b = gap_dense(e), gap_dense(b)
    assert g_b < 1e-7  # sigma_2 from a Gram eigenvalue: ~sqrt(eps) accuracy near a double root
    assert g_e > 0.5
    # near the Ramanujan value for a (d_in, d_out)-biregular graph: sigma_2 <~ sqrt(d_in-1) + sqrt(d_out-1)
    d_in = n_in * d_out // n_out
    s = top_singular_values(e)
    assert s[1] < 1.1 * (np.sqrt(d_in - 1) + np.sqrt(d_out - 1))
