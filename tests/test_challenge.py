"""Graph-Challenge-shaped inference: sparseforge equals the scipy CSR reference (tiny sizes)."""

import numpy as np
import pytest
import torch

from sparseforge.studies.bench import (
    challenge,
    challenge_inputs,
    challenge_patterns,
    challenge_scipy,
    challenge_sparseforge,
)
from sparseforge.kernels import native

BACKENDS = ["stock", pytest.param("native", marks=pytest.mark.skipif(not native.available(), reason="no native"))]


def test_patterns_are_radix_layers_with_fixed_degrees():
    pats = challenge_patterns(64, 4)
    assert len(pats) == 3  # place values 1, 4, 16
    for p in pats:
        assert p.shape == (64, 64) and p.d_in == 4 and p.d_out == 4
    # together the three layers connect every input to every output
    reach = np.eye(64, dtype=np.int64)
    for p in pats:
        reach = p.to_dense().astype(np.int64) @ reach
    assert (reach > 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_inference_equals_scipy_reference(backend):
    pats = challenge_patterns(64, 8)
    y0 = challenge_inputs(40, 64, seed=1)
    ref = challenge_scipy(y0, pats, 12, 0.25, -0.3).toarray()  # 8 x 0.25 = 32 x 1/16
    from sparseforge.kernels import use_backend

    with use_backend(backend):
        got = challenge_sparseforge(y0, pats, 12, 0.25, -0.3, batch=16).numpy()
    assert ref.any() and not ref.all()  # a non-trivial case: some inputs alive, some dead
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_challenge_reports_edges_per_second_and_checks():
    res = challenge(neurons=64, layers=6, connections=8, inputs=32, batch=8, repeats=1, threads=1)
    assert res["setup"]["edges"] == 6 * 64 * 8
    scipy_row, ours = res["rows"]
    assert scipy_row["edges_per_s"] > 0 and ours["edges_per_s"] > 0
    assert ours["speedup"] == pytest.approx(scipy_row["seconds"] / ours["seconds"])
    assert res["check"]["categories_equal"] and res["check"]["max_abs_diff"] < 1e-4


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="square"):
        challenge_inputs(2, 60)
    with pytest.raises(ValueError, match="bias"):
        challenge_sparseforge(np.zeros((1, 4), np.float32), challenge_patterns(4, 2), 1, 1.0, 0.5, 1)
    assert torch.get_num_threads() >= 1


def test_cpu_clock_only_single_threaded():
    from sparseforge.studies.bench import best_time

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert best_time(lambda: sum(range(1000)), repeats=2, clock="cpu") > 0
        torch.set_num_threads(2)
        with pytest.raises(ValueError, match="threads=1"):
            best_time(lambda: None, clock="cpu")
        with pytest.raises(ValueError, match="'wall' or 'cpu'"):
            best_time(lambda: None, clock="gpu")
    finally:
        torch.set_num_threads(before)
