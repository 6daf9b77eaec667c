"""Mapping pre-defined sparse networks onto the edge-processing hardware of the seeds (000, 001).

- :mod:`.junction`: cycle-level model of one junction (memories, address tables, clashes, stalls).
- :mod:`.pipeline`: the network pipeline (block cycles, latency, throughput, speedups, balance).
- :mod:`.fixed_point`: fixed-point formats and a bit-accurate training step.
- :mod:`.export`: ``$readmemh`` memory files and a JSON summary, and reading them back.
- :mod:`.resources`: memory bits and multipliers; the design-space sweep over ``z``.
- :mod:`.plots`: the sweep's plot.
"""

from .export import ExportedNetwork, export_network, load_export, read_memh, write_memh
from .fixed_point import (
    FixedFormats,
    FixedMLP,
    FixedPoint,
    FixedPointError,
    FixedTrace,
    FloatMLP,
    StepStats,
    fixed_from_float,
    forward_fixed,
    forward_float,
    init_fixed_mlp,
    initial_weights,
    predict_fixed,
    to_float,
    train_step_fixed,
    train_step_float,
)
from .junction import HardwareError, JunctionModel, MemoryAccess, MemoryClash, check_parallelism, junction_model
from .pipeline import (
    ClockModel,
    JunctionTiming,
    LayerBanks,
    PipelineReport,
    layer_banks,
    pipeline_from_patterns,
    plan_pipeline,
)
from .plots import plot_z_sweep
from .resources import (
    JunctionResources,
    ResourceReport,
    SweepPoint,
    WordLengths,
    estimate_resources,
    sweep_z,
    valid_z,
)

__all__ = [
    "ClockModel",
    "ExportedNetwork",
    "FixedFormats",
    "FixedMLP",
    "FixedPoint",
    "FixedPointError",
    "FixedTrace",
    "FloatMLP",
    "HardwareError",
    "JunctionModel",
    "JunctionResources",
    "JunctionTiming",
    "LayerBanks",
    "MemoryAccess",
    "MemoryClash",
    "PipelineReport",
    "ResourceReport",
    "StepStats",
    "SweepPoint",
    "WordLengths",
    "check_parallelism",
    "estimate_resources",
    "export_network",
    "fixed_from_float",
    "forward_fixed",
    "forward_float",
    "init_fixed_mlp",
    "initial_weights",
    "junction_model",
    "layer_banks",
    "load_export",
    "pipeline_from_patterns",
    "plan_pipeline",
    "plot_z_sweep",
    "predict_fixed",
    "read_memh",
    "sweep_z",
    "to_float",
    "train_step_fixed",
    "train_step_float",
    "valid_z",
    "write_memh",
]
