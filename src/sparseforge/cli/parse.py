"""Parsers and checks shared by the commands: lists of integers, numbers or percentages, RadiX-Net radix
lists, finite numbers in range. Every failure is a :class:`UserError` naming the flag, the value given and
what is allowed (printed by ``cli.main`` as one line, exit status 2)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Optional


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""


def _items(text: str) -> list[str]:
    return [v for v in text.replace(" ", "").split(",") if v]


def ints(text: Optional[str], name: str, min_value: Optional[int] = None) -> Optional[list[int]]:
    """``"784,112,10"`` -> ``[784, 112, 10]`` (None stays None); at least one value, each >= ``min_value``."""
    if text is None:
        return None
    try:
        vals = [int(v) for v in _items(text)]
    except ValueError:
        raise UserError(f"--{name}: expected comma-separated integers like 784,112,10, got {text!r}") from None
    if not vals:
        raise UserError(f"--{name}: expected at least one integer, got {text!r}")
    if min_value is not None:
        bad = [v for v in vals if v < min_value]
        if bad:
            raise UserError(f"--{name}: every value must be >= {min_value}, got {text!r}")
    return vals


def floats(text: Optional[str], name: str) -> Optional[list[float]]:
    """``"0.5,20%"`` -> ``[0.5, 0.2]`` (None stays None); at least one value, all finite."""
    if text is None:
        return None
    try:
        vals = [float(v[:-1]) / 100 if v.endswith("%") else float(v) for v in _items(text)]
    except ValueError:
        raise UserError(f"--{name}: expected comma-separated numbers like 0.5,0.2 or 50%,20%, got {text!r}") from None
    if not vals:
        raise UserError(f"--{name}: expected at least one number, got {text!r}")
    if not all(math.isfinite(v) for v in vals):
        raise UserError(f"--{name}: numbers must be finite, got {text!r}")
    return vals


def densities(text: Optional[str], name: str) -> Optional[list[float]]:
    """Densities as fractions or percentages, each in (0, 1] (``0`` and ``2`` are refused, not clipped)."""
    vals = floats(text, name)
    for v in vals or []:
        if not 0 < v <= 1:
            raise UserError(f"--{name}: each density must be in (0, 1] (a fraction like 0.2 or a percentage like "
                            f"20%), got {v:g} in {text!r}")
    return vals


def number(value: Optional[float], name: str, *, low: Optional[float] = None, high: Optional[float] = None,
           low_open: bool = False) -> Optional[float]:
    """``value`` when finite and in ``[low, high]`` (``(low, high]`` with ``low_open``); None stays None."""
    if value is None:
        return None
    below = low is not None and (value <= low if low_open else value < low)
    if not math.isfinite(value) or below or (high is not None and value > high):
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}]"
        allowed = f"in {lo or '(-inf'}, {hi or 'inf)'}" if (low is not None or high is not None) else "finite"
        raise UserError(f"--{name}: must be a finite number {allowed}, got {value!r}")
    return value


def choice(value: Optional[str], name: str, allowed: tuple[str, ...] | list[str]) -> Optional[str]:
    """``value`` when it is one of ``allowed`` (None stays None)."""
    if value is not None and value not in allowed:
        raise UserError(f"--{name}: {value!r} is not allowed; choose one of {', '.join(allowed)}")
    return value


def _creatable(path, name: str) -> None:
    """UserError when ``path`` cannot be created because an existing ancestor is a file, not a directory."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"--{name}: {str(path)!r} cannot be created: {str(parent)!r} is a file, not a directory")


def output_dir(path, name: str):
    """``path`` when it is a directory or can be created as one (None stays None)."""
    if path is None:
        return None
    if path.exists() and not path.is_dir():
        raise UserError(f"--{name}: {str(path)!r} is a file; give a directory (it is created when missing)")
    _creatable(path, name)
    return path


def file_arg(flag: str, example: str) -> Callable[[str], Path]:
    """The parser of an option naming a file to write (``--flag``): the path as typed, refused when it ends with a
    slash (a directory, maybe not there yet: ``Path("out/")`` is ``Path("out")``, which would be written as a file);
    ``example``: a file name the message suggests inside that directory."""
    def parse_path(text: str) -> Path:
        if text.endswith(("/", os.sep)):
            raise UserError(f"--{flag}: {text!r} ends with a slash, so it names a directory; give a file name "
                            f"(e.g. {text}{example})")
        return Path(text)

    return parse_path


def output_file(path, name: str):
    """``path`` when it can be written as a file: not an existing directory, its folder creatable."""
    if path is None:
        return None
    if path.is_dir():
        raise UserError(f"--{name}: {str(path)!r} is a directory; give a file name")
    _creatable(path, name)
    return path


def input_path(path, name: str):
    """``path`` when it exists (a file or a directory, as the option takes)."""
    if path is not None and not path.exists():
        raise UserError(f"--{name}: {str(path)!r} does not exist")
    return path


def radices(text: str) -> list[list[int]]:
    lists = []
    for part in [p for p in text.replace(" ", "").split(";") if p]:
        try:
            lists.append(ints(part, "radices", min_value=1))
        except UserError:
            lists.append([])
    if not lists or any(not lst for lst in lists):
        raise UserError(f"--radices: expected lists of positive integers like 2,2,2 or 10,10;10 (';' between lists), "
                        f"got {text!r}")
    return lists  # type: ignore[return-value]
