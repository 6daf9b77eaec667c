"""Connectivity measures checked against brute-force dense computations; plots written atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparseforge.topology import NetworkTopology, Pattern, design, fully_connected
from sparseforge.topology.analysis import (
    contiguous_windows,
    degree_stats,
    junction_stats,
    network_scatter,
    node_scatter,
    path_counts,
    path_stats,
    scatter,
    singular_values,
    spectral_gap,
    summarize,
)
from sparseforge.topology.expander import block_diagonal, expander
from sparseforge.topology.radix import radix_net


def random_net(sizes, density, seed) -> NetworkTopology:
    """Variable-degree random network (exercises the CSR paths)."""
    rng = np.random.default_rng(seed)
    pats = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        m = rng.random((b, a)) < density
        m[:, 0] |= ~m.any(axis=1)  # keep rows non-empty (not required, keeps stats finite)
        pats.append(Pattern.from_dense(m))
    return NetworkTopology(tuple(sizes), tuple(pats))


def brute_paths(net: NetworkTopology) -> np.ndarray:
    c = np.eye(net.sizes[0], dtype=object)
    for p in net.patterns:  # Python ints: no overflow possible
        c = p.to_dense().astype(object).dot(c)
    return c


def brute_node_scatter(a: np.ndarray, windows: list[np.ndarray]) -> np.ndarray:
    """Dey's loop (scatter() in adjmatint.py), ideal from the mean row sum."""
    n_out, n_in = a.shape
    dbar = a.sum() / n_out
    out = np.zeros(n_out)
    for i in range(n_out):
        vals = []
        for w in windows:
            ideal = dbar * len(w) / n_in
            vals.append(min(a[i, w].sum() / ideal, 1.0))
        out[i] = np.mean(vals)
    return out


# ------------------------------------------------------------------ degrees
def test_degree_stats_brute_force():
    net = random_net((30, 20), 0.3, 0)
    p = net.patterns[0]
    d = p.to_dense()
    s = degree_stats(p)
    assert s["in"] == {"min": d.sum(1).min(), "max": d.sum(1).max(), "mean": pytest.approx(d.sum(1).mean())}
    assert s["out"] == {"min": d.sum(0).min(), "max": d.sum(0).max(), "mean": pytest.approx(d.sum(0).mean())}


# ------------------------------------------------------------------ paths
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_path_counts_match_dense_products(seed):
    net = random_net((40, 25, 30, 12), 0.15, seed)
    c = path_counts(net)
    assert c.dtype == np.int64 and c.shape == (12, 40)
    assert np.array_equal(c, brute_paths(net).astype(np.int64))
    s = path_stats(c)
    b = brute_paths(net).astype(np.float64)
    assert s["connectivity"] == pytest.approx(np.mean(b > 0))
    assert s["min"] == b.min() and s["max"] == b.max()
    assert s["cv"] == pytest.approx(b.std() / b.mean())
    assert s["total"] == int(b.sum())
    assert s["uniform"] is False


def test_path_counts_structured_and_fc():
    net = design((64, 32, 16), fan_out=(8, 4), seed=5)
    assert np.array_equal(path_counts(net), brute_paths(net).astype(np.int64))
    c = path_counts(fully_connected((5, 7, 3)))
    assert (c == 7).all()  # FC: one path through each hidden node
    assert path_stats(c)["uniform"] and path_stats(c)["cv"] == 0


def test_path_counts_overflow_is_detected():
    # 64 junctions of a full 2x2: exactly 2**63 paths, one more than int64 holds
    p = Pattern.full(2, 2)
    net = NetworkTopology((2,) * 65, (p,) * 64)
    with pytest.raises(OverflowError, match="exact=False"):
        path_counts(net)
    c = path_counts(net, exact=False)
    assert c.dtype == np.float64 and (c == 2.0**63).all()
    s = summarize(net, spectral=False)
    assert s["paths"]["exact"] is False and s["paths"]["min"] == 2.0**63
    # 62 junctions fit (2**61 paths, bound 2**62)
    assert (path_counts(NetworkTopology((2,) * 63, (p,) * 62)) == 2**61).all()


def test_disconnected_network_connectivity():
    net = NetworkTopology((240, 120, 60), (block_diagonal(240, 120, 10), block_diagonal(120, 60, 5)))
    s = path_stats(path_counts(net))
    b = brute_paths(net).astype(np.float64)
    assert s["connectivity"] == pytest.approx(np.mean(b > 0)) == pytest.approx(1 / 12)


# ------------------------------------------------------------------ spectra
@pytest.mark.parametrize("method", ["dense", "sparse", "auto"])
def test_spectral_gap_matches_numpy_svd(method):
    cases = [
        expander(120, 60, 6, seed=1),
        random_net((50, 70), 0.1, 3).patterns[0],
        design((90, 45), fan_out=(9,)).patterns[0],
    ]
    for p in cases:
        s = np.linalg.svd(p.to_dense().astype(np.float64), compute_uv=False)
        got = singular_values(p, 2, method)
        assert got == pytest.approx(s[:2], rel=1e-9)
        assert spectral_gap(p, method) == pytest.approx(1 - s[1] / s[0], rel=1e-9)
        assert spectral_gap(p.to_dense(), method) == pytest.approx(1 - s[1] / s[0], rel=1e-9)


def test_spectral_gap_extremes():
    assert spectral_gap(Pattern.full(7, 5)) == pytest.approx(1.0)  # rank one
    assert spectral_gap(block_diagonal(60, 30, 5)) == pytest.approx(0.0, abs=1e-9)  # disconnected
    assert spectral_gap(Pattern.full(1, 4)) == 1.0  # a single right node: one singular value
    assert spectral_gap(np.zeros((3, 3))) == 0.0


def test_spectral_gap_sparse_path_on_larger_junction():
    p = expander(1000, 260, 13, seed=0)  # 260k entries: the ARPACK path under "auto"
    a = p.to_dense().astype(np.float64)
    lam = np.linalg.eigvalsh(a @ a.T)[::-1]  # brute force via the Gram matrix
    assert singular_values(p) == pytest.approx(np.sqrt(lam[:2]), rel=1e-8)


# ------------------------------------------------------------------ scatter
def test_scatter_matches_dey_loop():
    rng = np.random.default_rng(0)
    for n_out, n_in, dens in [(20, 60, 0.1), (35, 16, 0.3), (8, 100, 0.05)]:
        a = (rng.random((n_out, n_in)) < dens).astype(np.float64)
        k = int(round(a.sum() / n_out))
        wins = contiguous_windows(n_in, min(max(k, 1), n_in))
        assert node_scatter(a) == pytest.approx(brute_node_scatter(a, wins))
        assert scatter(Pattern.from_dense(a)) == pytest.approx(brute_node_scatter(a, wins).mean())
        # explicit, overlapping windows (Dey's strided windows)
        ow = [np.arange(s, s + 8) for s in range(0, n_in - 8 + 1, 4)]
        assert node_scatter(a, ow) == pytest.approx(brute_node_scatter(a, ow))


def test_scatter_counts_paths_with_multiplicity():
    net = random_net((48, 30, 20), 0.2, 4)
    c = brute_paths(net).astype(np.float64)  # path counts, not 0/1
    k = min(max(int(round(c.sum() / c.shape[0])), 1), c.shape[1])
    want = brute_node_scatter(c, contiguous_windows(c.shape[1], k)).mean()
    s = network_scatter(net)
    assert s["io_forward"] == pytest.approx(want)
    kb = min(max(int(round(c.sum() / c.shape[1])), 1), c.shape[0])
    assert s["io_backward"] == pytest.approx(brute_node_scatter(c.T, contiguous_windows(c.shape[0], kb)).mean())
    assert s["io_forward"] != pytest.approx(scatter((c > 0).astype(float)))  # multiplicity matters


def test_scatter_extremes():
    # every right node reads one input from each of the d_in windows: perfect scatter
    n_in, n_out, d_in = 40, 10, 4
    spread = np.zeros((n_out, n_in), dtype=bool)
    for i in range(n_out):
        spread[i, (i + np.arange(d_in) * (n_in // d_in)) % n_in] = True
    assert scatter(Pattern.from_dense(spread)) == 1.0
    # every right node reads d_in consecutive inputs inside one window of 10: covers 1 of d_in windows
    band = np.zeros((n_out, n_in), dtype=bool)
    for i in range(n_out):
        band[i, (10 * i + np.arange(d_in)) % n_in] = True
    assert scatter(Pattern.from_dense(band)) == pytest.approx(1 / d_in)
    # runs starting at 4i: rows 2 and 7 (start 8, 28) straddle a window boundary -> (8 * 1 + 2 * 2) / 40
    for i in range(n_out):
        band[i] = False
        band[i, (4 * i + np.arange(d_in)) % n_in] = True
    assert scatter(Pattern.from_dense(band)) == pytest.approx(12 / 40)
    assert scatter(Pattern.full(9, 3)) == 1.0


def test_network_scatter_radix_io_is_perfect():
    net = radix_net([[2, 2, 2]])
    s = network_scatter(net)
    assert s["io_forward"] == 1.0 and s["io_backward"] == 1.0  # uniform path counts
    assert s["min"] == min(s["forward"] + s["backward"])
    b = brute_paths(net).astype(np.float64)
    assert s["io_forward"] == pytest.approx(brute_node_scatter(b, contiguous_windows(8, 8)).mean())


# ------------------------------------------------------------------ summary
def test_summarize_is_json_and_consistent():
    net = design((60, 30, 10), fan_out=(10, 5), family="expander", seed=1)
    s = summarize(net)
    text = json.dumps(s, allow_nan=False)  # strict JSON
    assert json.loads(text)["sizes"] == [60, 30, 10]
    assert s["rho_net"] == pytest.approx(net.rho_net)
    assert len(s["junctions"]) == 2
    for j, p in zip(s["junctions"], net.patterns):
        assert j == {"junction": j["junction"], **junction_stats(p)}
        sv = np.linalg.svd(p.to_dense().astype(float), compute_uv=False)
        assert j["spectral_gap"] == pytest.approx(1 - sv[1] / sv[0], rel=1e-9)
        assert j["in_degree"]["max"] == p.to_dense().sum(1).max()
    b = brute_paths(net).astype(np.float64)
    assert s["paths"]["connectivity"] == pytest.approx(np.mean(b > 0))
    assert s["paths"]["max"] == b.max() and s["paths"]["exact"] is True
    sb = np.linalg.svd(b, compute_uv=False)
    assert s["end_to_end_spectral_gap"] == pytest.approx(1 - sb[1] / sb[0], rel=1e-9)
    assert s["min_spectral_gap"] == min(j["spectral_gap"] for j in s["junctions"])


def test_summarize_radix_lenet_example():
    s = summarize(radix_net([[10, 10]], [30, 8, 1]))
    assert s["sizes"] == [3000, 800, 100]
    assert s["rho_net"] == pytest.approx(0.1)
    assert s["paths"]["uniform"] and s["paths"]["min"] == 8 and s["paths"]["connectivity"] == 1.0
    assert s["end_to_end_spectral_gap"] == pytest.approx(1.0)  # all-equal path counts: rank one
    assert [j["in_degree"]["min"] for j in s["junctions"]] == [300, 80]


# ------------------------------------------------------------------ plots
def test_plots_write_png_atomically(tmp_path):
    from sparseforge.runs.topology_plots import plot_adjacency, plot_path_counts

    net = radix_net([[2, 2, 2]], [1, 2, 2, 1])
    a = plot_adjacency(net, tmp_path / "adj.png")
    b = plot_path_counts(design((64, 32, 16), fan_out=(8, 4)), tmp_path / "paths.png")
    c = plot_path_counts(net, tmp_path / "sub" / "radix_paths.png")  # uniform counts: one bar
    for f in (a, b, c):
        data = f.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert sorted(x.name for x in tmp_path.iterdir()) == ["adj.png", "paths.png", "sub"]  # no temp files left
