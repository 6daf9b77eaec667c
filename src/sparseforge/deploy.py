"""Taking a trained model elsewhere: :func:`export` (ONNX, TorchScript), :func:`load` a ``sparseforge train``
run directory as a ready model, :func:`predict` its test accuracy again.

Exports run :func:`~sparseforge.nn.portable.to_standard_ops` first, so the files hold standard operators
only (Gather, Mul, ReduceSum; no sparseforge op) and run in onnxruntime or ``torch.jit.load`` without
sparseforge; their size grows with the edges, not ``n_in * n_out``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import ConfigError, RunError, require
from .io import atomic_path
from .nn import SparseMLP
from .nn.portable import to_standard_ops
from .topology import NetworkTopology, Pattern
from .train.checkpoint import load_checkpoint

FORMATS = ("onnx", "torchscript")
SPEC, CHECKPOINT, RESULT = "spec.json", "checkpoint.pt", "result.json"


def _example(model: nn.Module, example: torch.Tensor | None) -> torch.Tensor:
    if example is not None:
        return example
    if isinstance(model, SparseMLP):
        param = next(model.parameters())
        return torch.zeros(2, model.topology.sizes[0], dtype=param.dtype, device=param.device)
    raise ValueError(f"export: give example=<an input tensor> for a {type(model).__name__} (only a SparseMLP "
                     "has a known input shape)")


def export(model: nn.Module, path: str | os.PathLike, format: str = "onnx",
           example: torch.Tensor | None = None) -> Path:
    """Write ``model`` (in eval mode, standard operators only) to ``path``; returns the path.

    Args:
        model: any module; its SparseLinear layers become Gather/Mul/ReduceSum.
        path: the file to write (atomically).
        format: ``"onnx"`` (opset 17, dynamic batch dimension; input ``x``, output ``y``) or ``"torchscript"``
            (``torch.jit.trace``; load with ``torch.jit.load``).
        example: an input ``[batch, ...]``; default ``zeros(2, N_0)`` for a SparseMLP.
    Raises:
        ValueError: unknown ``format`` (the message lists the allowed ones) or no ``example`` when needed.
        MissingExtra: ONNX without the ``onnx`` package (``pip install 'sparseforge[onnx]'``).
    """
    if format not in FORMATS:
        raise ValueError(f"export: format={format!r} is not supported; allowed: {', '.join(FORMATS)}")
    if format == "onnx":
        require("onnx", "export(format='onnx')")
    x = _example(model, example)
    portable = to_standard_ops(model)
    path = Path(path)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit and the TorchScript-based ONNX exporter
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # input checks are constant for the traced shape
        if format == "onnx":
            torch.onnx.export(portable, (x,), str(tmp), dynamo=False, opset_version=17, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        else:
            torch.jit.save(torch.jit.trace(portable, (x,)), str(tmp))
    return path


# --------------------------------------------------------------------------------------------- run dirs
def _run_file(run_dir: Path, name: str) -> Path:
    path = run_dir / name
    if not run_dir.is_dir():
        raise ConfigError(f"run_dir={str(run_dir)!r} is not a directory")
    if not path.is_file():
        raise ConfigError(f"run_dir={str(run_dir)!r} has no {name}: it is not a finished `sparseforge train` run")
    return path


def _topology_from_state(sizes: list[int], state: dict, family: str, seed: int | None) -> NetworkTopology:
    """The topology stored in a SparseMLP state_dict (each sparse layer's indptr/indices; dense layers full)."""
    patterns = []
    for i in range(len(sizes) - 1):
        key = f"layers.{i}."
        if key + "indptr" in state:
            patterns.append(Pattern(sizes[i], sizes[i + 1], state[key + "indptr"].numpy(), state[key + "indices"].numpy()))
        else:
            patterns.append(Pattern.full(sizes[i], sizes[i + 1]))
    return NetworkTopology(tuple(sizes), tuple(patterns), family=family, seed=seed)


def load(run_dir: str | os.PathLike) -> SparseMLP:
    """The model a ``sparseforge train`` run directory holds (its last checkpoint), in eval mode on the CPU.

    The topology is read from the checkpoint itself (each layer's pattern buffers), checked against the
    run's ``spec.json`` sizes. Raises :class:`~sparseforge.errors.ConfigError` (one line) when the directory
    is not a finished train run or its checkpoint does not fit its spec, and
    :class:`~sparseforge.errors.RunError` when the latest checkpoint is damaged (its checksum fails: the
    previous one is not used, it is not the model the run finished with).
    """
    run_dir = Path(run_dir)
    spec = json.loads(_run_file(run_dir, SPEC).read_text())
    ckpt_path = _run_file(run_dir, CHECKPOINT)
    loaded = load_checkpoint(ckpt_path, check_settings=False)  # checksummed; RunError when damaged
    if loaded is None or loaded.skipped:  # an older .prev file is not the model the run finished with
        raise RunError(f"{ckpt_path} cannot be used: " + "; ".join(loaded.skipped if loaded else ["missing"]))
    try:
        state = {k: v.cpu() for k, v in loaded.payload["model"].items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise RunError(f"{ckpt_path} holds no model state ({type(exc).__name__}: {exc})") from None
    try:
        sizes = [int(n) for n in spec["model"]["net"]]
        model = SparseMLP(_topology_from_state(sizes, state, str(spec["model"].get("family") or "custom"),
                                               spec["model"].get("seed")))
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{ckpt_path} does not fit {run_dir / SPEC} ({type(exc).__name__}: {exc})") from None
    return model.eval()


def predict(run_dir: str | os.PathLike, dataset: str | None = None, root: str | os.PathLike | None = None) -> dict:
    """Test accuracy of the model in ``run_dir`` on the run's own test split (or on ``dataset``).

    Returns ``{"dataset", "test_acc", "recorded_test_acc", "samples"}``; ``recorded_test_acc`` is what the run
    wrote to ``result.json`` (None when absent). The data is loaded with the run's data settings (same split,
    same limit), so on the run's dataset the two accuracies are equal.
    """
    from .data import load_dataset
    from .train import evaluate

    run_dir = Path(run_dir)
    model = load(run_dir)
    data_spec = json.loads((run_dir / SPEC).read_text())["data"]
    name = dataset or data_spec["name"]
    data = load_dataset(name, root=root if root is not None else data_spec.get("root"),
                        val_size=data_spec.get("val_size"), seed=data_spec.get("seed", 0),
                        limit=data_spec.get("limit"), **(data_spec.get("options") or {}))
    if data.n_features != model.topology.sizes[0] or data.n_classes != model.topology.sizes[-1]:
        raise ConfigError(f"dataset={name!r} has {data.n_features} inputs and {data.n_classes} classes; the model in "
                          f"{run_dir} takes {model.topology.sizes[0]} and gives {model.topology.sizes[-1]}")
    _, acc = evaluate(model, data.test)
    recorded = None
    if (run_dir / RESULT).is_file():
        recorded = json.loads((run_dir / RESULT).read_text()).get("final", {}).get("test_acc")
    return {"dataset": name, "test_acc": acc, "recorded_test_acc": recorded, "samples": len(data.test)}
