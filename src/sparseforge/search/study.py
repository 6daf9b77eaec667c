"""Studies, storage, workers, resume and retries of a staged search (Optuna ask/tell underneath).

Length (over 500 lines, on purpose): creation, workers, heartbeats and retries are one protocol over the
storage layout below; each part relies on the invariants the others keep.

Layout in the storage, for a search called ``NAME``:

* ``NAME``: an empty study holding the search's spec, reference complexity and creation time in its
  user attributes (created last, so its presence means creation finished);
* ``NAME/stage1-<stage name>``, ``NAME/stage2-...``: one Optuna study per stage (minimise).

Storage: a file in the run directory by default (Optuna's journal file, ``study.journal``; several
processes on one machine share it through its lock), or a database URL (``postgresql://...``,
``sqlite:///...``) for workers on many machines. Create the search once (:func:`create_search`), then
start any number of workers (:func:`run_worker`) that load it; concurrent creation of the same search
is tolerated (the loser loads what the winner made) but is not the intended use.

Each worker goes through the stages in order. In a stage it asks for trials until the stage's budget
of finished (complete or pruned) trials is reached, waits for the other workers' running trials, and
only then moves on, fixing the best complete trial of each earlier stage. Budgets are exact: a trial
asked beyond the budget by a racing worker is closed at once (state FAIL, user attribute
``skipped``) and counts for nothing.

Resume and crashes: every trial records its worker (host, pid, process start time) and a heartbeat.
A RUNNING trial whose worker process is gone (same host), or whose heartbeat is older than
``stale_after_s`` (other hosts), is marked FAIL (``error = "worker died"``) by the next worker that
looks, and re-enqueued with the same parameters (user attribute ``retry_of``) up to
``spec.max_retries`` times; a trial that raises is treated the same way. Killing a search and
starting it again therefore continues the same study: finished trials stay, the interrupted one is
retried (resuming its training from the per-epoch checkpoint when a run directory is given).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, Trial, TrialState

from ..data import DataSplits
from .objective import complexity_floor, load_search_data, reference_complexity, train_trial
from .sampler import GPEISampler, make_sampler
from .space import SearchSpec, StageSpace

JOURNAL = "study.journal"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

optuna.logging.set_verbosity(optuna.logging.WARNING)


class SearchError(RuntimeError):
    """A search cannot be created, loaded or run as asked; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------- storage
def default_storage(run_dir: str | os.PathLike) -> str:
    """The default storage of a run directory: its journal file."""
    return str(Path(run_dir) / JOURNAL)


def open_storage(url: str | os.PathLike | BaseStorage, *, create_tables: bool = True) -> BaseStorage:
    """A storage from a URL or a path.

    ``postgresql://...``, ``postgresql+psycopg2://...``, ``mysql://...``, ``sqlite:///...``: an Optuna
    RDB storage (``create_tables=False`` for workers: the creator made the tables; concurrent table
    creation races on PostgreSQL). Anything else (a path, or ``journal:PATH``): a journal file, created
    with its directory if absent.
    """
    if isinstance(url, BaseStorage):
        return url
    text = str(url)
    if "://" in text and not text.startswith("journal:"):
        kw: dict[str, Any] = {"engine_kwargs": {"pool_pre_ping": True}}
        if not create_tables:
            kw["skip_table_creation"] = True
        return RDBStorage(text, **kw)
    path = Path(text[len("journal:"):] if text.startswith("journal:") else text)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def stage_study_name(name: str, spec: SearchSpec, index: int) -> str:
    return f"{name}/stage{index + 1}-{spec.stages[index].name}"


# ---------------------------------------------------------------------------------------------- create / load
@dataclass
class Search:
    """A created search: where it lives and what it is."""

    storage: BaseStorage
    name: str
    spec: SearchSpec
    reference: float
    created: str = ""

    def stage_name(self, index: int) -> str:
        return stage_study_name(self.name, self.spec, index)

    @property
    def key(self) -> str:
        """``<name>-<hash of the spec>``: this search's folder inside a run directory (trial checkpoints,
        reports), so two different searches sharing a run directory never share a file."""
        return study_key(self.name, self.spec)

    def stage_study(self, index: int, sampler: optuna.samplers.BaseSampler | None = None,
                    pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
        return optuna.load_study(study_name=self.stage_name(index), storage=self.storage, sampler=sampler,
                                 pruner=pruner)


def _spec_json(spec: SearchSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True)


def study_key(name: str, spec: SearchSpec) -> str:
    """Folder name of a search inside a run directory: its name (path-safe) and 10 hex digits of the
    SHA-256 of its spec."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "search"
    return f"{safe}-{hashlib.sha256(_spec_json(spec).encode()).hexdigest()[:10]}"


def _diff(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} (now {b!r})"]


def create_search(spec: SearchSpec, storage: str | os.PathLike | BaseStorage, name: str | None = None, *,
                  data: DataSplits | None = None) -> Search:
    """Create the search's studies once (idempotent: an existing search with the same spec is loaded;
    one with another spec raises :class:`SearchError` naming the differences)."""
    name = name or spec.name
    st = open_storage(storage, create_tables=True)
    try:
        existing = load_search(st, name, wait_s=0)
    except SearchError:
        existing = None
    if existing is not None:
        _check_same(existing, spec)
        return existing
    data = data if data is not None else load_search_data(spec)
    reference = reference_complexity(spec, data)
    for i in range(spec.n_stages):
        try:
            optuna.create_study(study_name=stage_study_name(name, spec, i), storage=st, direction="minimize")
        except DuplicatedStudyError:
            pass
    try:
        root = optuna.create_study(study_name=name, storage=st, direction="minimize")
    except DuplicatedStudyError:  # a concurrent creator won
        existing = load_search(st, name)
        _check_same(existing, spec)
        return existing
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    root.set_user_attr("reference", reference)
    root.set_user_attr("created", created)
    root.set_user_attr("spec", spec.model_dump(mode="json"))  # last: its presence means "ready"
    return Search(st, name, spec, reference, created)


def _check_same(existing: Search, spec: SearchSpec) -> None:
    if _spec_json(existing.spec) != _spec_json(spec):
        diffs = _diff(existing.spec.model_dump(mode="json"), spec.model_dump(mode="json"))
        raise SearchError(
            f"search {existing.name!r} already exists with another spec: {'; '.join(diffs[:8])}"
            f"{' ...' if len(diffs) > 8 else ''}. Use the same config to resume it, or a new run directory / "
            f"study name for a new search"
        )


def load_search(storage: str | os.PathLike | BaseStorage, name: str, *, wait_s: float = 30.0) -> Search:
    """Load a created search (waiting up to ``wait_s`` for a creation in progress)."""
    st = open_storage(storage, create_tables=False)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            root = optuna.load_study(study_name=name, storage=st)
            attrs = root.user_attrs
            if "spec" in attrs:
                spec = SearchSpec.model_validate(attrs["spec"])
                return Search(st, name, spec, float(attrs["reference"]), attrs.get("created", ""))
            why = "its creation has not finished"
        except KeyError:
            why = "it does not exist"
        if time.monotonic() >= deadline:
            raise SearchError(f"search {name!r} cannot be loaded from the storage: {why}; create it first "
                              f"(sparseforge search create, or search run which creates it)")
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------------- liveness
def _proc_start(pid: int) -> str | None:
    """Start time of process ``pid`` (clock ticks since boot, from /proc), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2:].split()
    if rest[0] in ("Z", "X"):
        return None
    return rest[19]


def _alive(pid: int, start: str | None) -> bool:
    if Path("/proc/self/stat").exists():
        now = _proc_start(pid)
        return now is not None and (start is None or now == start)
    try:  # pragma: no cover - systems without /proc
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_identity() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _proc_start(pid)}


def is_stale(t: FrozenTrial, stale_after_s: float, now: float | None = None) -> bool:
    """A RUNNING trial whose worker died: the process is gone (same host), or no heartbeat for
    ``stale_after_s`` seconds."""
    w = t.user_attrs.get("worker")
    now = time.time() if now is None else now
    if w and w.get("host") == socket.gethostname():
        return not _alive(int(w["pid"]), w.get("pid_start"))
    beat = t.user_attrs.get("heartbeat")
    if beat is None:
        start = t.datetime_start.timestamp() if t.datetime_start else now
        beat = start
    return now - float(beat) > stale_after_s


class _Heartbeat:
    """Writes the trial's ``heartbeat`` user attribute every ``interval_s`` seconds from a thread."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval_s: float) -> None:
        self.storage, self.trial_id, self.interval_s = storage, trial_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            except Exception:  # noqa: BLE001 - a missed beat is not fatal; the trial may be finishing
                pass

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def die_with_parent(parent_pid: int | None = None, poll_s: float = 1.0) -> None:
    """Make this process (a worker started by another) end when its parent does.

    On Linux the kernel sends SIGTERM at the parent's death (``prctl(PR_SET_PDEATHSIG)`` through ctypes);
    elsewhere, or if that call fails, a daemon thread polls the parent pid every ``poll_s`` seconds and
    sends the same signal. SIGTERM is turned into ``SystemExit`` so the running trial is recorded as
    interrupted and queued for retry, as for Ctrl-C. ``parent_pid``: the pid the parent had when it
    started us (a parent that died before this call is caught: the pid no longer matches).
    """
    import signal

    parent_pid = os.getppid() if parent_pid is None else int(parent_pid)

    def _term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _term)
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(1, int(signal.SIGTERM), 0, 0, 0) == 0  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os.kill(os.getpid(), signal.SIGTERM)
    if not armed:  # pragma: no cover - non-Linux
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(poll_s)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


# ---------------------------------------------------------------------------------------------- retries
def _enqueue_retry(study: optuna.Study, t: FrozenTrial, max_retries: int) -> bool:
    attempt = int(t.user_attrs.get("attempt", 0)) + 1
    if attempt > max_retries or t.user_attrs.get("skipped"):
        return False
    origin = int(t.user_attrs.get("retry_of", t.number))
    study.enqueue_trial(dict(t.params), user_attrs={"retry_of": origin, "attempt": attempt})
    return True


def recover(study: optuna.Study, max_retries: int, stale_after_s: float = 300.0) -> list[int]:
    """Mark RUNNING trials of dead workers FAIL and enqueue their retries; returns their numbers.

    Marking is the claim: if two workers race, the storage lets only one change the state (the other
    gets ``UpdateFinishedTrialError``), so each dead trial is retried once.
    """
    storage = study._storage
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(t, stale_after_s):
            continue
        try:
            storage.set_trial_user_attr(t._trial_id, "error", "worker died")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        out.append(t.number)
        _enqueue_retry(study, storage.get_trial(t._trial_id), max_retries)
    return out


# ---------------------------------------------------------------------------------------------- workers
def suggest(trial: Trial, name: str, dist: optuna.distributions.BaseDistribution) -> Any:
    """``trial.suggest_*`` for a distribution object (Optuna's public API)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"{name}: unsupported distribution {dist!r}")


@dataclass
class WorkerReport:
    """What one worker did: trial numbers per stage and outcome, engine time per trial."""

    trials: list[dict] = field(default_factory=list)
    recovered: list[tuple[int, int]] = field(default_factory=list)


def _counts(trials: list[FrozenTrial]) -> tuple[int, int, int]:
    done = sum(t.state in FINISHED for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    return done, running, waiting


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial with the lowest value (ties: the earliest)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return min(done, key=lambda t: (t.value, t.number)) if done else None


def stage_fixed(search: Search, index: int) -> dict[str, Any]:
    """Values fixed for stage ``index``: the best complete trial of every earlier stage."""
    fixed: dict[str, Any] = {}
    for j in range(index):
        best = best_trial(search.stage_study(j))
        if best is not None:
            cfg = best.user_attrs["config"]
            fixed.update({n: cfg[n] for n in search.spec.stages[j].params})
    return fixed


def stage_prior(search: Search, index: int, fixed: dict[str, Any]) -> list[tuple[dict[str, Any], float]]:
    """Observations of stage ``index``'s objective made by earlier stages: every complete trial of an
    earlier stage whose configuration agrees with ``fixed`` (and the defaults) on every parameter this
    stage does not search, as ``(this stage's values, objective)``. The previous stage's best is one of
    them (at this stage's defaults), so a GP-EI stage starts from what is already known."""
    spec = search.spec
    own = set(spec.stages[index].params)
    base = spec.complete(fixed)
    out = []
    for j in range(index):
        for t in search.stage_study(j).get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            cfg = t.user_attrs.get("config")
            if cfg is None or t.value is None or not math.isfinite(t.value):
                continue
            if all(cfg.get(n) == base[n] for n in spec.space if n not in own):
                out.append(({n: cfg[n] for n in spec.stages[index].params}, float(t.value)))
    return out


def _pruner(spec: SearchSpec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if not p.enabled:
        return optuna.pruners.NopPruner()
    return optuna.pruners.PercentilePruner(p.percentile, n_startup_trials=p.startup_trials,
                                           n_warmup_steps=p.warmup_epochs)


def trial_seed(spec: SearchSpec, stage: int, origin: int) -> int:
    """Seed of a trial's network (pattern, initialisation, shuffling): fixed by the trial it retries."""
    return (spec.sampler.seed * 1_000_003 + stage * 10_007 + origin) % (2**31)


def run_worker(
    search: Search | tuple[str | os.PathLike | BaseStorage, str],
    *,
    data: DataSplits | None = None,
    run_dir: str | os.PathLike | None = None,
    worker_rank: int | None = None,
    on_trial: Callable[[dict], None] | None = None,
    trial_hook: Callable[[Trial, dict], None] | None = None,
    poll_s: float = 0.5,
    heartbeat_s: float = 30.0,
    stale_after_s: float = 300.0,
    max_trials: int | None = None,
) -> WorkerReport:
    """Work on a search until every stage has its budget of finished trials.

    Args:
        search: a :class:`Search`, or ``(storage, name)`` to load one.
        data: the dataset (loaded from the spec when None).
        run_dir: where each trial checkpoints its training (``<search key>/trials/stageK/trialNNNN``,
            see :attr:`Search.key`); a retried trial resumes there. None: no checkpoints.
        worker_rank: mixed into the seeds of Optuna's own samplers (distinct per concurrent worker);
            None: derived from the process id.
        on_trial: called with a row (see :func:`trial_rows`) after every trial this worker ends.
        trial_hook: called as ``hook(trial, config)`` before training (tests inject failures here).
        poll_s: how often a worker waiting for others' running trials looks again.
        heartbeat_s, stale_after_s: heartbeat period, and the silence after which a trial of a worker on
            another host counts as dead.
        max_trials: stop after this many trials of this worker (None: until the search is done).
    """
    if not isinstance(search, Search):
        search = load_search(*search)
    spec = search.spec
    data = data if data is not None else load_search_data(spec)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    rank = os.getpid() if worker_rank is None else worker_rank
    report = WorkerReport()
    ident = worker_identity()
    floor = complexity_floor(spec, data, search.reference) if spec.sampler.name == "gp" else None
    ran = 0
    try:
        for index in range(spec.n_stages):
            stage = StageSpace(spec, index)
            fixed = stage_fixed(search, index)
            probe = search.stage_study(index)
            n_existing = len(probe.get_trials(deepcopy=False))
            s = spec.sampler
            prior = stage_prior(search, index, fixed) if s.name == "gp" else ()
            sampler = make_sampler(s.name, stage, fixed, n_initial=s.n_initial, candidates=s.candidates,
                                   restarts=s.restarts, seed=s.seed, salt=(n_existing, rank), prior=prior,
                                   floor=floor)
            study = search.stage_study(index, sampler=sampler, pruner=_pruner(spec))
            study.set_user_attr("fixed", fixed)
            while True:
                report.recovered += [(index, n) for n in recover(study, spec.max_retries, stale_after_s)]
                done, running, waiting = _counts(study.get_trials(deepcopy=False))
                if done >= stage.trials and running == 0 and waiting == 0:
                    break
                if waiting == 0 and done + running >= stage.trials:
                    time.sleep(poll_s)  # the rest is running elsewhere; wait for it (or for its death)
                    continue
                if max_trials is not None and ran >= max_trials:
                    return report
                row = _run_trial(search, study, stage, fixed, data, sampler, ident, run_dir, trial_hook,
                                 heartbeat_s)
                if row is not None:
                    ran += 1
                    report.trials.append(row)
                    if on_trial is not None:
                        on_trial(row)
    finally:
        torch.set_num_threads(prev_threads)
    return report


def _run_trial(search: Search, study: optuna.Study, stage: StageSpace, fixed: dict, data: DataSplits,
               sampler: optuna.samplers.BaseSampler, ident: dict, run_dir: str | os.PathLike | None,
               trial_hook: Callable | None, heartbeat_s: float) -> dict | None:
    spec = search.spec
    t0 = time.perf_counter()
    trial = study.ask()
    trial.set_user_attr("worker", ident)
    trial.set_user_attr("heartbeat", time.time())
    # exact budgets: a trial that racing workers asked beyond the budget is closed unused
    counting = [t for t in study.get_trials(deepcopy=False)
                if t.state in FINISHED or t.state in (TrialState.RUNNING, TrialState.WAITING)]
    if sum(t.number < trial.number for t in counting) >= stage.trials:
        trial.set_user_attr("skipped", "over budget")
        study.tell(trial, state=TrialState.FAIL)
        return None
    values = stage.suggest(lambda k, d: suggest(trial, k, d), fixed)
    config = spec.complete({**fixed, **values})
    engine_s = time.perf_counter() - t0
    origin = int(trial.user_attrs.get("retry_of", trial.number))
    seed = trial_seed(spec, stage.index, origin)
    phase = getattr(sampler, "last_phase", None) if isinstance(sampler, GPEISampler) else None
    sampler_s = sampler.last_time_s if isinstance(sampler, GPEISampler) else None
    trial.set_user_attr("config", config)
    trial.set_user_attr("stage", stage.index)
    trial.set_user_attr("engine_s", engine_s)
    if phase is not None and "retry_of" not in trial.user_attrs:
        trial.set_user_attr("phase", phase)
        trial.set_user_attr("sampler_s", sampler_s)
    trial_dir = (Path(run_dir) / search.key / "trials" / f"stage{stage.index + 1}" / f"trial{origin:04d}"
                 if run_dir else None)

    def report(value: float, epoch: int) -> None:
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"f = {value:.4g} after epoch {epoch}")

    row_base = dict(stage=stage.index, number=trial.number, retry_of=trial.user_attrs.get("retry_of"))
    try:
        with _Heartbeat(study._storage, trial._trial_id, heartbeat_s):
            if trial_hook is not None:
                trial_hook(trial, config)
            result = train_trial(spec, config, data, seed=seed, reference=search.reference,
                                 run_dir=trial_dir, report=report)
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
        return {**row_base, "state": "PRUNED", "engine_s": engine_s}
    except Exception as e:  # noqa: BLE001 - any failure of one trial is recorded and retried
        trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:500])
        study.tell(trial, state=TrialState.FAIL)
        _enqueue_retry(study, study._storage.get_trial(trial._trial_id), spec.max_retries)
        return {**row_base, "state": "FAIL", "error": f"{type(e).__name__}: {e}", "engine_s": engine_s}
    except BaseException:  # interrupted (Ctrl-C, SystemExit): record it, retry later, and stop
        trial.set_user_attr("error", "interrupted")
        study.tell(trial, state=TrialState.FAIL)
        _enqueue_retry(study, study._storage.get_trial(trial._trial_id), spec.max_retries)
        raise
    for k in ("f", "f_p", "f_c", "val_acc", "test_acc", "params", "flops_per_sample", "epoch_time_s", "epoch_cpu_s",
              "train_s", "epochs", "rho_net"):
        trial.set_user_attr(k, result[k])
    t1 = time.perf_counter()
    study.tell(trial, result["value"])
    tell_s = time.perf_counter() - t1
    return {**row_base, "state": "COMPLETE", **result, "engine_s": engine_s + tell_s}


# ---------------------------------------------------------------------------------------------- results
def trial_rows(search: Search, *, all_states: bool = False) -> list[dict]:
    """One row per trial over all stages (finished ones only unless ``all_states``): stage, number,
    state, value, f, f_p, f_c, val_acc, test_acc, params, flops_per_sample, rho_net, epoch_time_s,
    epoch_cpu_s, train_s, engine_s, sampler_s, phase, retry_of, error, config."""
    rows = []
    for i in range(search.spec.n_stages):
        for t in search.stage_study(i).get_trials(deepcopy=False):
            if not all_states and t.state not in FINISHED:
                continue
            if t.user_attrs.get("skipped"):
                continue
            a = t.user_attrs
            rows.append(dict(
                stage=i + 1, stage_name=search.spec.stages[i].name, number=t.number, state=t.state.name,
                value=t.value, f=a.get("f"), f_p=a.get("f_p"), f_c=a.get("f_c"), val_acc=a.get("val_acc"),
                test_acc=a.get("test_acc"), params=a.get("params"), flops_per_sample=a.get("flops_per_sample"),
                rho_net=a.get("rho_net"), epoch_time_s=a.get("epoch_time_s"), epoch_cpu_s=a.get("epoch_cpu_s"),
                train_s=a.get("train_s"), engine_s=a.get("engine_s"),
                sampler_s=a.get("sampler_s"), phase=a.get("phase"), retry_of=a.get("retry_of"),
                error=a.get("error"), worker=(a.get("worker") or {}).get("pid"), config=a.get("config"),
            ))
    return rows


def summary(search: Search) -> dict:
    """Counts, the best trial over all stages (lowest f) and the best of each stage."""
    rows = trial_rows(search, all_states=True)
    complete = [r for r in rows if r["state"] == "COMPLETE" and r["f"] is not None]
    best = min(complete, key=lambda r: (r["f"], r["stage"], r["number"])) if complete else None
    per_stage = []
    for i in range(search.spec.n_stages):
        rs = [r for r in complete if r["stage"] == i + 1]
        b = min(rs, key=lambda r: (r["f"], r["number"])) if rs else None
        per_stage.append(dict(stage=i + 1, name=search.spec.stages[i].name, budget=search.spec.stages[i].trials,
                              complete=len(rs), pruned=sum(r["state"] == "PRUNED" and r["stage"] == i + 1 for r in rows),
                              failed=sum(r["state"] == "FAIL" and r["stage"] == i + 1 for r in rows),
                              best_f=b["f"] if b else None, best_val_acc=b["val_acc"] if b else None))
    finite = [r["engine_s"] for r in rows if r.get("engine_s") is not None and math.isfinite(r["engine_s"])]
    train = [r["train_s"] for r in complete if r.get("train_s") is not None]
    return dict(name=search.name, best=best, stages=per_stage, trials=len(rows),
                engine_s_mean=sum(finite) / len(finite) if finite else None,
                train_s_mean=sum(train) / len(train) if train else None,
                done=all(s["complete"] + s["pruned"] >= s["budget"] for s in per_stage))


def _silence_experimental() -> None:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


_silence_experimental()
