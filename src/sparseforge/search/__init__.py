"""Bayesian-optimisation model search (seed 003): f = f_p + w_c f_c over staged spaces of MLPs and CNNs.

>>> from sparseforge.search import parse_spec, create_search, run_worker, summary
>>> spec = parse_spec(yaml.safe_load(open("search_tiny_digits.yaml")))     # doctest: +SKIP
>>> search = create_search(spec, "runs/search/study.journal")                # doctest: +SKIP
>>> run_worker(search, run_dir="runs/search"); summary(search)["best"]       # doctest: +SKIP

Modules: :mod:`.space` (search specs and stage spaces, YAML via pydantic), :mod:`.gp` (kernel, GP fit,
expected improvement), :mod:`.sampler` (the Optuna sampler and the baselines), :mod:`.objective`
(``f`` and the training of one trial), :mod:`.study` (storage, create/load, workers, resume, retries),
:mod:`.pareto` (accuracy vs complexity front).
"""

from __future__ import annotations

from ..errors import require

require("optuna", "the model search (sparseforge.search)")

from .gp import GaussianProcess, Hyper, expected_improvement
from .objective import build_model, objective_value, train_trial
from .pareto import choose, front_rows, pareto_front
from .sampler import SAMPLERS, GPEISampler, make_sampler
from .space import ParamSpec, SearchSpec, StageSpace
from .study import (
    Search, SearchError, create_search, default_storage, load_search, open_storage, recover, run_worker, summary,
    trial_rows,
)


def parse_spec(data: dict, where: str = "") -> SearchSpec:
    """Validate a search spec given as a dict (errors name the field)."""
    from ..config import parse

    return parse(SearchSpec, data, where=where)


__all__ = [
    "GPEISampler", "GaussianProcess", "Hyper", "ParamSpec", "SAMPLERS", "Search", "SearchError", "SearchSpec",
    "StageSpace", "build_model", "choose", "create_search", "default_storage", "expected_improvement",
    "front_rows", "load_search", "make_sampler", "objective_value", "open_storage", "pareto_front",
    "parse_spec", "recover", "run_worker", "summary", "train_trial", "trial_rows",
]
