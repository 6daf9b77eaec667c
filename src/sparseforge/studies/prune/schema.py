"""The pruning study's settings (``sparseforge prune``, YAML sections of the same names), validated once:
errors name the field, the value and what is allowed. The runners take :class:`PruneSpec` as it is."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, NonNegativeInt, field_validator, model_validator

from ...config import DataSpec, _Strict
from ...data import DataSplits
from ...prune import Constant, Cubic, Linear, Piecewise, Schedule
from ...train import TrainConfig


MODELS = ("lenet300", "lenet5")
METHODS = ("one-shot", "iterative")
PARTS = ("sweep", "retrain", "bench")


# ---------------------------------------------------------------------------------------------- config
def _check_fractions(values: list[float], what: str) -> list[float]:
    for v in values:
        if not 0.0 < v < 1.0:
            raise ValueError(f"each {what} must be a fraction in (0, 1) (e.g. 0.9 for 90%), got {v}")
    return values


class ScheduleSpec(_Strict):
    """Shape of the iterative schedule; its final sparsity is each target of the sweep."""

    kind: Literal["cubic", "linear", "constant", "piecewise"] = "cubic"
    initial: float = Field(default=0.0, ge=0, lt=1, description="sparsity when pruning starts")
    start_epoch: float = Field(default=0.0, ge=0)
    end_epoch: Optional[float] = Field(default=None, gt=0, description="None: 2/3 of the fine-tuning epochs")
    every: Optional[int] = Field(default=None, ge=1, description="prune every this many steps (None: ~30 prunings)")
    points: list[tuple[float, float]] = Field(default_factory=list,
                                              description="piecewise: [epoch, fraction of the target] pairs")

    @model_validator(mode="after")
    def _shape(self) -> ScheduleSpec:
        if self.end_epoch is not None and self.end_epoch < self.start_epoch:
            raise ValueError(f"end_epoch={self.end_epoch} must be >= start_epoch={self.start_epoch}")
        if self.kind == "piecewise":
            if not self.points:
                raise ValueError("kind piecewise needs points: [[epoch, fraction of target], ...]")
            for (e0, f0), (e1, f1) in zip(self.points[:-1], self.points[1:]):
                if e1 <= e0 or f1 < f0:
                    raise ValueError(f"points ({e0}, {f0}) -> ({e1}, {f1}): epochs must increase and "
                                     "fractions must not decrease (a sparsity schedule is monotone)")
            for e, f in self.points:
                if e < 0 or not 0 <= f <= 1:
                    raise ValueError(f"point ({e}, {f}): epoch must be >= 0 and fraction in [0, 1]")
        return self

    def build(self, target: float, steps_per_epoch: int, epochs: int) -> Schedule:
        """The schedule in optimizer steps for a run of ``epochs`` epochs reaching ``target``."""
        start = int(round(self.start_epoch * steps_per_epoch))
        end_epoch = self.end_epoch if self.end_epoch is not None else 2 * epochs / 3
        end = max(start, int(round(end_epoch * steps_per_epoch)))
        every = self.every or max(1, (end - start) // 30)
        if self.kind == "cubic":
            return Cubic(initial=min(self.initial, target), target=target, start=start, end=end, every=every)
        if self.kind == "linear":
            return Linear(initial=min(self.initial, target), target=target, start=start, end=end, every=every)
        if self.kind == "constant":
            return Constant(sparsity=target, start=start)
        return Piecewise(tuple((int(round(e * steps_per_epoch)), f * target) for e, f in self.points))


class PretrainSpec(_Strict):
    epochs: int = Field(default=8, ge=1)
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=1e-3, gt=0)


class PruneSection(_Strict):
    sparsities: list[float] = Field(default=[0.5, 0.75, 0.9, 0.95, 0.99], min_length=1)
    methods: list[Literal["one-shot", "iterative"]] = Field(default=["one-shot", "iterative"], min_length=1)
    scope: Literal["layer", "global"] = "layer"
    finetune_epochs: int = Field(default=6, ge=1)
    finetune_lr: float = Field(default=1e-3, gt=0)
    schedule: ScheduleSpec = ScheduleSpec()
    curve_points: int = Field(default=4, ge=0, description="accuracy samples per epoch in iterative runs")

    @field_validator("sparsities")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        return _check_fractions(v, "sparsity")


class RetrainSection(_Strict):
    sparsities: list[float] = Field(default=[0.9, 0.95, 0.99])
    seeds: list[NonNegativeInt] = Field(default=[1, 2, 3], min_length=1)
    epochs: Optional[int] = Field(default=None, ge=1, description="None: the pre-training epochs")
    from_method: Literal["one-shot", "iterative"] = "iterative"
    random_control: bool = True

    @field_validator("sparsities")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        return _check_fractions(v, "sparsity")


class BenchSection(_Strict):
    batches: list[int] = Field(default=[1, 64, 256], min_length=1)
    repeats: int = Field(default=30, ge=1)
    threads: int = Field(default=1, ge=1)

    @field_validator("batches")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v):
            raise ValueError(f"batch sizes must be >= 1, got {v}")
        return v


class PruneSpec(_Strict):
    """Everything ``sparseforge prune`` needs (YAML sections of the same names)."""

    model: Literal["lenet300", "lenet5"] = "lenet300"
    data: DataSpec = DataSpec()
    pretrain: PretrainSpec = PretrainSpec()
    prune: PruneSection = PruneSection()
    retrain: RetrainSection = RetrainSection()
    bench: BenchSection = BenchSection()
    parts: list[Literal["sweep", "retrain", "bench"]] = Field(default=["sweep", "retrain", "bench"], min_length=1)
    seed: int = Field(default=0, ge=0)
    threads: Optional[int] = Field(default=1, ge=1, description="torch intra-op threads for training")

    def load_data(self) -> DataSplits:
        return self.data.load()

    def pretrain_config(self) -> TrainConfig:
        """Dense pre-training (Adam, cosine-decayed lr)."""
        p = self.pretrain
        return TrainConfig(epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, seed=self.seed, lr_schedule="cosine")

    def finetune_config(self) -> TrainConfig:
        """Every pruned run (one-shot fine-tuning, or the iterative run)."""
        return TrainConfig(epochs=self.prune.finetune_epochs, batch_size=self.pretrain.batch_size,
                           lr=self.prune.finetune_lr, seed=self.seed, lr_schedule="cosine")

    def retrain_config(self, seed: int) -> TrainConfig:
        """Retraining a pruned structure from scratch with initialisation ``seed``."""
        return TrainConfig(epochs=self.retrain.epochs or self.pretrain.epochs, batch_size=self.pretrain.batch_size,
                           lr=self.pretrain.lr, seed=seed, lr_schedule="cosine")
