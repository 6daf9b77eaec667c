"""The default progress report of :func:`~sparseforge.train.fit`: one line per finished epoch.

``fit(..., progress=None)`` (the default) adds :class:`EpochLog` unless a callback already shows progress
(``shows_progress = True``, e.g. the command line's display); ``progress=False`` is quiet, ``progress=True``
always reports. The lines go to ``sys.stderr`` (or the given stream), never to stdout.
"""

from __future__ import annotations

import sys
from typing import TextIO

from .loop import Callback, TrainState


def epoch_line(metrics: dict, epochs: int | None = None, label: str = "") -> str:
    """``[label ]epoch E[/N]: train loss .. acc ..% | val loss .. acc ..% | T s`` from one epoch's metrics."""
    total = f"/{epochs}" if epochs else ""
    head = f"{label} " if label else ""
    return (f"{head}epoch {metrics['epoch']:>3}{total}: train loss {metrics['train_loss']:.4f} acc "
            f"{100 * metrics['train_acc']:.2f}% | val loss {metrics['val_loss']:.4f} acc {100 * metrics['val_acc']:.2f}% "
            f"| {metrics['epoch_time_s']:.2f} s")


class EpochLog(Callback):
    """Writes :func:`epoch_line` after every epoch, and the test accuracy at the end, to ``stream``."""

    shows_progress = True

    def __init__(self, stream: TextIO | None = None, label: str = "") -> None:
        self.stream, self.label = stream, label

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(text + "\n")
        stream.flush()

    def on_epoch_end(self, state: TrainState) -> None:
        self._write(epoch_line(state.metrics, state.config.epochs, self.label))

    def on_train_end(self, state: TrainState) -> None:
        if "test_acc" in state.metrics:
            head = f"{self.label} " if self.label else ""
            self._write(f"{head}test loss {state.metrics['test_loss']:.4f} acc {100 * state.metrics['test_acc']:.2f}%")
