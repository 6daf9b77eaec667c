"""SSL recipes (seed 002): train a baseline, regularize with group Lasso, thin, measure FLOPs and CPU speed.

One run directory holds::

    run.json               the settings (a RunStore: other settings are refused, variants may be added)
    baseline/              fit() run of the dense baseline (checkpoint, metrics.csv, result.json)
    <variant>/ssl/         fit() run with the GroupLasso callback, started from the baseline weights
    <variant>/finetune/    optional fit() run with the learned structure frozen (FreezeZeroGroups)
    <variant>/result.json  analysis of the variant (written last: a variant with it is done)
    <variant>/thinned.pt   the thinned model (torch.save of the module; torch.load(..., weights_only=False))
    <variant>/thinned.onnx the thinned model in ONNX (when the onnx package is installed and export works)
    table.csv              one row per model: error, learned structure, FLOP %, measured speedup
    layers.csv             one row per (model, conv/linear layer): sparsity, FLOPs, time original vs thinned
    conv1_filters.png      learned conv1 filters (grey = 0)
    sparsity.png           row / column / element sparsity per layer
    report.md

Every step resumes: finished fit() runs are reloaded from their checkpoints, finished variants from their
``result.json``. Speed is measured on CPU with an explicit thread count, as the minimum over repeats of the
mean time of a few forward calls (original and thinned timed alternately, so both see the same load), for every conv/linear layer on its own input, for residual blocks, and
for the whole model, original (un-thinned, same weights) against thinned.
"""

from __future__ import annotations

from .schema import KIND_FIELDS, MODELS, SEED_TABLES, SSLBench, SSLPhase, SSLSpec, Variant
from .bench import benchmark, time_pair
from .run import analyse, build_model, run_ssl
from .report import plot_conv1_filters, plot_sparsity, report_markdown, table_rows, write_outputs

__all__ = [
    "analyse", "benchmark", "build_model", "KIND_FIELDS", "MODELS", "plot_conv1_filters", "plot_sparsity",
    "report_markdown", "run_ssl", "SEED_TABLES", "SSLBench", "SSLPhase", "SSLSpec", "table_rows", "time_pair",
    "Variant", "write_outputs"
]
