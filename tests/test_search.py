"""Model search (seed 003): GP + EI engine, the Optuna sampler, storage, resume, workers, CLI."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from cli_runner import BoundaryRunner

from sparseforge.config import ConfigError
from sparseforge.data import load_dataset
from sparseforge.search import (
    GaussianProcess, GPEISampler, Hyper, create_search, default_storage, expected_improvement, front_rows,
    load_search, objective_value, pareto_front, parse_spec, run_worker, trial_rows,
)
from sparseforge.search.gp import group_sq_dists, neg_log_posterior, output_warp, se_kernel
from sparseforge.search.objective import synthetic_f
from sparseforge.search.study import study_key, suggest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "src" / "sparseforge" / "recipes"
PY = sys.executable

TINY = {
    "name": "t",
    "model": "mlp",
    "data": {"name": "digits", "seed": 0},
    "train": {"epochs": 1, "batch_size": 64, "lr": 0.01},
    "objective": {"w_c": 0.1, "complexity": "params", "reference": {"hidden_layers": 2, "width": 32}},
    "sampler": {"name": "gp", "n_initial": 2, "candidates": 64, "restarts": 0, "seed": 0},
    "pruner": {"enabled": False},
    "space": {
        "hidden_layers": {"type": "int", "low": 1, "high": 2, "default": 1},
        "width": {"type": "int", "low": 8, "high": 32, "log": True, "multiple_of": 8, "default": 16,
                  "length": "hidden_layers"},
        "density": {"type": "float", "low": 0.1, "high": 1.0, "log": True, "default": 1.0,
                    "length": "hidden_layers", "length_offset": 1},
        "lr": {"type": "float", "low": 0.001, "high": 0.03, "log": True, "default": 0.01},
    },
    "stages": [{"name": "structure", "params": ["hidden_layers", "width"], "trials": 4},
               {"name": "sparsity", "params": ["density", "lr"], "trials": 3}],
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def spec():
    return parse_spec(TINY)


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def _finished(search, index):
    return [t for t in search.stage_study(index).get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def _assert_exact_and_distinct(search, spec):
    for i, st in enumerate(spec.stages):
        trials = search.stage_study(i).get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(done) == st.trials, f"stage {i}: {len(done)} complete, budget {st.trials}"
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        keys = [tuple(sorted((k, v) for k, v in t.user_attrs["config"].items() if k in st.params and not
                             isinstance(v, list))) + tuple((k, tuple(v)) for k, v in sorted(
                                 t.user_attrs["config"].items()) if k in st.params and isinstance(v, list))
                for t in done]
        assert len(set(keys)) == len(keys), f"stage {i}: a network was trained twice"


# ---------------------------------------------------------------------------------------------- GP and EI
def test_gp_posterior_matches_hand_computation():
    # k(a, b) = exp(-(a - b)^2 / 2), noise 0.01; data (0, 0), (1, 1); query 0.5
    gp = GaussianProcess(np.array([[0.0], [1.0]]), np.array([0.0, 1.0]), np.array([0]),
                         hyper=Hyper(1.0, (1.0,), 0.01), standardize=False)
    e = math.exp
    det = 1.01**2 - e(-1.0)
    mu_hand = e(-0.125) * (1.01 - e(-0.5)) / det
    var_hand = 1 - e(-0.25) * (2 * 1.01 - 2 * e(-0.5)) / det
    mu, sd = gp.predict(np.array([[0.5]]))
    assert mu[0] == pytest.approx(mu_hand, rel=1e-9)
    assert sd[0] ** 2 == pytest.approx(var_hand, rel=1e-6)
    # and at a training point the mean is pulled almost onto the datum
    mu1, _ = gp.predict(np.array([[1.0]]))
    assert mu1[0] == pytest.approx(1.0, abs=0.02)


def test_gp_fit_learns_a_smooth_function():
    rng = np.random.default_rng(0)
    X = rng.random((25, 2))
    y = np.sin(4 * X[:, 0]) + 0.01 * rng.standard_normal(25)
    gp = GaussianProcess(X, y, np.array([0, 1]), restarts=1)
    Xt = rng.random((50, 2))
    mu, sd = gp.predict(Xt)
    assert np.sqrt(np.mean((mu - np.sin(4 * Xt[:, 0])) ** 2)) < 0.1
    assert gp.hyper.lengthscales[1] > gp.hyper.lengthscales[0]  # the irrelevant input gets a long lengthscale


def test_expected_improvement_matches_monte_carlo():
    rng = np.random.default_rng(1)
    mu, sd, best = np.array([0.3, 0.0, -0.2, 0.5]), np.array([0.2, 0.5, 0.05, 0.01]), 0.1
    ei = expected_improvement(mu, sd, best)
    f = mu + sd * rng.standard_normal((400_000, 4))
    imp = np.maximum(best - f, 0.0)
    mc, se = imp.mean(0), imp.std(0) / math.sqrt(len(f))
    assert np.all(np.abs(ei - mc) <= 4 * se + 1e-12)
    assert expected_improvement(np.array([0.0]), np.array([0.0]), 0.5)[0] == pytest.approx(0.5)


def _direct_posterior(X, y, groups, hyper, Xs):
    """Reference: the GP posterior by a float64 dense solve, kernel written out per coordinate."""
    G = int(groups.max()) + 1
    sizes = np.bincount(groups, minlength=G)

    def k(a, b):
        out = np.zeros((len(a), len(b)))
        for i in range(len(a)):
            for j in range(len(b)):
                s = sum((a[i, c] - b[j, c]) ** 2 / (sizes[groups[c]] * hyper.lengthscales[groups[c]] ** 2)
                        for c in range(len(groups)))
                out[i, j] = hyper.signal_var * math.exp(-0.5 * s)
        return out

    K = k(X, X) + (hyper.noise_var + 1e-9) * np.eye(len(X))
    ks = k(Xs, X)
    mu = ks @ np.linalg.solve(K, y)
    var = hyper.signal_var - np.einsum("ij,ji->i", ks, np.linalg.solve(K, ks.T))
    return mu, np.sqrt(var)


def _assert_posterior_matches_direct_solve(gp, X, y, groups, Xs):
    """The fitted GP's posterior at ``Xs`` equals the direct float64 solve on the standardised ``y``, with
    the fitted hyperparameters; returns the standardised targets."""
    mu, sd = gp.predict(Xs)
    ys = (y - y.mean()) / y.std()
    mu_ref, sd_ref = _direct_posterior(X, ys, groups, gp.hyper, Xs)
    assert np.allclose(mu, mu_ref * y.std() + y.mean(), rtol=1e-8, atol=1e-10)
    assert np.allclose(sd, sd_ref * y.std(), rtol=1e-6, atol=1e-9)
    return ys


def test_fitted_gp_posterior_matches_a_direct_float64_solve():
    rng = np.random.default_rng(3)
    X = rng.random((20, 4))
    groups = np.array([0, 0, 1, 2])
    y = np.cos(3 * X[:, 0]) + X[:, 2] ** 2 + 0.05 * rng.standard_normal(20)
    gp = GaussianProcess(X, y, groups, restarts=1)
    ys = _assert_posterior_matches_direct_solve(gp, X, y, groups, rng.random((7, 4)))
    # the incumbent of EI: the lowest posterior mean at the observed points, not the lowest observation
    mu_obs, _ = _direct_posterior(X, ys, groups, gp.hyper, X)
    assert gp.incumbent() == pytest.approx(float(mu_obs.min()) * y.std() + y.mean(), rel=1e-9)


def test_marginal_likelihood_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    X = rng.random((15, 3))
    groups = np.array([0, 1, 1])
    d = group_sq_dists(X, X, groups, 2)
    y = rng.standard_normal(15)
    for theta in (np.array([0.3, -0.7, 0.4, -2.5]), np.array([-1.0, 0.5, -1.5, -6.0])):
        f, g = neg_log_posterior(theta, d, y)
        h = 1e-6
        fd = np.array([(neg_log_posterior(theta + h * e, d, y)[0] - neg_log_posterior(theta - h * e, d, y)[0])
                       / (2 * h) for e in np.eye(len(theta))])
        assert np.allclose(g, fd, rtol=1e-5, atol=1e-6), (g, fd)


def test_rank_warp_is_normal_scores_and_ignores_monotone_transforms():
    y = np.array([0.7, 33.0, 1.2, 0.9, 2.0])
    w = output_warp(y, "rank")
    # hand-computed: ranks 1, 5, 3, 2, 4 of 5 -> Phi^-1((r - 0.5) / 5)
    ref = np.array([statistics.NormalDist().inv_cdf((r - 0.5) / 5) for r in (1, 5, 3, 2, 4)])
    assert np.allclose(w, ref, rtol=0, atol=1e-12)
    assert int(np.argmin(w)) == int(np.argmin(y))  # the incumbent trial is the same
    # f, log10 f and any increasing transform of f give the same targets: the search does not depend on them
    for g in (np.log10, lambda v: 3.0 * v - 7.0, np.sqrt):
        assert np.array_equal(output_warp(g(y), "rank"), w)
    # ties share their mean rank
    t = output_warp(np.array([1.0, 2.0, 2.0, 3.0]), "rank")
    assert t[1] == t[2] and t[0] < t[1] < t[3]
    assert np.array_equal(output_warp(y, "none"), y)
    with pytest.raises(ValueError, match="output warp 'log' is not one of none, rank, yeo-johnson"):
        output_warp(y, "log")


def _yeo_johnson(z, lam):
    """Reference Yeo-Johnson transform, written out case by case."""
    out = np.empty_like(z)
    for i, v in enumerate(z):
        if v >= 0:
            out[i] = math.log1p(v) if abs(lam) < 1e-12 else ((v + 1) ** lam - 1) / lam
        else:
            out[i] = -math.log1p(-v) if abs(lam - 2) < 1e-12 else -((1 - v) ** (2 - lam) - 1) / (2 - lam)
    return out


def _yj_profile_loglik(z, lam):
    t = _yeo_johnson(z, lam)
    return -0.5 * len(z) * math.log(t.var()) + (lam - 1) * float(np.sum(np.sign(z) * np.log1p(np.abs(z))))


def test_yeo_johnson_warp_is_the_maximum_likelihood_power_transform_of_the_standardised_values():
    y = np.array([1.52, 0.42, 0.23, 0.11, -0.15, 0.30])  # log10 f of a structure stage at w_c = 1
    w = output_warp(y, "yeo-johnson")
    z = (y - y.mean()) / y.std()
    grid = np.linspace(-3.0, 3.0, 6001)
    ll = [_yj_profile_loglik(z, g) for g in grid]
    lam = float(grid[int(np.argmax(ll))])
    assert -3.0 < lam < 1.0  # the outlier is pulled in: a concave transform
    assert np.allclose(w, _yeo_johnson(z, lam), atol=5e-3)
    assert np.array_equal(np.argsort(w), np.argsort(y))  # monotone: same order, same incumbent
    # the warp of the standardised values does not depend on the units of y (any a > 0, b)
    assert np.allclose(output_warp(4.0 * y - 3.0, "yeo-johnson"), w, atol=1e-8)
    # the outlier's distance from the rest, in standard deviations, shrinks
    assert w[0] - np.median(w) < z[0] - np.median(z) - 0.3
    assert np.array_equal(output_warp(np.full(4, 0.3), "yeo-johnson"), np.zeros(4))


@pytest.mark.parametrize("kind", ["yeo-johnson", "rank"])
def test_warped_gp_posterior_and_ei_match_a_direct_solve_on_the_warped_targets(kind):
    rng = np.random.default_rng(8)
    X = rng.random((12, 3))
    groups = np.array([0, 1, 1])
    f = 0.5 + X[:, 0] ** 2 + 0.3 * X[:, 1]
    f[3] = 33.0  # one hopeless network
    w = output_warp(f, kind)
    gp = GaussianProcess(X, w, groups, restarts=1)
    Xs = rng.random((6, 3))
    _assert_posterior_matches_direct_solve(gp, X, w, groups, Xs)
    mu, sd = gp.predict(Xs)
    # EI is computed in the warped units; the targets' standardisation is affine, and EI is equivariant
    # under an affine map of the targets (scaled by a, same argmax): a GP given a * w + b with the same
    # hyperparameters predicts a * mu + b, a * sd
    a, b = 2.5, -1.0
    gp2 = GaussianProcess(X, a * w + b, groups, hyper=gp.hyper)
    mu2, sd2 = gp2.predict(Xs)
    assert np.allclose(mu2, a * mu + b, rtol=1e-9, atol=1e-9) and np.allclose(sd2, a * sd, rtol=1e-9)
    ei, ei2 = expected_improvement(mu, sd, gp.incumbent()), expected_improvement(mu2, sd2, gp2.incumbent())
    assert np.allclose(ei2, a * ei, rtol=1e-8, atol=1e-12)


def _rank_corr(a, b):
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def test_output_warp_stops_one_outlier_from_setting_the_lengthscales():
    # f depends on x0 only; one trial is an outlier 30x the others' range (a hopeless network at w_c = 1)
    corr = {"none": [], "yeo-johnson": [], "rank": []}
    for seed in range(5):
        rng = np.random.default_rng(seed)
        X = rng.random((15, 2))
        y = np.sin(4 * X[:, 0]) + 0.01 * rng.standard_normal(15)
        y[0] = 30.0
        Xt = rng.random((200, 2))
        truth = np.sin(4 * Xt[:, 0])
        for kind in corr:
            gp = GaussianProcess(X, output_warp(y, kind), np.array([0, 1]), restarts=2, seed=0)
            corr[kind].append(_rank_corr(gp.predict(Xt)[0], truth))
            if kind == "none":  # linear targets: the fit explains the outlier with a lengthscale under 0.1
                assert min(gp.hyper.lengthscales) < 0.1
            if kind == "rank" and seed < 2:  # x0 found relevant, x1 irrelevant
                assert gp.hyper.lengthscales[0] < 0.5 < gp.hyper.lengthscales[1]
    # linear targets: the posterior mean says nothing about the order of unseen points; warped, it does
    assert max(abs(c) for c in corr["none"]) < 0.3
    for kind in ("yeo-johnson", "rank"):
        assert min(corr[kind]) > 0.45 and all(c > n + 0.3 for c, n in zip(corr[kind], corr["none"]))
    assert np.mean(corr["yeo-johnson"]) > 0.6 and np.mean(corr["rank"]) > 0.8


def test_warm_started_fit_reaches_the_same_optimum():
    rng = np.random.default_rng(5)
    X = rng.random((25, 3))
    y = np.sin(5 * X[:, 1]) + 0.02 * rng.standard_normal(25)
    groups = np.array([0, 1, 2])
    cold = GaussianProcess(X, y, groups, restarts=3, seed=1)
    warm = GaussianProcess(X, y, groups, restarts=0, warm_start=cold.hyper)
    assert warm.log_marginal_likelihood() == pytest.approx(cold.log_marginal_likelihood(), abs=1e-3)
    # the relevant input (1) gets the shortest lengthscale
    assert int(np.argmin(warm.hyper.lengthscales)) == 1


def test_vectorised_candidate_embedding_matches_the_scalar_path():
    for name in ("search_synthetic.yaml", "search_mlp_mnist.yaml", "search_cnn_fashion.yaml"):
        sp = parse_spec(yaml.safe_load((RECIPES / name).read_text()))
        for i in range(sp.n_stages):
            stage = sp.stage(i)
            rng = np.random.default_rng(i)
            U = np.vstack([rng.random((200, stage.dim)), np.zeros((1, stage.dim)), np.ones((1, stage.dim))])
            ref = np.stack([stage.embed(stage.values_from_flat(stage.from_unit(u), {})) for u in U])
            assert np.allclose(stage.embed_units(U, {}), ref, rtol=0, atol=1e-12), (name, i)


def test_kernel_is_psd_on_variable_length_lists():
    sp = parse_spec({**TINY, "space": {**TINY["space"], "hidden_layers": {"type": "int", "low": 0, "high": 4,
                                                                          "default": 1}},
                     "stages": [{"name": "all", "params": ["hidden_layers", "width", "density"], "trials": 3}]})
    stage = sp.stage(0)
    rng = np.random.default_rng(0)
    pts = [stage.values_from_flat(stage.from_unit(rng.random(stage.dim)), {}) for _ in range(60)]
    assert len({len(p["width"]) for p in pts}) >= 4  # lists of many lengths, empty ones included
    X = np.stack([stage.embed(p) for p in pts])
    groups = stage.group_index()
    d = group_sq_dists(X, X, groups, len(stage.groups))
    for _ in range(5):
        hyper = Hyper(float(rng.uniform(0.1, 3)), tuple(rng.uniform(0.05, 3, len(stage.groups))), 0.0)
        k = se_kernel(d, hyper)
        assert np.allclose(k, k.T)
        assert np.linalg.eigvalsh(k).min() > -1e-9 * np.abs(k).max()


# ---------------------------------------------------------------------------------------------- sampler
def test_sampler_proposes_inside_the_space(spec):
    stage = spec.stage(1)
    fixed = {"hidden_layers": 2, "width": [16, 8]}
    sampler = GPEISampler(stage, fixed, n_initial=3, candidates=64, restarts=0, seed=0)
    study = optuna.create_study(sampler=sampler)
    dists = stage.distributions()
    phases, seen = [], set()
    for _ in range(9):
        trial = study.ask()
        values = stage.suggest(lambda k, d: suggest(trial, k, d), fixed)
        phases.append(sampler.last_phase)
        assert len(values["density"]) == 3
        for k, v in trial.params.items():
            assert dists[k]._contains(dists[k].to_internal_repr(v)), (k, v)
        assert all(0.1 <= x <= 1.0 for x in values["density"]) and 0.001 <= values["lr"] <= 0.03
        key = stage.key(values)
        assert key not in seen
        seen.add(key)
        # a smooth synthetic objective: best near density 0.3 and lr 0.01
        f = sum((math.log(x) - math.log(0.3)) ** 2 for x in values["density"]) + (math.log(values["lr"] / 0.01)) ** 2
        study.tell(trial, f)
    assert phases[:3] == ["sobol"] * 3 and set(phases[3:]) == {"gp"}


def test_pareto_front_and_choice():
    pts = [(1.0, 0.10), (0.5, 0.12), (0.6, 0.20), (0.1, 0.30), (0.5, 0.12), (2.0, 0.10)]
    front = pareto_front(pts)
    assert front == [3, 1, 0]
    rows = [dict(state="COMPLETE", f_c=c, f_p=p, stage=1) for c, p in pts]
    ok, fr, chosen = front_rows(rows, w_c=0.1)
    assert chosen in fr and chosen == 1  # 0.12 + 0.05 beats 0.10 + 0.1 and 0.30 + 0.01
    assert front_rows(rows, w_c=0.0)[2] == 0 and front_rows(rows, w_c=10.0)[2] == 3
    assert objective_value(0.1, 0.5, 0.1, log10=True) == pytest.approx(math.log10(0.15))


def test_bad_config_names_the_field():
    bad = {**TINY, "space": {**TINY["space"], "width": {**TINY["space"]["width"], "low": 64}}}
    with pytest.raises(ConfigError, match=r"space\.width"):
        parse_spec(bad)
    with pytest.raises(ConfigError, match=r"stages.*'depth' is not declared"):
        parse_spec({**TINY, "stages": [{"name": "x", "params": ["depth"], "trials": 2}]})
    with pytest.raises(ConfigError, match=r"objective\.w_c"):
        parse_spec({**TINY, "objective": {"w_c": -1}})
    with pytest.raises(ConfigError, match=r"space\.channels.*not a parameter of model 'mlp'"):
        parse_spec({**TINY, "space": {**TINY["space"], "channels": {"type": "int", "low": 1, "high": 2,
                                                                      "default": 1}}})


def test_recipes_parse():
    for p in RECIPES.glob("search_*.yaml"):
        sp = parse_spec(yaml.safe_load(p.read_text()), where=f"{p.name}: ")
        for i in range(sp.n_stages):
            assert sp.stage(i).dim >= 1


# ---------------------------------------------------------------------------------------------- CNN
def test_convnet_and_cnn_space_build(digits):
    from sparseforge.nn.convnet import ConvNet
    from sparseforge.search.objective import build_model

    net = ConvNet((1, 8, 8), 10, [8, 16], kernels=[3, 5], downsample=["pool", "stride"], batch_norm=True,
                  groups=4, hidden=[32], density=[0.25, 1.0])
    out = net(torch.rand(5, 1, 8, 8))
    assert out.shape == (5, 10)
    assert net.feature_shape == (16, 2, 2)
    assert net.features[4].groups == 4  # second conv: gcd(4, 8, 16)
    assert net.num_parameters() < sum(p.numel() for p in net.parameters()) + 1
    assert net.topology.densities[0] == pytest.approx(0.25)
    sp = parse_spec(yaml.safe_load((RECIPES / "search_cnn_fashion.yaml").read_text()))
    model = build_model(sp, sp.default_config(), digits, seed=0)
    assert model(digits.train.x[:4]).shape == (4, 10)


def test_model_cost_without_building_equals_the_built_models_counts():
    """zoo.model_cost (what the search's floor uses: no pattern, no classifier weights) equals
    count_parameters and count_flops of the model build_model builds, over random CNN and MLP
    configurations (every downsampling, kernel, group, BN and density combination the search spaces
    reach) and a fixed model."""
    import random

    from sparseforge.nn.zoo import build_model, model_cost
    from sparseforge.train import count_flops, count_parameters

    def counts(name, shape, **opts):
        model = build_model(name, shape, 10, **opts)
        return count_parameters(model), count_flops(model)

    rng = random.Random(0)
    for _ in range(40):
        n_conv, n_fc = rng.randint(0, 3), rng.randint(0, 2)
        opts = dict(channels=[rng.choice([4, 8, 12]) for _ in range(n_conv)],
                    kernel=[rng.choice([1, 3, 5]) for _ in range(n_conv)],
                    downsample=[rng.choice(["none", "pool", "stride"]) for _ in range(n_conv)] or "pool",
                    batch_norm=rng.random() < 0.5, groups=rng.choice([1, 2, 4]),
                    fc_width=[rng.choice([16, 32, 48]) for _ in range(n_fc)],
                    density=[rng.uniform(0.05, 1.0) for _ in range(n_fc + 1)])
        assert model_cost("cnn", (1, 12, 12), 10, **opts) == counts("cnn", (1, 12, 12), **opts), opts
    for _ in range(20):
        n_fc = rng.randint(0, 3)
        opts = dict(width=[rng.choice([16, 100, 300]) for _ in range(n_fc)],
                    density=[rng.uniform(0.01, 1.0) for _ in range(n_fc + 1)])
        assert model_cost("mlp", (784,), 10, **opts) == counts("mlp", (784,), **opts), opts
    assert model_cost("lenet5", (1, 28, 28), 10)[0] == counts("lenet5", (1, 28, 28))[0]
    with pytest.raises(ValueError, match="not all allowed"):
        model_cost("cnn", (1, 12, 12), 10, width=[3])


def test_complexity_floor_is_the_trained_networks_value_without_its_error(digits):
    """The floor of a configuration is objective_value(0, f_c) with the f_c its training reports, so it is
    never above the trial's value; None where f_c is not known before training."""
    from sparseforge.search.objective import complexity_floor, objective_value, reference_complexity, train_trial

    for kind in ("params", "flops"):
        sp = parse_spec({**TINY, "objective": {**TINY["objective"], "complexity": kind}})
        ref = reference_complexity(sp, digits)
        floor = complexity_floor(sp, digits, ref)
        for cfg in ({"hidden_layers": 1, "width": [8], "density": [0.5, 1.0]},
                    {"hidden_layers": 2, "width": [32, 16], "density": [1.0, 0.25, 1.0]}):
            config = sp.complete(cfg)
            res = train_trial(sp, config, digits, seed=0, reference=ref)
            want = res["params"] if kind == "params" else res["flops_per_sample"]
            assert res["f_c"] == pytest.approx(want / ref, rel=1e-12)
            assert floor(config) == pytest.approx(objective_value(0.0, res["f_c"], sp.objective.w_c, True), rel=1e-12)
            assert floor(config) < res["value"]
    timed = parse_spec({**TINY, "objective": {**TINY["objective"], "complexity": "time"}})
    assert complexity_floor(timed, digits, 1.0) is None
    res = train_trial(timed, timed.complete({}), digits, seed=0, reference=0.5)  # f_c: CPU s per epoch / 0.5 s
    assert res["epoch_cpu_s"] > 0 and res["f_c"] == pytest.approx(res["epoch_cpu_s"] / 0.5, rel=1e-12)
    assert complexity_floor(parse_spec({**TINY, "objective": {**TINY["objective"], "w_c": 0.0}}), digits, 1.0) is None


# ---------------------------------------------------------------------------------------------- studies
def test_failed_trial_is_retried_with_same_params(tmp_path, spec, digits):
    search = create_search(spec, default_storage(tmp_path), data=digits)
    calls = []

    def hook(trial, config):
        calls.append(trial.number)
        if trial.user_attrs.get("stage") == 0 and trial.number == 1 and "retry_of" not in trial.user_attrs:
            raise RuntimeError("injected")

    run_worker(search, data=digits, run_dir=tmp_path, trial_hook=hook)
    trials = search.stage_study(0).get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [1] and "injected" in failed[0].user_attrs["error"]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == failed[0].params
    _assert_exact_and_distinct(search, spec)


def _worker_script(storage: str, name: str, run_dir: str, sleep_on: int | None, sleep_each: float = 0.0) -> str:
    return textwrap.dedent(f"""
        import time
        from sparseforge.search import load_search, run_worker
        def hook(trial, config):
            if {sleep_on!r} is not None and trial.user_attrs.get("stage") == 0 and trial.number == {sleep_on!r}:
                time.sleep(600)
            time.sleep({sleep_each!r})
        run_worker(load_search({storage!r}, {name!r}), run_dir={run_dir!r}, worker_rank=1, trial_hook=hook)
    """)


def _wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_and_resume_continues_the_same_study(tmp_path, spec, digits):
    run_a = tmp_path / "a"
    search = create_search(spec, default_storage(run_a), data=digits)
    proc = subprocess.Popen([PY, "-c", _worker_script(default_storage(run_a), "t", str(run_a), sleep_on=2)],
                            env=_env())
    try:
        def running_2():
            ts = search.stage_study(0).get_trials(deepcopy=False)
            return any(t.number == 2 and t.state == TrialState.RUNNING and "config" in t.user_attrs for t in ts)
        _wait_for(running_2, 120, "the worker to start trial 2")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {t.number: t.value for t in _finished(search, 0)}
    assert sorted(before) == [0, 1]
    rep = run_worker(load_search(default_storage(run_a), "t"), data=digits, run_dir=run_a)
    assert rep.recovered == [(0, 2)]
    after = {t.number: t.value for t in _finished(search, 0)}
    assert all(after[n] == v for n, v in before.items())  # nothing lost, nothing redone
    t2 = search.stage_study(0).trials[2]
    assert t2.state == TrialState.FAIL and t2.user_attrs["error"] == "worker died"
    retry = [t for t in search.stage_study(0).trials if t.user_attrs.get("retry_of") == 2]
    assert len(retry) == 1 and retry[0].params == t2.params and retry[0].state == TrialState.COMPLETE
    _assert_exact_and_distinct(search, spec)
    # an uninterrupted search of the same spec finishes the same number of trials
    run_b = tmp_path / "b"
    other = create_search(spec, default_storage(run_b), data=digits)
    run_worker(other, data=digits, run_dir=run_b)
    for i in range(spec.n_stages):
        assert len(_finished(other, i)) == len(_finished(search, i)) == spec.stages[i].trials


def _two_workers(storage: str, spec, digits, run_dir: Path) -> None:
    search = create_search(spec, storage, data=digits)  # created once, before any worker starts
    proc = subprocess.Popen([PY, "-c", _worker_script(storage, "t", str(run_dir), sleep_on=None, sleep_each=0.3)],
                            env=_env())
    me = os.getpid()

    def hook(trial, config):  # let the other worker get going before this one runs ahead
        def other_started():
            return any((t.user_attrs.get("worker") or {}).get("pid") not in (None, me)
                       for i in range(spec.n_stages) for t in search.stage_study(i).get_trials(deepcopy=False))
        _wait_for(other_started, 120, "the second worker")
        time.sleep(0.3)

    try:
        run_worker(load_search(storage, "t"), data=digits, run_dir=run_dir, worker_rank=0, trial_hook=hook)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_exact_and_distinct(search, spec)
    pids = {(t.user_attrs.get("worker") or {}).get("pid") for i in range(spec.n_stages) for t in _finished(search, i)}
    assert me in pids and len(pids) == 2, "both workers must have finished trials"


def test_two_workers_share_a_file_study(tmp_path, spec, digits):
    _two_workers(default_storage(tmp_path), spec, digits, tmp_path)


def _pg_bin() -> Path | None:
    for cand in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (cand / "initdb").exists() and (cand / "pg_ctl").exists():
            return cand
    w = shutil.which("initdb")
    return Path(w).parent if w and shutil.which("pg_ctl") else None


def test_two_workers_on_a_real_postgresql_server(tmp_path, spec, digits):
    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("psycopg2 not installed: pip install psycopg2-binary")
    as_user: list[str] = []
    base = tmp_path
    if os.geteuid() == 0:  # initdb refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' user to run the server")
        as_user = ["runuser", "-u", "postgres", "--"]
        base = Path("/tmp") / f"sparseforge-pg-{os.getpid()}"
        base.mkdir()
        shutil.chown(base, "postgres")
    data_dir, sock = base / "data", base
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = subprocess.run([*as_user, str(pg / "initdb"), "-D", str(data_dir), "-U", "postgres", "-A", "trust"],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"initdb failed: {r.stderr.strip()[:300]}")
    opts = f"-c listen_addresses='' -c unix_socket_directories={sock} -p {port} -c fsync=off"
    r = subprocess.run([*as_user, str(pg / "pg_ctl"), "-D", str(data_dir), "-o", opts, "-w", "-t", "60",
                        "-l", str(base / "log"), "start"], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"pg_ctl start failed: {r.stderr.strip()[:300]}")
    try:
        url = f"postgresql+psycopg2://postgres@/postgres?host={sock}&port={port}"
        _two_workers(url, spec, digits, tmp_path / "run")
    finally:
        subprocess.run([*as_user, str(pg / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "stop"],
                       capture_output=True)
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)


def test_existing_search_with_other_spec_is_refused(tmp_path, spec, digits):
    from sparseforge.search import SearchError

    create_search(spec, default_storage(tmp_path), data=digits)
    other = parse_spec({**TINY, "train": {**TINY["train"], "epochs": 2}})
    with pytest.raises(SearchError, match=r"train\.epochs: 1 \(now 2\)"):
        create_search(other, default_storage(tmp_path), data=digits)


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_runs_resumes_and_reports(tmp_path):
    from sparseforge.cli import app

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    runner = BoundaryRunner()
    res = runner.invoke(app, ["search", "run", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    rep = tmp_path / "run" / study_key("t", parse_spec(TINY))  # each search has its own folder
    for f in ("trials.csv", "summary.json", "pareto.png", "report.md"):
        assert (rep / f).exists(), f
    n_rows = len((rep / "trials.csv").read_text().splitlines())
    res = runner.invoke(app, ["search", "run", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert len((rep / "trials.csv").read_text().splitlines()) == n_rows  # resumed: nothing new
    (rep / "pareto.png").unlink()
    res = runner.invoke(app, ["search", "report", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert (rep / "pareto.png").exists() and "structure" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "sampler": {"name": "annealing"}}))
    res = runner.invoke(app, ["search", "run", str(bad), "--run-dir", str(tmp_path / "bad")])
    assert res.exit_code == 2
    assert "sampler.name" in res.output and "annealing" in res.output


def test_search_run_budget_and_complexity_options_through_the_console_script(tmp_path):
    """`search run --budget N` splits N trials over the stages like `compare --budget` (with_budget), and
    `--complexity` reaches the spec; a budget below the number of stages and an unknown complexity are
    usage errors naming the field (exit 2, no traceback)."""
    import json

    from sparseforge.studies.search import load_spec, with_budget

    script = shutil.which("sparseforge", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the sparseforge console script is not installed")

    def run(*args):
        return subprocess.run([script, "search", "run", "synthetic", "--run-dir", str(tmp_path / "r"), "--quiet",
                               *args], capture_output=True, text=True, timeout=600)

    res = run("--budget", "7", "--study", "b7")
    assert res.returncode == 0, res.stderr
    want = [s.trials for s in with_budget(load_spec("synthetic"), 7).stages]
    reports = [json.loads(p.read_text()) for p in (tmp_path / "r").glob("b7-*/summary.json")]
    assert len(reports) == 1 and [st["budget"] for st in reports[0]["stages"]] == want and sum(want) == 7
    res = run("--budget", "1", "--study", "b1")
    assert res.returncode == 2 and "budget: 1" in res.stderr and "Traceback" not in res.stderr
    res = run("--complexity", "speed", "--study", "c")
    assert res.returncode == 2 and "objective.complexity" in res.stderr and "speed" in res.stderr


# ---------------------------------------------------------------------------------------------- synthetic benchmark
SYN = yaml.safe_load((RECIPES / "search_synthetic.yaml").read_text())


def _one_stage_synthetic(trials: int, noise: float = 0.0, params: list | None = None):
    d = {**SYN, "synthetic": {**SYN["synthetic"], "noise": noise},
         "stages": [{"name": "all", "params": params or list(SYN["space"]), "trials": trials}]}
    return parse_spec(d)


def test_synthetic_benchmark_has_its_known_optimum():
    sp = _one_stage_synthetic(10)
    opt = sp.complete(sp.synthetic.optimum)
    assert synthetic_f(sp, opt) == 0.0
    # brute force over a grid of every parameter around the optimum: nothing is lower, moves cost
    rng = np.random.default_rng(0)
    stage = sp.stage(0)
    vals = [synthetic_f(sp, sp.complete(stage.values_from_flat(stage.from_unit(u), {})))
            for u in rng.random((2000, stage.dim))]
    assert min(vals) > 0.0 and max(vals) <= 1.0
    assert synthetic_f(sp, {**opt, "batch_size": 512}) == 0.0  # an irrelevant parameter
    assert synthetic_f(sp, {**opt, "lr": 0.0003}) > 0.0
    noisy = _one_stage_synthetic(10, noise=0.01)
    draws = [synthetic_f(noisy, opt, seed=s) for s in range(400)]
    assert abs(np.mean(draws)) < 4 * 0.01 / math.sqrt(400) and np.std(draws) == pytest.approx(0.01, rel=0.15)
    with pytest.raises(ConfigError, match=r"synthetic\.optimum\.lr: 0\.5 is outside"):
        parse_spec({**SYN, "synthetic": {"optimum": {"lr": 0.5}}})
    with pytest.raises(ConfigError, match=r"synthetic: the section is required"):
        parse_spec({k: v for k, v in SYN.items() if k != "synthetic"})


def _search_best(sp, sampler, seed: int) -> float:
    stage = sp.stage(0)
    study = optuna.create_study(sampler=sampler)
    best = math.inf
    for _ in range(stage.trials):
        t = study.ask()
        cfg = sp.complete(stage.suggest(lambda k, d: suggest(t, k, d), {}))
        best = min(best, synthetic_f(sp, cfg))
        study.tell(t, synthetic_f(sp, cfg, seed=seed * 1000 + t.number))
    return best


def test_gp_ei_beats_random_search_on_the_synthetic_benchmark():
    """Densities of a variable-length list and a log-scaled learning rate, 20 noisy trials: the fitted GP
    finds better points than random search in every seed (f includes the constant terms of the
    parameters left at their defaults, about 0.1)."""
    sp = _one_stage_synthetic(20, noise=0.005, params=["density", "lr"])
    stage = sp.stage(0)
    gp = [_search_best(sp, GPEISampler(stage, {}, n_initial=5, candidates=300, restarts=1, seed=s), s)
          for s in range(3)]
    rnd = [_search_best(sp, optuna.samplers.RandomSampler(seed=s), s) for s in range(3)]
    assert max(gp) < min(rnd) and np.mean(gp) < np.mean(rnd) - 0.005, (gp, rnd)


@pytest.mark.parametrize("warp", ["none", "yeo-johnson"])
def test_sampler_fits_its_gp_to_the_warped_objective_values(monkeypatch, warp):
    import sparseforge.search.sampler as sampler_mod

    monkeypatch.setattr(sampler_mod, "WARP", warp)
    sp = _one_stage_synthetic(8)
    stage = sp.stage(0)
    sampler = GPEISampler(stage, {}, n_initial=3, candidates=100, restarts=0, seed=0)
    study = optuna.create_study(sampler=sampler)
    for _ in range(7):
        t = study.ask()
        study.tell(t, synthetic_f(sp, sp.complete(stage.suggest(lambda k, d: suggest(t, k, d), {}))))
    ys = np.array([t.value for t in study.trials[:-1]])  # the GP of the last proposal saw the first six
    w = output_warp(ys, warp)
    assert np.allclose(sampler.last_gp.y, (w - w.mean()) / w.std(), atol=1e-12)


def test_pending_trials_push_parallel_proposals_apart():
    """Four proposals made while the other three are running (four workers): with the kriging believer
    they spread out; without it they crowd the same EI peak."""
    sp = _one_stage_synthetic(12)
    stage = sp.stage(0)

    def batch_spread(use_pending: bool, seed: int) -> float:
        sampler = GPEISampler(stage, {}, n_initial=6, candidates=300, restarts=0, seed=seed, use_pending=use_pending)
        study = optuna.create_study(sampler=sampler)
        for _ in range(8):
            t = study.ask()
            study.tell(t, synthetic_f(sp, sp.complete(stage.suggest(lambda k, d: suggest(t, k, d), {}))))
        emb = []
        for _ in range(4):  # asked, never told: RUNNING, as on other workers
            t = study.ask()
            emb.append(stage.embed(stage.suggest(lambda k, d: suggest(t, k, d), {})))
        assert len({e.tobytes() for e in emb}) == 4
        return min(float(np.sqrt(np.mean((a - b) ** 2))) for i, a in enumerate(emb) for b in emb[i + 1:])

    aware = [batch_spread(True, s) for s in range(4)]
    blind = [batch_spread(False, s) for s in range(4)]
    assert min(aware) > 0.05 and np.mean(aware) > 1.2 * np.mean(blind), (aware, blind)


# ---------------------------------------------------------------------------------------------- run directories
def test_two_searches_in_one_run_dir_keep_their_own_files(tmp_path, digits):
    from sparseforge.studies.search import run_search

    a, b = parse_spec(TINY), parse_spec({**TINY, "name": "u", "train": {**TINY["train"], "lr": 0.02}})
    sa = run_search(a, tmp_path, data=digits)
    csv_a = (Path(sa["report_dir"]) / "trials.csv").read_text()
    sb = run_search(b, tmp_path, data=digits)
    assert sa["report_dir"] != sb["report_dir"]
    assert (Path(sa["report_dir"]) / "trials.csv").read_text() == csv_a  # not overwritten
    ka, kb = study_key("t", a), study_key("u", b)
    ckpt_a = sorted(p.relative_to(tmp_path / ka) for p in (tmp_path / ka / "trials").rglob("*") if p.is_file())
    ckpt_b = sorted(p.relative_to(tmp_path / kb) for p in (tmp_path / kb / "trials").rglob("*") if p.is_file())
    assert ckpt_a and ckpt_b  # each trained its own trials (none reused the other's checkpoints)
    rows_b = trial_rows(load_search(default_storage(tmp_path), "u"))
    assert all(r["train_s"] > 0 for r in rows_b)
    # the report command needs to be told which
    res = subprocess.run([str(Path(PY).parent / "sparseforge"), "search", "report", "--run-dir", str(tmp_path)],
                         capture_output=True, text=True, env=_env(), timeout=900)
    assert res.returncode == 2 and "t, u" in res.stderr and "--study" in res.stderr
    assert "Traceback" not in res.stderr


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        rest = text[text.rfind(")") + 2:].split()
        if int(rest[1]) == pid and rest[0] not in ("Z", "X"):
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_search_workers_die_with_their_parent(tmp_path):
    slow = {**TINY, "train": {**TINY["train"], "epochs": 200}}  # trials long enough to be killed mid-way
    script = textwrap.dedent(f"""
        from sparseforge.studies.search import run_search
        from sparseforge.search import parse_spec
        run_search(parse_spec({slow!r}), {str(tmp_path)!r}, workers=2)
    """)
    parent = subprocess.Popen([PY, "-c", script], env=_env())
    try:
        _wait_for(lambda: len(_children(parent.pid)) == 2, 120, "two worker processes")
        workers = _children(parent.pid)
        _wait_for(lambda: any(t.state == TrialState.RUNNING for t in load_search(default_storage(tmp_path), "t")
                              .stage_study(0).get_trials(deepcopy=False)), 120, "a running trial")
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    _wait_for(lambda: not any(Path(f"/proc/{w}").exists() and _children(1) is not None and
                              Path(f"/proc/{w}/stat").read_text().split(") ")[1][0] not in "ZX"
                              for w in workers if Path(f"/proc/{w}/stat").exists()), 30, "the workers to end")
    # what they were running is either recorded as interrupted (SIGTERM inside the training) or left to the
    # next worker, which sees its process gone: nothing stays RUNNING, and every such trial is queued again
    from sparseforge.search import recover

    study = load_search(default_storage(tmp_path), "t").stage_study(0)
    recover(study, max_retries=2)
    st = study.get_trials(deepcopy=False)
    assert not [t for t in st if t.state == TrialState.RUNNING]
    stopped = [t for t in st if t.state == TrialState.FAIL and t.user_attrs.get("error") in ("interrupted", "worker died")]
    assert stopped and len([t for t in st if t.state == TrialState.WAITING]) == len(stopped)


def _cli(*args, timeout=900):
    return subprocess.run([str(Path(PY).parent / "sparseforge"), *args], capture_output=True, text=True,
                          env=_env(), timeout=timeout)


def test_compare_command_on_the_synthetic_benchmark(tmp_path):
    res = _cli("search", "compare", "synthetic", "--run-dir", str(tmp_path), "--samplers", "gp-ei,random",
               "--seeds", "2", "--budget", "9", "--quiet")
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "compare.md").read_text()
    assert "| gp-ei |" in md and "| random |" in md and "known optimum f = 0" in md
    # budgets [4, 2, 3], n_initial 2: no stage leaves half its trials after dim + 1 design points
    assert "2 initial points per stage (gp-ei's design: [2, 2, 2])" in md
    rows = (tmp_path / "compare.csv").read_text().splitlines()
    assert len(rows) == 1 + 4  # 2 samplers x 2 seeds
    curve = (tmp_path / "anytime.csv").read_text().splitlines()
    assert len(curve) == 1 + 2 * 9  # best-so-far after each of the 9 trials, per sampler
    assert (tmp_path / "compare.png").stat().st_size > 1000
    for sub in ("gp-ei-seed0", "random-seed1"):
        search = load_search(default_storage(tmp_path / sub), "synthetic")
        assert [s.trials for s in search.spec.stages] == [4, 2, 3]  # 9 split like the recipe's 12/8/10
    # bad input: one line, exit 2, the option named
    for args, field in ((("--samplers", "gp-ei,annealing"), "--samplers"), (("--seeds", "0"), "--seeds"),
                        (("--seeds", "a,b"), "--seeds"), (("--budget", "2"), "budget"), (("--budget", "0"), "budget")):
        res = _cli("search", "compare", "synthetic", "--run-dir", str(tmp_path / "bad"), *args)
        assert res.returncode == 2, (args, res.stderr)
        assert field in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_with_budget_splits_like_the_spec():
    from sparseforge.studies.search import with_budget

    sp = parse_spec(SYN)  # 12 / 8 / 10
    for b in (3, 7, 30, 61):
        got = [s.trials for s in with_budget(sp, b).stages]
        assert sum(got) == b and min(got) >= 1
        assert all(abs(g - b * t / 30) < 1 + 1e-9 for g, t in zip(got, (12, 8, 10))), (b, got)
    assert with_budget(sp, 9).sampler.n_initial == 2
