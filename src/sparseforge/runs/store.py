"""The run store every long command uses: one run directory, its settings hashed, one writer at a time.

A run directory holds::

    run.json            command, settings (canonical JSON) and their sha256; written when the run is opened
    run.lock            pid, host and command of the one process writing (present only while it runs)
    results/<name>.json sub-results (one per variant, density, epoch...), each written atomically and last,
                        with the hash of the settings that made it
    ...                 whatever the command writes besides (checkpoints, reports), under this directory

Usage::

    with RunStore(run_dir, settings, command="demo", overwrite=False) as store:
        row = store.result("rho10")            # None unless finished under the same settings
        if row is None:
            row = compute()
            store.save_result("rho10", row)    # atomic; presence means "finished"

Opening a directory made with other settings raises :class:`ConfigError` in one line naming the fields
that differ (old → new) and suggesting a new ``--run-dir`` or ``--overwrite``; ``overwrite=True`` clears
the directory first (only a run directory: one with ``run.json``, or an empty one). A second writer is
refused naming the holder; a lock left by a dead process on this host is taken over. The lock is released
when the ``with`` block ends, normally or by an exception.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from .. import io
from ..errors import ConfigError, RunError
from ..train.checkpoint import canonical, describe_diff, settings_diff, settings_hash

RUN_JSON = "run.json"
LOCK = "run.lock"
RESULTS = "results"
FORMAT = 1


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _leftover(p: Path) -> bool:
    """A temporary file of an atomic write (or of taking the lock) that a killed process left behind."""
    return p.name.startswith(".") and p.name.endswith(".tmp")


def _safe_name(name: str) -> str:
    if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise ValueError(f"result name {name!r}: use a plain file name (no '/', not starting with '.')")
    return name


class RunStore:
    """One run directory tied to one set of settings (see the module docstring).

    Args:
        run_dir: the directory (created when missing).
        settings: what the run's results depend on: a pydantic model, dataclass or JSON-able dict.
        command: the command's name, recorded in ``run.json`` and in the lock (e.g. ``"demo"``).
        overwrite: clear an existing run directory instead of refusing other settings.
        mutable: dotted settings fields (or whole sections) allowed to change on reopening, e.g.
            ``("train.epochs",)`` for a resumed training that runs longer, or ``("bench",)`` for results
            that are recomputed on every run anyway; ``run.json`` is then updated.
        refuse_existing: when given, an existing run (even with the same settings) is refused with this
            hint appended (``train`` without ``--resume``: "pass --resume to continue it ...").
    """

    def __init__(self, run_dir: str | os.PathLike, settings: Any, *, command: str, overwrite: bool = False,
                 mutable: Iterable[str] = (), refuse_existing: str | None = None) -> None:
        self.dir = Path(run_dir)
        self.settings = canonical(settings)
        self.hash = settings_hash(self.settings)
        self.command = command
        self.overwrite = overwrite
        self.mutable = tuple(mutable)
        self.refuse_existing = refuse_existing
        self.existed = False  # a run with these settings was there before this opening
        self._lock: dict | None = None

    # ------------------------------------------------------------------------------------------ open
    def __enter__(self) -> "RunStore":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> "RunStore":
        """Take the lock, then check (or write) ``run.json``; release the lock again if that fails."""
        if self.overwrite:
            self._check_clearable()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._acquire()
        try:
            if self.overwrite:
                self._clear()
            self._check_settings()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Release the lock (only if it is still ours)."""
        if self._lock is None:
            return
        path = self.dir / LOCK
        try:
            if json.loads(path.read_text()) == self._lock:
                path.unlink()
        except (OSError, ValueError):
            pass
        self._lock = None

    def _check_clearable(self) -> None:
        if self.dir.exists() and any(self.dir.iterdir()) and not (self.dir / RUN_JSON).exists():
            raise ConfigError(f"--overwrite: {self.dir} holds files but no {RUN_JSON}: it is not a sparseforge run "
                              "directory (or one made before run.json existed); remove it yourself or choose "
                              "a new --run-dir")

    def _clear(self) -> None:
        for p in self.dir.iterdir():
            if p.name == LOCK:
                continue
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    def _check_settings(self) -> None:
        path = self.dir / RUN_JSON
        if path.exists():
            try:
                old = json.loads(path.read_text())
                old_settings, old_command = old["settings"], old.get("command")
            except (OSError, ValueError, KeyError, TypeError):
                raise RunError(f"--run-dir {self.dir}: {RUN_JSON} is damaged; use --overwrite to start again "
                               "or a new --run-dir") from None
            if old_command != self.command:
                raise ConfigError(f"--run-dir {self.dir} holds a run of '{old_command}', not '{self.command}'; "
                                  "use a new --run-dir or --overwrite")
            diff = settings_diff(old_settings, self.settings)
            if any(not self._mutable(k) for k, _, _ in diff):
                raise ConfigError(f"--run-dir {self.dir} holds a run made with other settings: "
                                  f"{describe_diff(diff)}; use a new --run-dir or --overwrite")
            if self.refuse_existing:
                raise ConfigError(f"--run-dir {self.dir} already holds a '{self.command}' run; {self.refuse_existing}")
            self.existed = True
            if not diff:
                return
        elif any(p.name != LOCK and not _leftover(p) for p in self.dir.iterdir()):
            raise ConfigError(f"--run-dir {self.dir} holds files but no {RUN_JSON} (not a sparseforge run "
                              "directory, or one made by an older version); use a new --run-dir")
        io.write_json(path, {"format": FORMAT, "command": self.command, "settings_hash": self.hash,
                             "settings": self.settings, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def _mutable(self, key: str) -> bool:
        return any(key == m or key.startswith(m + ".") for m in self.mutable)

    # ------------------------------------------------------------------------------------------ lock
    def _acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
              "argv": " ".join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        path = self.dir / LOCK
        for _ in range(3):
            fd, tmp = tempfile.mkstemp(prefix=".run.lock.", suffix=".tmp", dir=self.dir)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(json.dumps(me))
                os.link(tmp, path)  # atomic, and the lock is complete when it appears: fails if one exists
                self._lock = me
                return
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
            holder = self._holder(path)
            if holder is None:
                continue  # vanished meanwhile: try again
            if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) \
                    and not _pid_alive(holder["pid"]):
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise RunError(f"--run-dir {self.dir} is in use by pid {holder.get('pid')} on {holder.get('host')} "
                           f"({holder.get('command')}: {holder.get('argv', '')}, since {holder.get('started')}); "
                           f"wait for it, or remove {path} if that process is gone")
        raise RunError(f"--run-dir {self.dir}: could not take {path} (other processes keep taking it)")

    @staticmethod
    def _holder(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"pid": None, "host": "?", "command": "unreadable lock file"}

    # ------------------------------------------------------------------------------------------ results
    def path(self, *parts: str) -> Path:
        """A path under the run directory (for checkpoints, sub-runs, reports)."""
        return self.dir.joinpath(*parts)

    def _result_path(self, name: str) -> Path:
        return self.dir / RESULTS / f"{_safe_name(name)}.json"

    def result(self, name: str, settings: Any = None) -> Any | None:
        """The value saved under ``name`` if it was made under the same settings (the run's, plus the
        optional sub-``settings``); None when absent, unreadable or made under other settings."""
        try:
            rec = json.loads(self._result_path(name).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict) or rec.get("key") != self._key(name, settings):
            return None
        return rec.get("value")

    def save_result(self, name: str, value: Any, settings: Any = None) -> Path:
        """Write ``value`` (JSON-able) under ``name``, atomically; call it last, when the sub-run is done."""
        self._require_open()
        rec = {"name": name, "key": self._key(name, settings), "settings": canonical(settings), "value": value}
        return io.write_json(self._result_path(name), rec)

    def results(self) -> list[str]:
        """Names of the saved results valid under these settings (in name order); sub-settings are not known
        here, so results saved with ``settings=`` are listed only by :meth:`result`."""
        d = self.dir / RESULTS
        return sorted(p.stem for p in d.glob("*.json") if self.result(p.stem) is not None) if d.exists() else []

    def _key(self, name: str, settings: Any) -> str:
        return settings_hash({"run": self.hash, "name": name, "settings": canonical(settings)})

    def _require_open(self) -> None:
        if self._lock is None:
            raise RuntimeError("RunStore: open it (with-block) before writing")
