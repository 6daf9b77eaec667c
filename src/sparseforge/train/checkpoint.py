"""Checksummed checkpoints: a damaged file is refused with a message, never loaded silently.

File layout (one file, written atomically)::

    SFCKPT1\\n
    {"sha256": <hex of the payload>, "size": <payload bytes>, "settings_hash": <hex>, "settings": {...}}\\n
    <payload: torch.save bytes>

:func:`save_checkpoint` keeps the previous good file as ``<name>.prev.pt`` (the last two are kept), so an
interrupted or damaged latest file falls back to the one before, and says so. The settings hash ties a
checkpoint to the settings that made it; loading under other settings raises :class:`ConfigError` naming
the fields that differ. This module sits in ``train/`` (below everything that trains) and imports only
torch and the bottom-layer helpers; the run store (``runs/store.py``) uses the same format.
"""

from __future__ import annotations

import hashlib
import io as _bytes_io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import io
from ..errors import ConfigError, RunError

MAGIC = b"SFCKPT1\n"


# ---------------------------------------------------------------------------------------------- settings
def canonical(settings: Any) -> Any:
    """Settings as plain JSON values (pydantic models, dataclasses, tuples, numpy scalars, paths allowed)."""
    return json.loads(json.dumps(settings, default=io._jsonable, sort_keys=True))


def settings_hash(settings: Any) -> str:
    """sha256 (hex) of the canonical settings as sorted, compact JSON: equal settings give equal hashes."""
    blob = json.dumps(canonical(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaves; lists of dicts descend by index (``variants.1.lr``), other lists are leaves."""
    if isinstance(obj, list) and obj and any(isinstance(v, dict) for v in obj):
        obj = {str(i): v for i, v in enumerate(obj)}
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix or "settings": obj}


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()  # the value of a field missing on one side of a diff


def settings_diff(old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    """Fields (dotted paths; shallow ones first, then by name) whose values differ: ``(field, old, new)``; a side where the field is
    missing is :data:`ABSENT` (shown as "(absent)" by :func:`describe_diff`)."""
    a, b = _flatten(canonical(old)), _flatten(canonical(new))
    rows = []
    for k in sorted(set(a) | set(b), key=lambda k: (k.count("."), k)):  # top-level fields first
        va, vb = a.get(k, ABSENT), b.get(k, ABSENT)
        if va != vb:
            rows.append((k, va, vb))
    return rows


def describe_diff(diff: list[tuple[str, Any, Any]], limit: int = 8) -> str:
    """``"train.epochs 1 → 3, seed 0 → 5"`` (at most ``limit`` fields, then "and N more")."""

    def show(v: Any) -> str:
        return "(absent)" if v is ABSENT else json.dumps(v, separators=(",", ":"))

    parts = [f"{k} {show(a)} → {show(b)}" for k, a, b in diff[:limit]]
    if len(diff) > limit:
        parts.append(f"and {len(diff) - limit} more")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------- files
def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint before ``path`` is kept: ``checkpoint.pt`` → ``checkpoint.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: str | os.PathLike, payload: Any, *, settings: Any = None) -> Path:
    """Write ``payload`` (anything ``torch.save`` takes) with its checksum and the settings hash.

    The current file (if any) becomes ``<stem>.prev<suffix>`` first, so the last two are kept. Atomic: a
    crash leaves either the new file, or the previous one in the ``.prev`` slot.
    """
    import torch

    path = Path(path)
    buf = _bytes_io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    canon = canonical(settings)
    header = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
              "settings_hash": settings_hash(canon), "settings": canon}
    with io.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + data)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.replace(path, previous_path(path))
    return path


def _read_one(path: Path, settings: Any, check_settings: bool) -> Any:
    """The payload of one checkpoint file, or RunError saying why it cannot be used."""
    import torch

    raw = path.read_bytes()
    if not raw:
        raise RunError(f"checkpoint {path} is empty")
    if not raw.startswith(MAGIC):
        raise RunError(f"checkpoint {path} is damaged or not a sparseforge checkpoint (no header)")
    end = raw.find(b"\n", len(MAGIC))
    if end < 0:
        raise RunError(f"checkpoint {path} is truncated or damaged (its header is incomplete)")
    try:
        header = json.loads(raw[len(MAGIC):end])
        sha, size = header["sha256"], int(header["size"])
    except (ValueError, TypeError, KeyError):
        raise RunError(f"checkpoint {path} is damaged (unreadable header)") from None
    data = raw[end + 1:]
    if len(data) != size:
        raise RunError(f"checkpoint {path} is truncated or damaged ({len(data)} of {size} payload bytes)")
    if hashlib.sha256(data).hexdigest() != sha:
        raise RunError(f"checkpoint {path} is damaged (sha256 of the payload does not match its header)")
    if check_settings and header.get("settings_hash") != settings_hash(settings):
        diff = describe_diff(settings_diff(header.get("settings"), settings)) or "settings hash differs"
        raise ConfigError(f"checkpoint {path} was made with other settings ({diff}); use a new --run-dir "
                          "or --overwrite")
    return torch.load(_bytes_io.BytesIO(data), weights_only=False)


@dataclass
class Loaded:
    """A checkpoint that passed its checks: ``payload``, the ``path`` it came from, and ``skipped``: one
    message per newer file that was refused (damaged), to be shown to the user."""

    payload: Any
    path: Path
    skipped: list[str] = field(default_factory=list)


def load_checkpoint(path: str | os.PathLike, *, settings: Any = None, check_settings: bool = True) -> Loaded | None:
    """Load the newest good checkpoint: ``path``, else its ``.prev`` file; None when neither exists.

    Each file's payload must match its sha256 and size; with ``check_settings`` its settings hash must
    match ``settings`` (else :class:`ConfigError` naming the fields). A damaged newest file falls back to
    the previous one and is reported in ``Loaded.skipped``; when no good file is left, :class:`RunError`
    names every file and what is wrong with it.
    """
    path = Path(path)
    skipped: list[str] = []
    for p in (path, previous_path(path)):
        if not p.exists():
            continue
        try:
            return Loaded(_read_one(p, settings, check_settings), p, skipped)
        except RunError as e:
            skipped.append(str(e))
        except Exception as e:  # torch could not unpickle a payload whose checksum matched
            skipped.append(f"checkpoint {p} cannot be read ({type(e).__name__}: {e})")
    if skipped:
        raise RunError("; ".join(skipped) + " — no good checkpoint left; rerun with --overwrite to start again")
    return None
