"""Parsers shared by the commands: lists of integers, numbers or percentages, RadiX-Net radix lists."""

from __future__ import annotations

from typing import Optional


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""


def ints(text: Optional[str], name: str) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UserError(f"--{name}: expected comma-separated integers like 784,112,10, got {text!r}") from None


def floats(text: Optional[str], name: str) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        vals = [float(v.rstrip("%")) / (100 if v.endswith("%") else 1) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UserError(f"--{name}: expected comma-separated numbers like 0.5,0.2 or 50%,20%, got {text!r}") from None
    return vals


def radices(text: str) -> list[list[int]]:
    lists = [ints(part, "radices") for part in text.replace(" ", "").split(";") if part]
    if not lists or any(not lst for lst in lists):
        raise UserError(f"--radices: expected lists like 2,2,2 or 10,10;10 (';' between lists), got {text!r}")
    return lists  # type: ignore[return-value]
