"""Running a study: every configuration x seed trained (or reused), aggregated, analysed, written."""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ... import io
from ...config import ConfigError
from ...data import DataSplits
from ...nn import SparseMLP
from ...topology import NetworkTopology, TopologyError
from ...runs import RunStore
from ...train import Callback, TrainConfig, fit
from .analyses import ANALYSES
from .expand import (build_topology, expand, fmt_value, Planned, resolve_sizes, seeds_for,
                     target_density, topology_metrics)
from .report import StudyResult, write_outputs
from .schema import effective_analysis, FamiliesAnalysis, METRICS, Recipe


# =========================================================================================== runner
Notify = Callable[[dict], None]


def _row(p: Planned, seed: int, data: DataSplits, topo: NetworkTopology, info: dict, model: SparseMLP,
         state, train_cfg: TrainConfig, elapsed: float) -> dict:
    sizes = tuple(topo.sizes)
    rho = topo.rho_net
    hist = state.history
    row: dict = dict(
        label=p.label, group=p.group, key=p.key, seed=seed,
        dataset=p.spec.data.display(), n_features=sizes[0], n_classes=data.n_classes,
        net="-".join(map(str, sizes)), hidden=sizes[1] if len(sizes) > 2 else 0,
        family="fc" if rho == 1 else p.spec.model.family,
        target_rho_net=round(target_density(p.spec.model, sizes, rho), 10), rho_net=rho,
    )
    for i, d in enumerate(topo.densities):
        row[f"rho_{i + 1}"] = d
    row.update(
        fan_out=" ".join(str(int(pt.edges // pt.n_in)) if pt.edges % pt.n_in == 0 else f"{pt.edges / pt.n_in:.2f}"
                         for pt in topo.patterns),
        edges=topo.edges, params=model.num_parameters(), flops_per_sample=model.flops_per_sample(),
        l2=train_cfg.weight_decay / 2, weight_decay=train_cfg.weight_decay, epochs=len(hist),
        train_acc=hist[-1]["train_acc"], val_acc=hist[-1]["val_acc"], val_loss=hist[-1]["val_loss"],
        test_acc=state.metrics["test_acc"], test_loss=state.metrics["test_loss"],
        train_time_s=sum(h["epoch_time_s"] for h in hist), wall_s=elapsed,
    )
    if "z" in info:
        row["z"] = " ".join(map(str, info["z"]))
    for k, v in p.assignments:
        row.setdefault(f"set:{k}", fmt_value(v))
    return row


def run_study(
    recipe: Recipe,
    setting: str,
    run_dir: str | Path,
    *,
    seeds: int | None = None,
    notify: Notify | None = None,
    callbacks_for: Callable[[str], Sequence[Callback]] = lambda label: (),
    overwrite: bool = False,
) -> StudyResult:
    """Run (or resume) every sub-run of ``setting``, then aggregate, analyse and write the outputs.

    Args:
        recipe: a validated recipe (:func:`load_recipe`).
        setting: one of ``recipe.settings``.
        run_dir: where everything goes; finished sub-runs found there are reused, partial ones resumed. A
            :class:`~sparseforge.runs.RunStore`: a study of another recipe or setting there is refused naming
            the fields, unless ``overwrite`` (then it is cleared); more seeds may be added.
        seeds: use this many seeds instead of the setting's list (:func:`seeds_for`).
        notify: called after every sub-run with ``index``, ``total``, ``label``, ``seed``, ``reused``, ``row``.
        callbacks_for: training callbacks per sub-run (e.g. progress bars), given its display label.

    Returns a :class:`StudyResult`; writes ``runs.csv``, ``table.csv``, the analysis' CSV tables, its
    figures, ``summary.json`` and ``report.md`` in ``run_dir``.
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    plan = expand(recipe, setting)
    s = recipe.settings[setting]
    seed_list = seeds_for(s, seeds)
    # what the sub-runs depend on; seeds, notes and analysis options only add runs or change the outputs
    settings = {"study": recipe.name, "setting": setting,
                "config": s.model_dump(mode="json", exclude={"seeds", "threads", "note", "analysis"})}
    with RunStore(run_dir, settings, command="study", overwrite=overwrite):
        io.write_json(run_dir / "study.json", dict(
            recipe=recipe.model_dump(mode="json"), setting=setting, seeds=seed_list,
            configs=[dict(label=p.label, group=p.group, key=p.key, spec=p.spec.model_dump(mode="json")) for p in plan],
        ))
        cache: dict[str, DataSplits] = {}
        rows: list[dict] = []
        trained = reused = 0
        total = len(plan) * len(seed_list)
        spec = effective_analysis(recipe, setting)
        want_metrics = isinstance(spec, FamiliesAnalysis) and spec.topology_metrics
        index = 0
        for p in plan:
            for seed in seed_list:
                index += 1
                sub = run_dir / "runs" / p.key / f"seed{seed}"
                result = sub / "result.json"
                if result.exists():
                    saved = json.loads(result.read_text())
                    if saved.get("key") == p.key and saved.get("seed") == seed:
                        row = dict(saved["row"], label=p.label, group=p.group)
                        rows.append(row)
                        reused += 1
                        if notify:
                            notify(dict(index=index, total=total, label=p.label, seed=seed, reused=True, row=row))
                        continue
                dkey = json.dumps(p.spec.data.model_dump(mode="json"), sort_keys=True)
                if dkey not in cache:
                    cache[dkey] = p.spec.data.load()
                data = cache[dkey]
                try:
                    sizes = resolve_sizes(p.spec.model, data.n_features, data.n_classes)
                    topo, info = build_topology(p.spec.model, sizes, seed)
                except (TopologyError, ConfigError) as e:
                    raise ConfigError(f"settings.{setting} ({p.label}): model: {e}") from None
                torch.manual_seed(seed)
                model = SparseMLP(topo)
                cfg = p.spec.train.to_config(seed)
                t1 = time.perf_counter()
                state = fit(model, data, cfg, callbacks=callbacks_for(f"[{index}/{total}] {p.label} s{seed}"),
                            run_dir=sub / "train", resume=True)
                row = _row(p, seed, data, topo, info, model, state, cfg, time.perf_counter() - t1)
                if want_metrics:
                    row.update(topology_metrics(topo))
                io.write_json(result, dict(key=p.key, seed=seed, row=row, history=state.history))
                rows.append(row)
                trained += 1
                if notify:
                    notify(dict(index=index, total=total, label=p.label, seed=seed, reused=False, row=row))
        extra = ("connectivity", "path_cv", "min_spectral_gap", "min_scatter") if want_metrics else ()
        table = aggregate(rows, metrics=METRICS + extra)
        analysis = ANALYSES[spec.kind](spec, table, rows, run_dir)
        res = StudyResult(recipe, setting, seed_list, rows, table, analysis, trained, reused,
                          time.perf_counter() - t0, run_dir)
        write_outputs(res)
    return res


# =========================================================================================== aggregation
def aggregate(rows: Sequence[dict], by: str = "key", metrics: Sequence[str] = METRICS) -> list[dict]:
    """One row per distinct ``by`` (first-seen order): the first row's other columns, ``n_seeds``,
    ``seeds`` and for every metric present ``<m>_mean``, ``<m>_min``, ``<m>_max``, ``<m>_std`` (sample
    standard deviation, 0 for one seed). NaN values of a metric are ignored."""
    groups: dict[Any, list[dict]] = {}
    for r in rows:
        groups.setdefault(r[by], []).append(r)
    per_seed = {"seed", "test_loss", "wall_s", "epochs"}
    out = []
    for rs in groups.values():
        agg = {k: v for k, v in rs[0].items() if k not in metrics and k not in per_seed}
        agg["n_seeds"] = len(rs)
        agg["seeds"] = " ".join(str(r.get("seed")) for r in rs)
        for m in metrics:
            vals = [float(r[m]) for r in rs if m in r and r[m] is not None and not math.isnan(float(r[m]))]
            if not vals:
                continue
            agg[f"{m}_mean"] = statistics.fmean(vals)
            agg[f"{m}_min"] = min(vals)
            agg[f"{m}_max"] = max(vals)
            agg[f"{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out.append(agg)
    return out
