"""The compiled CPU kernels (``csrc/*.cpp`` with their shared ``csrc/simd.h``), built on first use with torch's extension machinery.

The C++ sources ship inside the package and is compiled just-in-time by
:func:`torch.utils.cpp_extension.load` (the system C++ compiler, ``ninja``, OpenMP, ``-O3 -march=native``)
into a cache directory keyed by a hash of the source, the flags, the compiler, the torch and Python
versions and the CPU, so it compiles once per machine and source version (about 20 s of one core) and
later processes only load the library (no ninja run, no file-time checks).
Nothing is downloaded. When no compiler (or ninja) is available or the build fails, :func:`available`
returns False after one :class:`RuntimeWarning` and the stock-ops path is used instead.

``python -m sparseforge.kernels.build`` compiles ahead of time (e.g. in an install step).

Environment:
    SPARSEFORGE_KERNEL_CACHE: cache directory (default ``$XDG_CACHE_HOME/sparseforge/kernels`` or
        ``~/.cache/sparseforge/kernels``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import threading
import time
import warnings
from pathlib import Path

import torch

CSRC = Path(__file__).with_name("csrc")
SOURCES = tuple(sorted(CSRC.glob("*.cpp")))  # compiled into one library
FILES = tuple(sorted(CSRC.glob("*.[ch]pp")) + sorted(CSRC.glob("*.h")))  # what the build depends on
CFLAGS = ("-O3", "-march=native", "-fopenmp")
LDFLAGS = ("-fopenmp",)

_lock = threading.Lock()
_state: dict[str, object] = {}  # "ok": bool, "error": str, "seconds": float, "directory": str


def _cpu_signature() -> str:
    """Text identifying the CPU's instruction set (the build uses -march=native)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


def cache_key() -> str:
    """Hash of everything the compiled library depends on (16 hex digits)."""
    h = hashlib.sha256()
    for part in (*(f.name.encode() + f.read_bytes() for f in FILES), " ".join(CFLAGS + LDFLAGS).encode(), torch.__version__.encode(),
                 platform.python_version().encode(), os.environ.get("CXX", "c++").encode(),
                 platform.machine().encode(), _cpu_signature().encode()):
        h.update(part)
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    """Where the compiled library lives for this source, flags, torch and CPU."""
    root = os.environ.get("SPARSEFORGE_KERNEL_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "sparseforge", "kernels")
    return Path(root) / f"ell-{cache_key()}"


def load(verbose: bool = False) -> bool:
    """Compile (if needed) and load the kernels into ``torch.ops.sparseforge``; True on success.

    Runs once per process; a failure is reported once as a RuntimeWarning and remembered.
    """
    with _lock:
        if "ok" in _state:
            return bool(_state["ok"])
        start = time.perf_counter()
        try:
            from torch.utils.cpp_extension import load as load_extension

            directory, name = cache_dir(), f"sparseforge_ell_{cache_key()}"
            library = directory / f"{name}.so"
            try:  # the directory is keyed by content: an existing library is current (no ninja, no mtimes)
                torch.ops.load_library(str(library))
            except OSError:  # not built yet (or half-written by a concurrent build): build under torch's lock
                directory.mkdir(parents=True, exist_ok=True)
                load_extension(  # flag lists are copied: load() appends to them
                    name=name, sources=[str(f) for f in SOURCES], extra_cflags=list(CFLAGS), extra_ldflags=list(LDFLAGS),
                    build_directory=str(directory), is_python_module=False, verbose=verbose,
                )
            _import_direct(name, library)
            _state.update(ok=True, directory=str(directory))
        except Exception as exc:  # no compiler, no ninja, compile error, unwritable cache, ...
            _state.update(ok=False, error=f"{type(exc).__name__}: {str(exc).strip()[-500:]}")
            warnings.warn(
                f"sparseforge: the native kernels could not be built or loaded ({_state['error']}); "
                "using the stock-ops kernels (correct, slower). Set SPARSEFORGE_BACKEND=stock to silence this.",
                RuntimeWarning, stacklevel=2,
            )
        _state["seconds"] = time.perf_counter() - start
        return bool(_state["ok"])


#: ``linear_bm(x, values, bias, indptr, indices, group, n_in) -> y or None`` of ``csrc/python.cpp`` (a direct entry,
#: no dispatcher: eager inference of batch-major ``SparseLinear``); None until the library is loaded.
linear_bm = None


def _import_direct(name: str, library: Path) -> None:
    """Import the library's Python module (``csrc/python.cpp``, named ``name`` by the build) and publish its
    entries here."""
    global linear_bm
    spec = importlib.util.spec_from_file_location(name, library)
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ImportError:  # built without Python's headers: no module in the library, the general path runs
        return
    linear_bm = module.linear_bm


def available() -> bool:
    """True when the native kernels are loaded or can be built now (builds them on first call)."""
    ok = _state.get("ok")
    return load() if ok is None else bool(ok)


def info() -> dict[str, object]:
    """What :func:`load` did: ``ok``, ``seconds`` (build or load time), ``directory`` or ``error``."""
    return dict(_state)


# ---------------------------------------------------------------------------------------------- ops
# Same signatures as the stock products in ``ell.py``; ``layout`` is a ``SparseLayout``.

def rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when its rows are unit-stride (any row stride), else a contiguous copy."""
    if t.shape[1] <= 1 or (t.stride(1) == 1 and (t.stride(0) >= t.shape[1] or t.shape[0] <= 1)):
        return t
    return t.contiguous()


def spmm(layout, values: torch.Tensor, x_fm: torch.Tensor, transposed: bool = False,
         bias: torch.Tensor | None = None, clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """``[rows, batch]``: the pattern (or, with ``transposed``, its transpose) times ``x_fm``, plus ``bias[rows]``
    per row when given, clamped to ``clamp = (lo, hi)`` when given (both fused into the kernel); ``values`` in
    the pattern's edge order."""
    return _product("spmm", layout, values, x_fm, transposed, bias, clamp)


def _product(name, layout, values, x, transposed, bias, clamp) -> torch.Tensor:
    """Call the product op ``name`` (``spmm`` or ``spmm_bm``) on the pattern or, with ``transposed``, on its
    transpose; block patterns (``layout.block > 1``) run the block kernel ``block_<name>`` instead."""
    lo, hi = clamp if clamp is not None else (None, None)
    if layout.block > 1:
        op = getattr(torch.ops.sparseforge, "block_" + name)
        if transposed:
            return op(layout.t_indptr, layout.t_indices, values.contiguous(), rows(x), layout.block, bias, lo, hi,
                      layout.t_perm)
        return op(layout.indptr, layout.indices, values.contiguous(), rows(x), layout.block, bias, lo, hi)
    op = getattr(torch.ops.sparseforge, name)
    if transposed:
        return op(layout.t_indptr, layout.t_indices, values.contiguous(), rows(x), layout.t_group, bias, lo, hi,
                  layout.t_perm)
    return op(layout.indptr, layout.indices, values.contiguous(), rows(x), layout.group, bias, lo, hi)


def sddmm(layout, grad_y_fm: torch.Tensor, x_fm: torch.Tensor, tile: int = -1) -> torch.Tensor:
    """``g[e] = <grad_y_fm[row(e)], x_fm[indices[e]]>``, shape ``[edges]``; ``tile``: -1 let the kernel choose,
    0 stream whole rows, 1 batch tiles reused from L2 (block patterns run the block kernel, which tiles itself)."""
    if layout.block > 1:
        return torch.ops.sparseforge.block_sddmm(layout.indptr, layout.indices, rows(grad_y_fm), rows(x_fm),
                                                 layout.block)
    return torch.ops.sparseforge.sddmm(layout.indptr, layout.indices, rows(grad_y_fm), rows(x_fm), layout.group,
                                       tile)


def spmm_bm(layout, values: torch.Tensor, x: torch.Tensor, transposed: bool = False,
            bias: torch.Tensor | None = None, clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """Batch-major :func:`spmm`: ``x`` is ``[batch, n]`` (samples as rows), the result ``[batch, rows]``; no
    transposed copy of either is made (the kernel transposes cache-sized tiles in registers)."""
    return _product("spmm_bm", layout, values, x, transposed, bias, clamp)


def sddmm_bm(layout, grad_y: torch.Tensor, x: torch.Tensor, tile: int = -1) -> torch.Tensor:
    """Batch-major :func:`sddmm`: ``g[e] = sum_b grad_y[b, row(e)] * x[b, indices[e]]`` for ``grad_y``
    ``[batch, n_out]`` and ``x`` ``[batch, n_in]``; shape ``[edges]``; ``tile`` as in :func:`sddmm`."""
    if layout.block > 1:
        return torch.ops.sparseforge.block_sddmm_bm(layout.indptr, layout.indices, rows(grad_y), rows(x),
                                                    layout.block)
    return torch.ops.sparseforge.sddmm_bm(layout.indptr, layout.indices, rows(grad_y), rows(x), layout.group,
                                          tile)
