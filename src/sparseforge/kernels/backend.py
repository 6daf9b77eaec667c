"""Which implementation of the sparse products runs: ``"auto"``, ``"stock"`` or ``"native"``.

* ``"stock"``: stock PyTorch ops (``embedding_bag``, ``sampled_addmm``); any device and dtype.
* ``"native"``: the compiled CPU kernels of :mod:`.native` for float32/float64 CPU tensors (other tensors,
  e.g. CUDA or half precision, still take the stock path). Selecting it when it cannot be built raises.
* ``"auto"`` (default): native where it applies and is available, stock otherwise.

Under ``"auto"`` and ``"native"``, CUDA tensors take the Triton kernels of :mod:`.triton_ell` when ``triton``
is installed (the ``gpu`` extra), else the stock ops.

The default comes from the environment variable ``SPARSEFORGE_BACKEND`` when set; an unknown value there
is one :class:`RuntimeWarning` naming the allowed ones and ``"auto"`` is used (importing never fails on it).
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from typing import Iterator

import torch

from . import native, triton_ell

BACKENDS = ("auto", "stock", "native")
NATIVE_DTYPES = (torch.float32, torch.float64)


def _check(name: object, where: str = "backend") -> str:
    if name not in BACKENDS:
        raise ValueError(f"{where}={name!r} is not a kernel backend; allowed: {', '.join(map(repr, BACKENDS))}")
    return str(name)


def _from_environment() -> str:
    try:
        return _check(os.environ.get("SPARSEFORGE_BACKEND", "auto"), "SPARSEFORGE_BACKEND")
    except ValueError as exc:
        warnings.warn(f"{exc}; using 'auto'", RuntimeWarning, stacklevel=2)
        return "auto"


_setting = _from_environment()


def set_backend(name: str) -> None:
    """Select the kernel backend for all later products (process-wide).

    Raises:
        ValueError: unknown name (the message lists the allowed ones).
        RuntimeError: ``"native"`` when the native kernels cannot be built or loaded here.
    """
    global _setting
    name = _check(name)
    if name == "native" and not native.available():
        raise RuntimeError(f"backend 'native' is unavailable here: {native.info().get('error')}; use 'auto' or 'stock'")
    _setting = name


def get_backend() -> str:
    """The current setting: ``"auto"``, ``"stock"`` or ``"native"``."""
    return _setting


@contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: ``with use_backend("stock"): ...`` runs with that backend, then restores the previous."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def direct_linear():
    """:data:`.native.linear_bm` (eager batch-major inference without the dispatcher) when the native kernels are
    loaded and not deselected (setting ``"stock"``), else None."""
    return None if _setting == "stock" else native.linear_bm


def resolve_backend(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> str:
    """The implementation (``"stock"``, ``"native"`` or ``"triton"``) that products on such tensors use now.

    CUDA tensors of a :data:`.triton_ell.DTYPES` dtype take the Triton kernels when ``triton`` imports (unless
    the setting is ``"stock"``); CPU tensors never do."""
    if not isinstance(device, torch.device):
        device = torch.device(device)
    if _setting != "stock" and device.type == "cuda" and dtype in triton_ell.DTYPES and triton_ell.available():
        return "triton"
    if _setting == "stock" or device.type != "cpu" or dtype not in NATIVE_DTYPES:
        return "stock"
    return "native" if native.available() else "stock"
