"""The one timing helper of the benchmarks and studies: minimum time per call, candidates interleaved.

Every round runs every candidate once (or ``number`` times), so the slow phases of a shared machine hit all
candidates alike; the result per candidate is the minimum over rounds of the mean per call, in seconds.
``clock="cpu"`` uses this thread's CPU time (robust to other processes, valid only with one torch thread).
"""

from __future__ import annotations

import time
from typing import Callable, Hashable, Mapping, Optional

CLOCKS = ("wall", "cpu")


def timer(name: str = "wall") -> Callable[[], float]:
    """``time.perf_counter`` for ``"wall"``; ``time.thread_time`` for ``"cpu"`` (requires one torch thread)."""
    if name not in CLOCKS:
        raise ValueError(f"clock={name!r} must be 'wall' or 'cpu'")
    if name == "cpu":
        import torch

        if torch.get_num_threads() != 1:
            raise ValueError("clock='cpu' measures the calling thread only: use it with threads=1")
        return time.thread_time
    return time.perf_counter


def interleaved_times(fns: Mapping[Hashable, Callable[[], object]], repeats: int = 5, *, warmup: int = 1,
                      number: int = 1, clock: str = "wall",
                      on_round: Optional[Callable[[int, int], None]] = None) -> dict:
    """Seconds per call of each ``fns[key]()``: min over ``repeats`` rounds of the mean of ``number`` calls.

    Each candidate first runs ``warmup`` times (not timed). ``on_round(done, total)`` is called after the
    warm-up and after every round (``total = repeats + 1``), for a progress display.
    """
    if repeats < 1 or number < 1 or warmup < 0:
        raise ValueError(f"repeats={repeats}, number={number}, warmup={warmup}: need repeats, number >= 1, "
                         "warmup >= 0")
    now = timer(clock)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    if on_round:
        on_round(1, repeats + 1)
    best = dict.fromkeys(fns, float("inf"))
    for r in range(repeats):
        for key, fn in fns.items():
            t0 = now()
            for _ in range(number):
                fn()
            best[key] = min(best[key], (now() - t0) / number)
        if on_round:
            on_round(r + 2, repeats + 1)
    return best


def best_time(fn: Callable[[], object], repeats: int = 5, *, warmup: int = 1, number: int = 1,
              clock: str = "wall") -> float:
    """Seconds per call of ``fn()`` (see :func:`interleaved_times`)."""
    return interleaved_times({"fn": fn}, repeats, warmup=warmup, number=number, clock=clock)["fn"]
