"""Save a :class:`Pattern` or :class:`NetworkTopology` to one ``.npz`` file and load it back.

The file holds ``format`` (``"sparseforge-topology"``), ``version`` (:data:`VERSION`), ``kind``
(``"pattern"`` or ``"network"``), the layer sizes, family and seed, each junction's CSR arrays
(``indptr_i``, ``indices_i``) and a SHA-256 ``checksum`` of all of them. Loading refuses (with
:class:`TopologyError`, a ValueError) a file that is not such a file, a newer version, a damaged one (the
checksum or zip CRC does not match), one whose arrays do not form valid patterns, or one of the other kind.
Written atomically (temporary file, then rename).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from ..io import atomic_path
from .network import NetworkTopology
from .pattern import Pattern, TopologyError

FORMAT = "sparseforge-topology"
VERSION = 1


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def save_topology(obj: Pattern | NetworkTopology, path: str | os.PathLike) -> Path:
    """Write ``obj`` to ``path`` (``.npz``); returns the path."""
    if isinstance(obj, Pattern):
        kind, sizes, patterns, family, seed = "pattern", (obj.n_in, obj.n_out), (obj,), "custom", None
    elif isinstance(obj, NetworkTopology):
        kind, sizes, patterns, family, seed = "network", obj.sizes, obj.patterns, obj.family, obj.seed
    else:
        raise TypeError(f"save_topology takes a Pattern or NetworkTopology, got {type(obj).__name__}")
    arrays = {"sizes": np.asarray(sizes, dtype=np.int64)}
    for i, p in enumerate(patterns):
        arrays[f"indptr_{i}"], arrays[f"indices_{i}"] = p.indptr, p.indices
    meta = {"format": np.str_(FORMAT), "version": np.int64(VERSION), "kind": np.str_(kind),
            "family": np.str_(family), "seed": np.int64(-1 if seed is None else seed)}
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to the temporary name
            np.savez(f, **arrays, **meta, checksum=np.str_(_checksum(arrays)))
    return path


def load_topology(path: str | os.PathLike, kind: str | None = None) -> Pattern | NetworkTopology:
    """Read a file written by :func:`save_topology`; ``kind`` (``"pattern"``/``"network"``) requires that kind."""
    path = Path(path)
    where = f"topology file {path}"
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise TopologyError(f"{where} does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise TopologyError(f"{where} is damaged or not an .npz file ({type(exc).__name__}: {exc})") from None
    if str(data.get("format", "")) != FORMAT:
        raise TopologyError(f"{where} is not a sparseforge topology file (format={str(data.get('format'))!r})")
    version = int(data.get("version", -1))
    if version != VERSION:
        raise TopologyError(f"{where} has format version {version}; this sparseforge reads version {VERSION}")
    arrays = {k: v for k, v in data.items() if k == "sizes" or k.startswith(("indptr_", "indices_"))}
    if str(data.get("checksum", "")) != _checksum(arrays):
        raise TopologyError(f"{where} is damaged: its checksum does not match its contents")
    stored = str(data["kind"])
    if kind is not None and stored != kind:
        raise TopologyError(f"{where} holds a {stored}, not a {kind}")
    sizes = [int(n) for n in data["sizes"]]
    try:
        patterns = [Pattern(sizes[i], sizes[i + 1], data[f"indptr_{i}"], data[f"indices_{i}"])
                    for i in range(len(sizes) - 1)]
    except KeyError as exc:
        raise TopologyError(f"{where} lacks the array {exc}") from None
    except TopologyError as exc:
        raise TopologyError(f"{where}: {exc}") from None
    if stored == "pattern":
        return patterns[0]
    seed = int(data["seed"])
    return NetworkTopology(tuple(sizes), tuple(patterns), family=str(data["family"]), seed=None if seed < 0 else seed)
