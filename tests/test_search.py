"""Model search (seed 003): GP + EI engine, the Optuna sampler, storage, resume, workers, CLI."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
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
from sparseforge.search.gp import group_sq_dists, se_kernel
from sparseforge.search.study import suggest

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
    for f in ("trials.csv", "summary.json", "pareto.png", "report.md"):
        assert (tmp_path / "run" / f).exists(), f
    n_rows = len((tmp_path / "run" / "trials.csv").read_text().splitlines())
    res = runner.invoke(app, ["search", "run", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "run" / "trials.csv").read_text().splitlines()) == n_rows  # resumed: nothing new
    (tmp_path / "run" / "pareto.png").unlink()
    res = runner.invoke(app, ["search", "report", "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "pareto.png").exists() and "structure" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "sampler": {"name": "annealing"}}))
    res = runner.invoke(app, ["search", "run", str(bad), "--run-dir", str(tmp_path / "bad")])
    assert res.exit_code == 2
    assert "sampler.name" in res.output and "annealing" in res.output
