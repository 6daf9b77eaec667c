"""Studies of pre-defined sparsity: the "trends and guidelines" of seed 000 and the family comparison of 004.

One generic runner, five recipes (``recipes/study_*.yaml``):

* a **recipe** names a study, the claim it tests, an ``analysis`` (how rows become a conclusion) and one
  or more **settings** (``tiny`` for CI, ``medium``, ``full``);
* a setting is a base ``model`` / ``data`` / ``train`` section, a list of ``seeds`` and a ``sweep`` of
  blocks; each block overrides the base and may carry a ``grid`` (dotted paths -> lists of values) whose
  Cartesian product gives its configurations. Every configuration is validated up front
  (:class:`StudyConfig`: unknown keys refused, errors name the field, the value and what is allowed);
* every (configuration, seed) is a **sub-run** ``runs/<label>-<hash>/seed<s>/`` with its training
  checkpoint (``train/``) and a ``result.json`` written last: a finished sub-run is reused, a crashed one
  resumes from its last epoch, and a configuration that changes gets a new hash (never a stale result);
* rows are **aggregated** over seeds (mean, min, max, sample std), the study's analysis computes its
  conclusion from the numbers (e.g. "rho_2 > rho_1 better in k of n comparisons"), and the run directory
  gets ``runs.csv`` (one row per sub-run), ``table.csv`` (one row per configuration), the analysis'
  own tables, PNG figures, ``summary.json`` and ``report.md``.

What a seed controls: the network's pattern (``design(..., seed=s)``), the weight initialisation
(``torch.manual_seed(s)``) and the shuffling (``TrainConfig.seed = s``). The data split is fixed by
``data.seed`` so that every seed sees the same samples.

Model specification (``model:`` in a recipe; exactly one degree source, none = fully connected):

* ``net``: layer sizes; ``auto`` as first / last entry = the data's number of features / classes;
* ``density`` (one for all junctions, or one per junction), ``fan_out`` (per junction),
* ``rho_net`` (overall density; degrees by :func:`~sparseforge.topology.allocate_density`, which keeps
  the last junction dense when ``dense_last``), optionally with ``fixed: {junction: density}``: those
  junctions at that density, the rest of the edge budget spread evenly over the others (study 1),
* ``edges_like``: the edge budget of the fully connected net of these sizes, allocated as ``rho_net``
  (equal parameter counts for "large sparse vs small dense", study 2); with ``round_down`` (also for
  ``rho_net``) degrees are rounded down so that no net has more weights than the target,
* ``radices``: the degrees of the RadiX-Net with these radices on ``net`` (``net`` must be a multiple of
  ``N'`` = product of the first radix list); with ``family: radix`` the RadiX-Net itself (study 5).

``family`` is any of :data:`sparseforge.topology.FAMILIES`; ``clash_free`` takes ``z`` (one, one per
junction, or ``auto``: per junction the largest valid ``z <= z_max`` with ``z <= N / 2``, i.e. at least two
addresses per bank) and the options ``interleaver`` / ``dither``.

Package layout: :mod:`.schema` (the recipe models), :mod:`.expand` (loading, expansion into configurations,
degree sources resolved on the data), :mod:`.run` (training every configuration x seed, aggregation),
:mod:`.analyses` (one analysis per study kind, with its figures), :mod:`.report` (results, CSV, report.md).
"""

from __future__ import annotations

from .analyses import (ANALYSES, analyse_families, analyse_junction_densities, analyse_large_sparse, analyse_redundancy,
                       analyse_regularization)
from .expand import Planned, build_topology, expand, list_studies, load_recipe, resolve_recipe, resolve_sizes, seeds_for
from .report import AnalysisResult, StudyResult, report_markdown, write_outputs
from .run import aggregate, run_study
from .schema import (RECIPES, FamiliesAnalysis, JunctionAnalysis, LargeSparseAnalysis, Recipe, RedundancyAnalysis,
                     RegularizationAnalysis, Setting, StudyConfig, StudyData, StudyModel, StudyTrain)

__all__ = [
    "ANALYSES", "AnalysisResult", "FamiliesAnalysis", "JunctionAnalysis", "LargeSparseAnalysis", "Planned",
    "RECIPES", "Recipe", "RedundancyAnalysis", "RegularizationAnalysis", "Setting", "StudyConfig", "StudyData",
    "StudyModel", "StudyResult", "StudyTrain", "aggregate", "analyse_families", "analyse_junction_densities",
    "analyse_large_sparse", "analyse_redundancy", "analyse_regularization", "build_topology", "expand",
    "list_studies", "load_recipe", "report_markdown", "resolve_recipe", "resolve_sizes", "run_study", "seeds_for",
    "write_outputs",
]
