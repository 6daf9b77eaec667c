"""Studies (seed 000 "trends and guidelines", 004 families): recipe validation, the generic runner with
resume, aggregation and the five analyses on hand-made rows, the input transforms, and every packaged
study's tiny setting through ``sparseforge study``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import typer
import yaml
from cli_runner import BoundaryRunner as CliRunner

from sparseforge.config import ConfigError, parse
from sparseforge.data import ArrayDataset, DataSplits, load_dataset
from sparseforge.data.transforms import fit_pca, pca_reduce, top_variance_features
from sparseforge.studies import densities as st
from sparseforge.topology import is_clash_free, radix_net

torch.set_num_threads(1)

STUDIES = ("junction_densities", "large_sparse", "redundancy", "regularization", "families")


def _app() -> typer.Typer:
    from sparseforge.cli import app

    return app


def _flat(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------- recipes
def _recipe(**over) -> dict:
    base = {
        "name": "t", "title": "T", "claim": "c", "analysis": {"kind": "junction_densities"},
        "settings": {"tiny": {
            "seeds": [0], "data": {"name": "digits", "top_variance": 60}, "model": {"net": [60, 30, 10]},
            "sweep": [{"group": "a", "model": {"fixed": {2: 1.0}}, "grid": {"model.rho_net": [0.3]}}],
        }},
    }
    for path, v in over.items():
        d = base
        keys = path.split("__")
        for k in keys[:-1]:
            d = d[k] if not isinstance(d, list) else d[int(k)]
        if isinstance(d, list):
            d[int(keys[-1])] = v
        else:
            d[keys[-1]] = v
    return base


def _load(tmp_path, data: dict) -> st.Recipe:
    p = tmp_path / "study_t.yaml"
    p.write_text(yaml.safe_dump(data))
    return st.load_recipe(p)


def test_packaged_recipes_validate_and_have_tiny_and_full():
    found = {s["name"]: s for s in st.list_studies()}
    assert set(found) == {n.replace("_", "-") for n in STUDIES}  # one naming scheme: words joined by -
    for name, s in found.items():
        assert {"tiny", "full"} <= set(s["settings"]), name
        assert s["settings"]["full"] > s["settings"]["tiny"] > 0


def test_valid_recipe_expands_grid_and_labels(tmp_path):
    data = _recipe()
    data["settings"]["tiny"]["sweep"][0]["grid"] = {"model.rho_net": [0.3, 0.5], "train.l2": [0.0, 0.001]}
    plan = st.expand(_load(tmp_path, data), "tiny")
    assert [p.label for p in plan] == ["a: rho_net=0.3, l2=0", "a: rho_net=0.3, l2=0.001",
                                       "a: rho_net=0.5, l2=0", "a: rho_net=0.5, l2=0.001"]
    assert plan[1].spec.train.to_config(7).weight_decay == pytest.approx(0.002)  # 2 lambda
    assert plan[1].spec.train.to_config(7).seed == 7
    assert len({p.key for p in plan}) == 4


@pytest.mark.parametrize("over, needles", [
    ({"settings__tiny__model": {"net": [60, 30, 10], "colour": "red"}}, ["model.colour", "Extra inputs", "red"]),
    ({"settings__tiny__model": {"net": [60, 30, 10], "family": "fancy"}}, ["model.family", "fancy", "structured", "radix"]),
    ({"settings__tiny__sweep": [{"group": "a", "grid": {"model.rho_net": [1.5]}}]}, ["model.rho_net", "1.5", "less than or equal to 1"]),
    ({"analysis": {"kind": "magic"}}, ["analysis", "magic", "junction_densities", "families"]),
    ({"settings__tiny__sweep": [{"group": "a", "grid": {"rho_net": [0.3]}}]}, ["grid", "rho_net", "model."]),
    ({"settings__tiny__data": {"name": "cifar"}}, ["data.name", "cifar", "mnist", "morse"]),
    ({"settings__tiny__train": {"seed": 3}}, ["train", "seeds"]),
    ({"settings__tiny__sweep": [{"group": "a", "model": {"fixed": {2: 1.0}}, "grid": {"model.rho_net": [0.1]}}]},
     ["model", "rho_net=0.1", "must be in ["]),
    ({"settings__tiny__sweep": [{"group": "a", "label": "{nope}", "grid": {"model.rho_net": [0.3]}}]},
     ["label", "{nope}", "rho_net"]),
    ({"settings__tiny__model": {"net": [60, 30, 10], "density": 0.3, "rho_net": 0.3}}, ["model", "at most one"]),
    ({"settings__tiny__model": {"net": [60, 30, 10], "z": 4}}, ["model", "z=4", "clash_free", "structured"]),
])
def test_recipe_errors_name_field_value_and_allowed(tmp_path, over, needles):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, _recipe(**over))
    msg = str(e.value)
    for n in needles:
        assert n in msg, (n, msg)
    assert "study_t.yaml" in msg


def test_redundancy_pairs_must_name_groups(tmp_path):
    data = _recipe(analysis={"kind": "redundancy", "pairs": [["a", "b"]]})
    with pytest.raises(ConfigError, match=r"analysis.pairs\[0\]: group 'b' is not in this setting; allowed: a"):
        _load(tmp_path, data)


def test_unknown_setting_and_study_list_allowed(tmp_path):
    r = _load(tmp_path, _recipe())
    with pytest.raises(ConfigError, match="'huge' is not in study 't'; allowed: tiny"):
        st.expand(r, "huge")
    with pytest.raises(ConfigError, match="recipes: families, junction-densities"):
        st.resolve_recipe("nope")
    assert st.resolve_recipe("junction-densities") == st.resolve_recipe("study_junction_densities")
    res = CliRunner().invoke(_app(), ["study", "nope"])
    assert res.exit_code == 2 and "nope" in res.output


def test_seeds_for():
    s = st.Setting(seeds=[3, 5], sweep=[{}])
    assert st.seeds_for(s, None) == [3, 5]
    assert st.seeds_for(s, 1) == [3]
    assert st.seeds_for(s, 4) == [3, 5, 6, 7]


# ---------------------------------------------------------------------------------------------- topology specs
def test_fixed_junction_density_and_budget():
    m = st.StudyModel(net=[780, 130, 10], rho_net=0.2, fixed={2: 1.0})
    topo, _ = st.build_topology(m, (780, 130, 10), seed=0)
    assert topo.densities[1] == 1.0
    assert abs(topo.rho_net - 0.2) / 0.2 < 0.02
    m2 = st.StudyModel(net=[780, 130, 10], rho_net=0.2, fixed={2: 0.1})
    topo2, _ = st.build_topology(m2, (780, 130, 10), seed=0)
    assert topo2.densities[1] == pytest.approx(0.1) and topo2.densities[0] > 0.19


def test_edges_like_keeps_the_weight_budget():
    budget = 780 * 26 + 26 * 10
    for h in (52, 130, 260, 520):
        m = st.StudyModel(net=["auto", h, "auto"], edges_like=[780, 26, 10])
        topo, _ = st.build_topology(m, (780, h, 10), seed=0)
        assert abs(topo.edges - budget) / budget <= 0.015, h
        down, _ = st.build_topology(st.StudyModel(net=["auto", h, "auto"], edges_like=[780, 26, 10], round_down=True),
                                    (780, h, 10), seed=0)
        assert budget * 0.9 <= down.edges <= budget and down.densities[1] == 1.0, h
    with pytest.raises(ConfigError, match="round_down applies to rho_net or edges_like"):
        parse(st.StudyModel, {"density": 0.3, "round_down": True})


def test_radices_give_every_family_the_same_junction_densities():
    ref = radix_net([[1, 2, 5]], [6, 4, 2, 1])
    for fam in ("structured", "clash_free", "radix", "expander", "random"):
        m = st.StudyModel(net=[60, 40, 20, 10], radices=[[1, 2, 5]], family=fam)
        topo, info = st.build_topology(m, (60, 40, 20, 10), seed=1)
        assert topo.densities == pytest.approx(ref.densities), fam
        assert topo.edges == ref.edges
        if fam == "radix":
            assert all(a == b for a, b in zip(topo.patterns, ref.patterns))
        if fam == "clash_free":
            for p, z in zip(topo.patterns, info["z"]):
                assert 2 * z <= p.n_in and is_clash_free(p, z)
    with pytest.raises(Exception, match="family 'structured' takes no options; got 'colour'"):
        st.build_topology(st.StudyModel(net=[60, 40, 20, 10], density=0.5, options={"colour": 1}), (60, 40, 20, 10), 0)
    with pytest.raises(Exception, match="multiple of N'=10"):
        st.build_topology(st.StudyModel(net=[64, 40, 20, 10], radices=[[1, 2, 5]]), (64, 40, 20, 10), 0)


# ---------------------------------------------------------------------------------------------- aggregation
def test_aggregate_mean_min_max_std_on_hand_rows():
    rows = [
        dict(key="b", label="B", rho_net=0.5, seed=0, test_acc=0.90, val_acc=0.8),
        dict(key="a", label="A", rho_net=1.0, seed=0, test_acc=0.50, val_acc=float("nan")),
        dict(key="b", label="B", rho_net=0.5, seed=1, test_acc=0.94, val_acc=0.9),
        dict(key="b", label="B", rho_net=0.5, seed=2, test_acc=0.92, val_acc=1.0),
    ]
    agg = st.aggregate(rows, metrics=("test_acc", "val_acc"))
    assert [r["key"] for r in agg] == ["b", "a"]  # first-seen order
    b, a = agg
    assert b["n_seeds"] == 3 and b["seeds"] == "0 1 2" and b["label"] == "B" and "seed" not in b
    assert b["test_acc_mean"] == pytest.approx(0.92)
    assert (b["test_acc_min"], b["test_acc_max"]) == (0.90, 0.94)
    assert b["test_acc_std"] == pytest.approx(0.02)  # sample std of .90 .92 .94
    assert b["val_acc_mean"] == pytest.approx(0.9)
    assert a["test_acc_std"] == 0.0 and "val_acc_mean" not in a  # NaN ignored; nothing left


def _agg(label, group, seeds_acc, **cols):
    rows = [dict(key=label, label=label, group=group, seed=s, test_acc=v, val_acc=v, val_loss=1 - v, **cols)
            for s, v in enumerate(seeds_acc)]
    return rows


def test_junction_analysis_counts_comparisons(tmp_path):
    rows = []
    rows += _agg("late-dense 20%", "rho2=100", [0.95, 0.96], target_rho_net=0.2, rho_net=0.2, rho_1=0.19, rho_2=1.0, edges=100, dataset="d", net="n")
    rows += _agg("late-sparse 20%", "rho2=10", [0.90, 0.91], target_rho_net=0.2, rho_net=0.199, rho_1=0.2, rho_2=0.1, edges=99, dataset="d", net="n")
    rows += _agg("late-dense 35%", "rho2=100", [0.96, 0.97], target_rho_net=0.35, rho_net=0.35, rho_1=0.34, rho_2=1.0, edges=200, dataset="d", net="n")
    rows += _agg("late-sparse 35%", "rho2=10", [0.965, 0.98], target_rho_net=0.35, rho_net=0.35, rho_1=0.354, rho_2=0.1, edges=200, dataset="d", net="n")
    rows += _agg("far 35%", "rho2=10", [0.5, 0.5], target_rho_net=0.35, rho_net=0.2, rho_1=0.354, rho_2=0.1, edges=10, dataset="d", net="n")
    table = st.aggregate(rows)
    res = st.analyse_junction_densities(st.JunctionAnalysis(kind="junction_densities"), table, rows, tmp_path)
    v = res.verdict
    assert (v["wins"], v["comparisons"]) == (1, 2)  # 0.955 > 0.905; 0.965 < 0.9725; "far" is out of tolerance
    assert v["separated_wins"] == 1 and v["fair_comparisons"] == 1  # only the 35% pair has equal edges
    assert "1 of 2 comparisons" in res.conclusions[0] and "left out" in res.conclusions[-1]
    assert (tmp_path / "accuracy_vs_density.png").stat().st_size > 1000


def test_regularization_picks_best_val_with_tie_break(tmp_path):
    rows = []
    for l2, accs in ((0.0, [0.90, 0.90]), (1e-4, [0.93, 0.95]), (1e-3, [0.92, 0.92])):
        rows += _agg(f"100 {l2}", "100%", accs, l2=l2, rho_net=1.0)
    for l2, accs in ((0.0, [0.91, 0.93]), (1e-4, [0.92, 0.92]), (1e-3, [0.80, 0.80])):
        rows += _agg(f"10 {l2}", "10%", accs, l2=l2, rho_net=0.1)
    table = st.aggregate(rows)
    res = st.analyse_regularization(st.RegularizationAnalysis(kind="regularization"), table, rows, tmp_path)
    assert res.verdict["best_l2"] == {"100%": 1e-4, "10%": 0.0}  # tie at 0.92: lower val loss... equal -> smaller l2
    assert res.verdict["claim_supported"] and res.verdict["strictly_smaller"] == 1
    per_seed = {r["group"]: r["per_seed_best"] for r in res.tables["best_l2"]}
    assert per_seed == {"100%": "0.0001 0.0001", "10%": "0.0001 0"}  # seed 0: 0.92 > 0.91


def test_redundancy_drop_is_per_seed_against_the_same_data_fc(tmp_path):
    rows = []
    rows += _agg("A fc", "A", [0.95, 0.97], target_rho_net=1.0, rho_net=1.0, dataset="A", n_classes=10)
    rows += _agg("A 10", "A", [0.94, 0.93], target_rho_net=0.1, rho_net=0.1, dataset="A", n_classes=10)
    rows += _agg("B fc", "B", [0.30, 0.30], target_rho_net=1.0, rho_net=1.0, dataset="B", n_classes=5)
    rows += _agg("B 10", "B", [0.20, 0.24], target_rho_net=0.1, rho_net=0.1, dataset="B", n_classes=5)
    table = st.aggregate(rows)
    res = st.analyse_redundancy(st.RedundancyAnalysis(kind="redundancy", pairs=[("A", "B")]), table, rows, tmp_path)
    drops = {r["group"]: r for r in res.tables["drops"]}
    assert drops["A"]["drop_mean"] == pytest.approx(0.025) and drops["A"]["drop_max"] == pytest.approx(0.04)
    assert drops["B"]["drop_mean"] == pytest.approx(0.08)
    assert drops["A"]["rel_drop_mean"] == pytest.approx((0.01 / 0.85 + 0.04 / 0.87) / 2)  # margin above 10% chance
    assert drops["B"]["rel_drop_mean"] == pytest.approx((0.10 + 0.06) / 2 / 0.10)  # margin above 20% chance
    assert (res.verdict["wins"], res.verdict["comparisons"], res.verdict["wins_relative"]) == (1, 1, 1)
    assert any("Caution" in c and "B" in c for c in res.conclusions)  # B's FC net is at 30%


def test_large_sparse_and_families_summaries(tmp_path):
    rows = []
    for h, accs, rho in ((10, [0.80, 0.82], 1.0), (20, [0.85, 0.85], 0.5), (40, [0.84, 0.86], 0.25)):
        rows += _agg(f"h{h}", "budget", accs, hidden=h, rho_net=rho, edges=1000, dataset="d")
    res = st.analyse_large_sparse(st.LargeSparseAnalysis(kind="large_sparse"), st.aggregate(rows), rows, tmp_path)
    assert res.verdict == dict(claim_supported=True, budgets=1, wins_any=1, wins_widest=1, separated=1, rises=1,
                               steps=2)  # best 0.85 [0.85, 0.85] vs FC [0.80, 0.82]
    rows = []
    for fam, accs in (("structured", [0.90, 0.92]), ("random", [0.89, 0.91]), ("radix", [0.95, 0.95])):
        rows += _agg(fam, "p", accs, family=fam, rho_net=0.2, rho_1=0.2, net="n")
    rows += _agg("fc", "FC", [0.97, 0.97], family="fc", rho_net=1.0, rho_1=1.0, net="n")
    res = st.analyse_families(st.FamiliesAnalysis(kind="families"), st.aggregate(rows), rows, tmp_path)
    assert res.tables["families"][0]["family"] == "radix"
    assert res.verdict["best_counts"] == {"radix": 1} and res.verdict["within_noise"] == 0  # spread 5 > mean range 1.3
    assert res.verdict["radix_minus_random"] == [pytest.approx(0.05)]


# ---------------------------------------------------------------------------------------------- transforms
def _splits(seed: int = 0, n: int = 300, d: int = 12) -> DataSplits:
    g = np.random.default_rng(seed)
    mix = g.normal(size=(d, d)) * np.linspace(2, 0.1, d)[:, None]
    def part(m):
        x = (g.normal(size=(m, d)) @ mix + 3.0).astype(np.float32)
        return ArrayDataset(torch.from_numpy(x), torch.from_numpy(g.integers(0, 3, m)))
    return DataSplits("toy", part(n), part(50), part(60), 3, (d,))


@pytest.mark.parametrize("method", ["svd", "gram"])
def test_pca_matches_sklearn_and_float64_svd(method):
    from sklearn.decomposition import PCA as SkPCA

    d = _splits()
    x = d.train.x.double().numpy()
    pca = fit_pca(d.train.x, 5, method=method)
    sk = SkPCA(n_components=5, svd_solver="full").fit(x)
    np.testing.assert_allclose(pca.explained_variance, sk.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(pca.explained_variance_ratio, sk.explained_variance_ratio_, rtol=1e-8)
    signs = np.sign((pca.components * sk.components_).sum(1))
    np.testing.assert_allclose(pca.components * signs[:, None], sk.components_, atol=1e-8)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(5), atol=1e-10)  # orthonormal
    s = np.linalg.svd(x - x.mean(0), compute_uv=False)  # float64 reference
    np.testing.assert_allclose(pca.explained_variance, s[:5] ** 2 / (len(x) - 1), rtol=1e-8)
    assert np.all(np.diff(pca.explained_variance) <= 0)


def test_pca_reduce_fits_on_train_only_and_projects_every_split():
    d = _splits()
    r = pca_reduce(d, 4)
    assert r.name == "toy-pca4" and r.sample_shape == (4,) and r.n_features == 4
    assert r.train.x.dtype == torch.float32 and torch.equal(r.val.y, d.val.y)
    pca = fit_pca(d.train.x, 4)
    np.testing.assert_allclose(r.test.x.numpy(), pca.transform(d.test.x), atol=1e-4)
    assert r.train.x.double().mean(0).abs().max() < 1e-5  # centred on the train mean ...
    z = r.train.x.double().numpy()
    cov = np.cov(z, rowvar=False)
    np.testing.assert_allclose(cov, np.diag(pca.explained_variance), atol=1e-3 * cov.max())  # ... decorrelated
    changed = DataSplits("toy", d.train, ArrayDataset(d.val.x * 0 + 100, d.val.y), d.test, 3, (12,))
    np.testing.assert_allclose(pca_reduce(changed, 4).train.x.numpy(), r.train.x.numpy())  # val never used
    w = pca_reduce(d, 4, whiten=True)
    np.testing.assert_allclose(w.train.x.double().numpy().std(0, ddof=1), 1.0, rtol=1e-4)
    with pytest.raises(ValueError, match=r"n_components=13 must be an integer in \[1, 12\]"):
        pca_reduce(d, 13)


def test_top_variance_features_keeps_highest_variance_in_order():
    d = load_dataset("digits", seed=0)
    r = top_variance_features(d, 60)
    flat = d.train.x.reshape(len(d.train), -1)
    var = flat.double().var(0, unbiased=False)
    kept = np.sort(np.argsort(-var.numpy(), kind="stable")[:60])
    assert torch.equal(r.train.x, flat[:, kept]) and r.sample_shape == (60,)
    assert var[np.setdiff1d(np.arange(64), kept)].max() <= var[kept].min()


# ---------------------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Every packaged study's tiny setting, run once through the command (shared by the tests below)."""
    root = tmp_path_factory.mktemp("studies")
    out = {}
    for name in STUDIES:
        res = CliRunner().invoke(_app(), ["study", name, "--setting", "tiny", "--run-dir", str(root / name), "--quiet"])
        out[name] = res
    return root, out


@pytest.mark.parametrize("name", STUDIES)
def test_tiny_setting_writes_csv_plot_report(tiny_runs, name):
    root, results = tiny_runs
    res = results[name]
    assert res.exit_code == 0, res.output + repr(res.exception)
    d = root / name
    recipe = st.load_recipe(name)
    n_sub = len(st.expand(recipe, "tiny")) * len(recipe.settings["tiny"].seeds)
    with open(d / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    with open(d / "table.csv") as f:
        table = list(csv.DictReader(f))
    assert len(runs) == n_sub and len(table) == n_sub // len(recipe.settings["tiny"].seeds)
    assert all(0 <= float(r["test_acc"]) <= 1 for r in runs)
    summary = json.loads((d / "summary.json").read_text())
    assert summary["trained"] == n_sub and summary["reused"] == 0
    pngs = list(d.glob("*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs)
    report = (d / "report.md").read_text()
    assert "## Conclusion" in report and f"--setting tiny" in report
    for p in pngs:
        assert f"]({p.name})" in report
    assert summary["conclusions"][0].replace("**", "") in report.replace("**", "")
    assert "trained" in _flat(res.output) and recipe.title.split(":")[0] in _flat(res.output)


def test_second_invocation_reuses_finished_sub_runs(tiny_runs):
    root, results = tiny_runs
    assert results["large_sparse"].exit_code == 0
    d = root / "large_sparse"
    finished = sorted(d.glob("runs/*/seed*/result.json"))
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    ckpts = {p: p.stat().st_mtime_ns for p in d.glob("runs/*/seed*/train/checkpoint.pt")}
    res = CliRunner().invoke(_app(), ["study", "large_sparse", "--run-dir", str(d), "--quiet"])
    assert res.exit_code == 0, res.output
    assert f"trained 0, reused {len(finished)}" in _flat(res.output)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # nothing retrained or rewritten
    assert all(p.stat().st_mtime_ns == t for p, t in ckpts.items())
    # a sub-run lost (as if stopped before it finished): only that one is trained again
    victim = finished[0]
    for f in victim.parent.rglob("*"):
        if f.is_file():
            f.unlink()
    res = CliRunner().invoke(_app(), ["study", "large_sparse", "--run-dir", str(d), "--quiet"])
    assert res.exit_code == 0 and f"trained 1, reused {len(finished) - 1}" in _flat(res.output)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items() if p != victim)


def test_interrupted_sub_run_resumes_from_its_checkpoint(tmp_path):
    """A sub-run whose result.json is missing but whose checkpoint holds every epoch is not retrained."""
    data = _recipe()
    data["settings"]["tiny"]["train"] = {"epochs": 2, "batch_size": 64}
    p = tmp_path / "study_t.yaml"
    p.write_text(yaml.safe_dump(data))
    recipe = st.load_recipe(p)
    first = st.run_study(recipe, "tiny", tmp_path / "run")
    result = next((tmp_path / "run").glob("runs/*/seed0/result.json"))
    history = json.loads(result.read_text())["history"]
    result.unlink()
    again = st.run_study(recipe, "tiny", tmp_path / "run")
    assert again.trained == 1 and json.loads(result.read_text())["history"] == history
    assert again.rows[0]["test_acc"] == first.rows[0]["test_acc"]


def test_list_option_shows_every_study():
    res = CliRunner().invoke(_app(), ["study", "--list"])
    assert res.exit_code == 0
    for name in STUDIES:  # listed by the one recipe naming scheme (dashes); the underscore form is accepted too
        assert name.replace("_", "-") in res.output


def test_yaml_path_seeds_option_and_bad_setting(tmp_path):
    p = tmp_path / "study_t.yaml"
    data = _recipe()
    data["settings"]["tiny"]["train"] = {"epochs": 1, "batch_size": 128}
    data["settings"]["tiny"]["seeds"] = [4, 9]
    p.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(_app(), ["study", str(p), "--run-dir", str(tmp_path / "r"), "--seeds", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["seeds"] == [4]
    assert "--seeds 1" in (tmp_path / "r" / "report.md").read_text()
    res = CliRunner().invoke(_app(), ["study", "large_sparse", "--setting", "huge", "--run-dir", str(tmp_path)])
    assert res.exit_code == 2 and "allowed: tiny, medium, full" in _flat(res.output)
