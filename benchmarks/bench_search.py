"""The GP-EI engine on the synthetic benchmark (recipe ``synthetic``, known optimum f = 0): engine overhead
per trial and what pending-aware proposals buy with parallel workers. No network is trained.

    .venv/bin/python benchmarks/bench_search.py overhead --trials 100      # GP fit + EI time per trial
    .venv/bin/python benchmarks/bench_search.py parallel --seeds 5 --trials 40 --workers 4

``overhead``: one GP-EI search of ``--trials`` trials in a single stage over every parameter of the
synthetic space; prints the sampler's thread CPU time (GP fit + EI maximisation) per trial, by
ranges of trials, and the ratio to the CPU time of one real trial (the ``mlp-mnist`` recipe's default
network with the recipe's data and epochs, trained once in the same run).

``parallel``: N simulated workers: N trials are asked (and stay RUNNING, as with N processes) before the
N are evaluated and told, so every proposal of a batch is made while the others are pending. Compared at
equal trials with 1 worker, and with N workers whose sampler ignores pending trials (no kriging
believer): best f (mean ± std over seeds), and near-duplicates (pairs in a batch closer than 0.05 in the
unit cube, RMS over coordinates) per batch.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import optuna

from sparseforge.studies.search import load_spec
from sparseforge.search import GPEISampler, parse_spec
from sparseforge.search.objective import synthetic_f
from sparseforge.search.study import suggest

optuna.logging.set_verbosity(optuna.logging.ERROR)


def one_stage_spec(trials: int, noise: float | None = None):
    """The synthetic recipe with every parameter in one stage of ``trials`` trials."""
    d = load_spec("synthetic").model_dump(mode="json")
    d["stages"] = [{"name": "all", "params": list(d["space"]), "trials": trials}]
    if noise is not None:
        d["synthetic"]["noise"] = noise
    return parse_spec(d)


def run(spec, *, seed: int, workers: int, use_pending: bool = True, n_initial: int = 5) -> dict:
    """One search of the stage's budget with ``workers`` simulated workers; returns best f, the sampler's
    thread CPU seconds per trial and the near-duplicate pairs per batch."""
    stage = spec.stage(0)
    sampler = GPEISampler(stage, {}, n_initial=n_initial, candidates=spec.sampler.candidates,
                          restarts=spec.sampler.restarts, seed=seed, use_pending=use_pending)
    study = optuna.create_study(sampler=sampler)
    best, cpu, dup_pairs, batches, n = math.inf, [], 0, 0, 0
    while n < stage.trials:
        q = min(workers, stage.trials - n)
        asked = []
        for _ in range(q):
            t0 = time.thread_time()
            trial = study.ask()
            values = stage.suggest(lambda k, d, t=trial: suggest(t, k, d), {})
            cpu.append(time.thread_time() - t0)
            asked.append((trial, spec.complete(values), stage.to_unit(trial.params, np.random.default_rng(0))))
        units = np.stack([u for _, _, u in asked])
        for i in range(q):
            for j in range(i + 1, q):
                dup_pairs += float(np.sqrt(np.mean((units[i] - units[j]) ** 2))) < 0.05
        batches += 1
        for trial, config, _ in asked:
            f = synthetic_f(spec, config, seed=seed * 100_003 + trial.number)
            best = min(best, synthetic_f(spec, config))  # judged noise-free: the true quality found
            study.tell(trial, f)
            n += 1
    return dict(best_f=best, cpu_per_trial=cpu, dup_pairs_per_batch=dup_pairs / batches)


def real_trial_cpu_s() -> float:
    """Thread CPU seconds of one trial of the mlp-mnist recipe (its default network, data and epochs)."""
    import torch

    from sparseforge.search.objective import load_search_data, reference_complexity, train_trial

    torch.set_num_threads(1)
    spec = load_spec("mlp-mnist")
    data = load_search_data(spec)
    ref = reference_complexity(spec, data)
    t0 = time.thread_time()
    train_trial(spec, spec.default_config(), data, seed=0, reference=ref)
    return time.thread_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("overhead", "parallel"))
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=4)
    a = ap.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if a.what == "overhead":
        spec = one_stage_spec(a.trials)
        r = run(spec, seed=0, workers=1)
        cpu = np.array(r["cpu_per_trial"])
        real = real_trial_cpu_s()
        out = dict(trials=a.trials, real_trial_cpu_s=real, best_f=r["best_f"])
        for lo in range(0, a.trials, max(a.trials // 5, 1)):
            hi = min(lo + max(a.trials // 5, 1), a.trials)
            out[f"engine_cpu_s_trials_{lo + 1}-{hi}"] = float(cpu[lo:hi].mean())
        last = float(cpu[-10:].mean())
        out["engine_cpu_s_last10"] = last
        out["engine_over_real_trial_last10"] = last / real
        print(json.dumps(out, indent=1))
        return
    spec = one_stage_spec(a.trials)
    res = {}
    for label, workers, pending in (("1 worker", 1, True), (f"{a.workers} workers", a.workers, True),
                                    (f"{a.workers} workers, pending ignored", a.workers, False)):
        rs = [run(spec, seed=s, workers=workers, use_pending=pending) for s in range(a.seeds)]
        b = np.array([r["best_f"] for r in rs])
        res[label] = dict(best_f_mean=float(b.mean()), best_f_std=float(b.std(ddof=1)) if len(b) > 1 else 0.0,
                          near_duplicate_pairs_per_batch=float(np.mean([r["dup_pairs_per_batch"] for r in rs])),
                          engine_cpu_s_per_trial=float(np.mean([np.mean(r["cpu_per_trial"]) for r in rs])))
        print(label, json.dumps(res[label]), flush=True)
    print(json.dumps(dict(trials=a.trials, seeds=a.seeds, results=res)))


if __name__ == "__main__":
    main()
