"""Progress displays for long runs (the library itself never prints; these callbacks do, via rich).

On a terminal a bar redraws in place; in a pipe or a log file there is no bar, only one line per finished
step (an epoch, a benchmark round), so a log reads cleanly.
"""

from __future__ import annotations

import time
from typing import Optional

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .terminal import err as console
from ..train import Callback, TrainState
from ..train.progress import epoch_line


class RichProgress(Callback):
    """A bar per epoch (terminal only), and one line per finished epoch with its metrics."""

    shows_progress = True  # fit() adds no report of its own; quiet means quiet

    def __init__(self, label: str = "", enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task = None

    def on_epoch_begin(self, state: TrainState) -> None:
        if not (self.enabled and console.is_terminal):
            return
        self._progress = Progress(
            TextColumn(f"{self.label} epoch {state.epoch + 1}/{state.config.epochs}"),
            BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
            console=console, transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=state.n_batches, loss=float("nan"))

    def on_batch_end(self, state: TrainState) -> None:
        if self._progress is not None and (state.batch % 10 == 0 or state.batch == state.n_batches - 1):
            self._progress.update(self._task, completed=state.batch + 1, loss=state.loss)

    def on_epoch_end(self, state: TrainState) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self.enabled:
            console.print(epoch_line(state.metrics, state.config.epochs, self.label), markup=False, highlight=False)


class Steps:
    """Progress of a run made of ``total`` steps (benchmark rounds, sweep points): a bar on a terminal,
    one line ``label: step k/total (t s)`` per finished step otherwise. Call it as ``steps(done, total)``."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label, self.enabled = label, enabled
        self._bar: Optional[Progress] = None
        self._task = None
        self._t0 = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if console.is_terminal:
            if self._bar is None:
                self._bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     console=console, transient=True)
                self._bar.start()
                self._task = self._bar.add_task(self.label, total=total)
            self._bar.update(self._task, completed=done, total=total)
            if done >= total:
                self.close()
        elif done > 0:
            console.print(f"{self.label}: step {done}/{total} ({time.perf_counter() - self._t0:.1f} s)",
                          markup=False, highlight=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
