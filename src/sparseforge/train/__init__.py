"""One training loop with callbacks, metrics, atomic checkpoints and resume."""

from .checkpoint import load_checkpoint, save_checkpoint, settings_hash
from .loop import Callback, TrainConfig, TrainState, count_flops, count_parameters, evaluate, fit, lr_factor

__all__ = ["Callback", "TrainConfig", "TrainState", "count_flops", "count_parameters", "evaluate", "fit", "load_checkpoint",
           "lr_factor", "save_checkpoint", "settings_hash"]
