"""Progress display for long runs (the library itself never prints; this callback does, via rich)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..train import Callback, TrainState

console = Console(stderr=True)


class RichProgress(Callback):
    """A bar per epoch, and one line per finished epoch with its metrics."""

    def __init__(self, label: str = "", enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task = None

    def on_epoch_begin(self, state: TrainState) -> None:
        if not self.enabled:
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
            m = state.metrics
            console.print(
                f"{self.label} epoch {m['epoch']:>3}: train loss {m['train_loss']:.4f} acc {100 * m['train_acc']:.2f}% | "
                f"val loss {m['val_loss']:.4f} acc {100 * m['val_acc']:.2f}% | {m['epoch_time_s']:.2f} s"
            )
