"""The one progress display of the long commands (the library never prints; this is its callback).

On a terminal: a bar per epoch (rich). Not on a terminal (a log file, a pipe, CI): one plain line per
finished epoch or step, no control characters. ``enabled=False`` (``--quiet``): nothing but warnings. It is
a training :class:`~sparseforge.train.Callback` and also takes plain ``step``/``note`` calls from runners
that loop over variants, densities or trials.
"""

from __future__ import annotations

import sys
from typing import IO

from ..train import Callback, TrainState
from ..train.progress import epoch_line


class Progress(Callback):
    """Progress of one labelled job on ``stream`` (default stderr).

    Args:
        label: prefix of every line (e.g. a variant's name).
        enabled: False prints nothing but :meth:`note` (warnings).
        stream: where to write; a bar is drawn only when it is a TTY (``bar=None``) or when ``bar=True``.
    """

    shows_progress = True  # fit() adds no report of its own (and --quiet means quiet)

    def __init__(self, label: str = "", enabled: bool = True, *, stream: IO[str] | None = None,
                 bar: bool | None = None) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.bar = bool(isatty()) if bar is None else bar
        self._progress = None
        self._task = None
        self._console = None

    # ------------------------------------------------------------------------------------------ output
    def line(self, text: str, *, always: bool = False) -> None:
        """One line (with the label), unless disabled (``always``: even then)."""
        if not (self.enabled or always):
            return
        text = f"{self.label} {text}" if self.label else text
        if self.bar:
            self._rich().print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """A message shown even when quiet (e.g. a damaged checkpoint that was skipped)."""
        self.line(text, always=True)

    def step(self, done: int, total: int, what: str = "") -> None:
        """A runner finished item ``done`` of ``total`` (1-based), e.g. one density of a sweep."""
        self.line(f"[{done}/{total}] {what}".rstrip())

    def _rich(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream)
        return self._console

    # ------------------------------------------------------------------------------------------ training
    def on_train_begin(self, state: TrainState) -> None:
        for text in state.notes:
            self.note(text)
        if state.resumed_from:
            self.line(f"resumed after epoch {state.resumed_from} of {state.config.epochs}")

    def on_epoch_begin(self, state: TrainState) -> None:
        if not (self.enabled and self.bar):
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

        prefix = f"{self.label} " if self.label else ""
        self._progress = Bar(
            TextColumn(f"{prefix}epoch {state.epoch + 1}/{state.config.epochs}"),
            BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(),
            console=self._rich(), transient=True,
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
        self.line(epoch_line(state.metrics, state.config.epochs))

    def on_train_end(self, state: TrainState) -> None:
        if self._progress is not None:  # an epoch ended by an exception elsewhere
            self._progress.stop()
            self._progress = None
