"""One training loop with callbacks, metrics, atomic checkpoints and resume."""

from .loop import Callback, TrainConfig, TrainState, count_flops, count_parameters, evaluate, fit, lr_factor

__all__ = ["Callback", "TrainConfig", "TrainState", "count_flops", "count_parameters", "evaluate", "fit", "lr_factor"]
