"""The SSL recipe's settings (``sparseforge ssl``; YAML sections model, data, train, ssl, variants, bench),
validated once; the runners take :class:`SSLSpec` as it is. Also the seed's published tables."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator
from torch import nn

from ...config import DataSpec, TrainSpec, _Strict
from ...ssl import ssl_groups
from ...train import TrainConfig


MODELS = ("lenet5", "resnet20")
KIND_FIELDS = ("filter", "channel", "shape", "depth", "row", "column")

#: The seed's published numbers, shown next to ours in the report.
SEED_TABLES = {
    "filter": (
        "Seed (Wen et al. 2016) Table 1, LeNet on MNIST, penalizing filters and channels (conv1—conv2):\n\n"
        "| LeNet # | error | filter # | channel # | FLOP | speedup |\n|---|---|---|---|---|---|\n"
        "| 1 (baseline) | 0.9% | 20—50 | 1—20 | 100%—100% | 1.00×—1.00× |\n"
        "| 2 | 0.8% | 5—19 | 1—4 | 25%—7.6% | 1.64×—5.23× |\n"
        "| 3 | 1.0% | 3—12 | 1—3 | 15%—3.6% | 1.99×—7.44× |\n"
    ),
    "shape": (
        "Seed (Wen et al. 2016) Table 2, LeNet on MNIST, learning filter shapes (conv1—conv2; filter size = "
        "non-zero columns of the lowered weight matrix):\n\n"
        "| LeNet # | error | filter size | channel # | FLOP | speedup |\n|---|---|---|---|---|---|\n"
        "| 1 (baseline) | 0.9% | 25—500 | 1—20 | 100%—100% | 1.00×—1.00× |\n"
        "| 4 | 0.8% | 21—41 | 1—2 | 8.4%—8.2% | 2.33×—6.93× |\n"
        "| 5 | 1.0% | 7—14 | 1—1 | 1.4%—2.8% | 5.19×—10.82× |\n"
    ),
    "depth": (
        "Seed (Wen et al. 2016), ResNet on CIFAR-10, regularizing depth: ResNet-20 8.82% error; "
        "SSL-ResNet-14 (depth learned from ResNet-20) 8.54%; ResNet-32 7.51%, SSL-ResNet-18 7.40%.\n"
    ),
}


class Variant(_Strict):
    """One SSL setting: coefficients per group kind, mode, threshold."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    mode: Literal["proximal", "loss"] = "proximal"
    filter: float = Field(default=0.0, ge=0)
    channel: float = Field(default=0.0, ge=0)
    shape: float = Field(default=0.0, ge=0)
    depth: float = Field(default=0.0, ge=0)
    row: float = Field(default=0.0, ge=0)
    column: float = Field(default=0.0, ge=0)
    threshold: float = Field(default=1e-4, ge=0)
    layer_scale: dict[str, float] = Field(default_factory=dict,
                                          description="per-layer multiplier of all coefficients, e.g. {'0': 0.2}")

    def coefficients(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in KIND_FIELDS if getattr(self, k)}

    def groups(self, model: nn.Module) -> list:
        """The variant's group sets on ``model``; ``layer_scale`` multiplies every coefficient of the named
        layers (per-layer multipliers, as the seed's Caffe prototxts set them)."""
        scale = self.layer_scale
        sets = ssl_groups(model, **self.coefficients())
        unknown = sorted(set(scale) - {gs.layer for gs in sets})
        if unknown:
            raise ValueError(f"variant {self.name}: layer_scale names {unknown}, which have no groups; "
                             f"layers with groups: {sorted({gs.layer for gs in sets})}")
        return [gs.with_lam(gs.lam * scale.get(gs.layer, 1.0)) for gs in sets]

    @model_validator(mode="after")
    def _some_group(self) -> Variant:
        if not any((self.filter, self.channel, self.shape, self.depth, self.row, self.column)):
            raise ValueError("set at least one of filter, channel, shape, depth, row, column > 0")
        return self


class SSLPhase(_Strict):
    """The group-Lasso phase (``lr`` None: the baseline's) and the fine-tuning with the structure frozen
    (``finetune_lr`` None: the SSL lr / 10)."""

    epochs: int = Field(default=4, ge=1)
    lr: Optional[float] = Field(default=None, gt=0)
    finetune_epochs: int = Field(default=1, ge=0)
    finetune_lr: Optional[float] = Field(default=None, gt=0)


class SSLBench(_Strict):
    batch: int = Field(default=64, ge=1)
    repeats: int = Field(default=10, ge=1)
    number: int = Field(default=5, ge=1)
    threads: int = Field(default=1, ge=1)


class SSLSpec(_Strict):
    """Everything ``sparseforge ssl`` needs (YAML sections model, data, train, ssl, variants, bench).

    train: the baseline's training; the SSL phase uses the same settings with ``ssl.epochs`` epochs at
    ``ssl.lr``, the fine-tuning phase ``ssl.finetune_epochs`` at ``ssl.finetune_lr``. ``baseline_from``:
    reuse the trained baseline of another run directory (same model and data) instead of training one.
    bench: CPU benchmark batch size, repeats, calls per repeat and torch threads.
    """

    name: str = "ssl"
    model: Literal["lenet5", "resnet20"] = "lenet5"
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec(epochs=6, batch_size=64, optimizer="sgd", lr=0.01, momentum=0.9,
                                 weight_decay=5e-4, lr_schedule="cosine")
    ssl: SSLPhase = SSLPhase()
    variants: list[Variant] = Field(default_factory=lambda: [Variant(name="ssl", filter=0.02, channel=0.02)],
                                        min_length=1)
    baseline_from: Optional[Path] = None
    bench: SSLBench = SSLBench()
    export_onnx: bool = True
    threads: int = Field(default=1, ge=1, description="torch threads for training")
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _unique_names(self) -> SSLSpec:
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1} | ({"baseline"} & set(names)))
        if dup:
            raise ValueError(f"variant names must be distinct and not 'baseline': {dup}")
        return self

    def ssl_config(self) -> TrainConfig:
        return dataclasses.replace(self.train.to_config(), epochs=self.ssl.epochs, lr=self.ssl.lr or self.train.lr,
                                   lr_schedule="constant")

    def finetune_config(self) -> TrainConfig:
        lr = self.ssl.finetune_lr or (self.ssl.lr or self.train.lr) / 10
        return dataclasses.replace(self.train.to_config(), epochs=self.ssl.finetune_epochs, lr=lr,
                                   lr_schedule="cosine")
