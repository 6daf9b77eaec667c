"""Running an SSL recipe: the baseline, each group-Lasso variant (SSL phase, optional fine-tuning),
thinning, FLOPs and speed analysis, ONNX export; resumable per variant."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ... import io
from ...config import ConfigError
from ...data import DataSplits
from ...nn.zoo import build_model as zoo_model
from ...ssl import (
    FreezeZeroGroups,
    GroupLasso,
    layer_flops,
    layer_inputs,
    sparsity_report,
    ssl_groups,
    thin,
)
from ...runs import RunStore, canonical
from ...train import Callback, evaluate, fit, load_checkpoint
from .bench import benchmark, submodule, time_pair
from .report import write_outputs
from .schema import MODELS, SSLSpec, Variant


def build_model(name: str, data: DataSplits) -> nn.Module:
    """The model ``name`` (one of :data:`MODELS`) sized for ``data``."""
    if name not in MODELS:
        raise ValueError(f"model={name!r}: choose one of {', '.join(MODELS)}")
    return zoo_model(name, data.sample_shape, data.n_classes)


# ---------------------------------------------------------------------------------------------- one run
def _fit(model, data, cfg, callbacks, run_dir, label, callbacks_for):
    return fit(model, data, cfg, callbacks=list(callbacks) + list(callbacks_for(label)), run_dir=run_dir, resume=True)


def _baseline(cfg: SSLSpec, data: DataSplits, run_dir: Path, callbacks_for) -> tuple[nn.Module, dict]:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data)
    src = Path(cfg.baseline_from) if cfg.baseline_from else run_dir / "baseline"
    if cfg.baseline_from:
        loaded = load_checkpoint(src / "checkpoint.pt", check_settings=False)  # refuses a damaged one
        if loaded is None:
            raise FileNotFoundError(f"baseline_from={cfg.baseline_from}: no checkpoint.pt there; run that recipe first")
        state = loaded.payload
        model.load_state_dict(state["model"])
        _, acc = evaluate(model, data.test)
        return model, {"test_acc": acc, "epochs": state["epoch"], "source": str(src)}
    st = _fit(model, data, cfg.train.to_config(), [], src, "baseline", callbacks_for)
    return model, {"test_acc": st.metrics["test_acc"], "epochs": st.epoch, "source": str(src)}


def analyse(name: str, model: nn.Module, original: nn.Module, data: DataSplits, cfg: SSLSpec,
            out_dir: Path | None) -> dict:
    """Thin ``model``, check it against the un-thinned model, count FLOPs and time both. ``original`` is
    the baseline (its FLOPs are the 100 %). Returns the variant's result (JSON-able)."""
    model.eval()
    example = data.test.x[: max(cfg.bench.batch, 1)]
    thinned = thin(model, example[:1])
    thinned.eval()
    with torch.no_grad():
        xs = data.test.x[:512]
        max_diff = float((model(xs) - thinned(xs)).abs().max())
    _, acc = evaluate(model, data.test)
    _, acc_thin = evaluate(thinned, data.test)
    fl_base = {r["layer"]: r for r in layer_flops(original, example[:1])}
    fl_thin = {r["layer"]: r for r in layer_flops(thinned, example[:1])}
    sp = sparsity_report(model)
    bench = benchmark(model, thinned, example, threads=cfg.bench.threads, repeats=cfg.bench.repeats,
                      number=cfg.bench.number)
    layers = []
    for r in sp:
        n = r["layer"]
        fb = fl_base.get(n, {}).get("flops", 0)
        ft = fl_thin.get(n, {}).get("flops", 0)
        to, tt = bench["layers"].get(n, (math.nan, math.nan))
        layers.append(dict(
            model=name, **{k: v for k, v in r.items() if k != "shape"}, shape="x".join(map(str, r["shape"])),
            thinned_type=fl_thin.get(n, {}).get("type", "removed"),
            thinned_in=fl_thin.get(n, {}).get("in_shape"), thinned_out=fl_thin.get(n, {}).get("out_shape"),
            thinned_columns=_columns(submodule(thinned, n)),
            flops=fb, flops_thinned=ft, flop_pct=(ft / fb if fb else math.nan),
            time_ms=to, time_thinned_ms=tt, speedup=(to / tt if tt else math.inf),
        ))
    _time_lowering(thinned, example, layers, cfg)
    total_b = sum(r["flops"] for r in fl_base.values())
    total_t = sum(r["flops"] for r in fl_thin.values())
    blocks = {n: dict(time_ms=a, time_thinned_ms=b, speedup=a / b if b else math.inf, kept=_is_block(thinned, n))
              for n, (a, b) in bench["blocks"].items()}
    result = dict(
        model=name, test_acc=acc, test_err=1 - acc, test_acc_thinned=acc_thin, max_abs_diff=max_diff,
        params=sum(p.numel() for p in model.parameters()), params_thinned=sum(p.numel() for p in thinned.parameters()),
        flops=total_b, flops_thinned=total_t, flop_pct=total_t / total_b,
        depth=_depth(model), depth_thinned=_depth(thinned),
        time_ms=bench["model"][0], time_thinned_ms=bench["model"][1],
        speedup=bench["model"][0] / bench["model"][1],
        bench_threads=bench["threads"], bench_batch=bench["batch"],
        layers=layers, blocks=blocks,
        conv1_filters=_conv1(model).tolist(),
    )
    if out_dir is not None:
        io.torch_save(out_dir / "thinned.pt", thinned)
        if cfg.export_onnx:
            result["onnx"] = _export_onnx(thinned, example[:1], out_dir / "thinned.onnx")
    return result


@torch.no_grad()
def _time_lowering(thinned: nn.Module, x: torch.Tensor, layers: list[dict], cfg: SSLSpec) -> None:
    """For every LoweredConv2d of ``thinned``: time it against a plain Conv2d of the same (channel-thinned)
    shape holding its zero columns, i.e. is lowering worth it on top of filter/channel removal? Adds
    ``lowered_ms``, ``same_shape_conv_ms`` and ``lowering_speedup`` to the layer rows."""
    from ...ssl import LoweredConv2d

    ins = layer_inputs(thinned, x)
    prev = torch.get_num_threads()
    torch.set_num_threads(cfg.bench.threads)
    try:
        for r in layers:
            m = submodule(thinned, r["layer"])
            if not isinstance(m, LoweredConv2d):
                continue
            conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                             bias=m.bias is not None).eval()
            conv.weight.copy_(m.dense_weight())
            if m.bias is not None:
                conv.bias.copy_(m.bias)
            tc, tl = time_pair(conv, ins[r["layer"]], m, ins[r["layer"]], cfg.bench.repeats, cfg.bench.number)
            r.update(lowered_ms=1e3 * tl, same_shape_conv_ms=1e3 * tc, lowering_speedup=tc / tl)
    finally:
        torch.set_num_threads(prev)


def _columns(m: nn.Module | None) -> int:
    """Columns of a layer's lowered weight matrix (kept columns of a LoweredConv2d); 0 if absent."""
    from ...ssl import LoweredConv2d

    if isinstance(m, LoweredConv2d):
        return m.n_columns
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        return m.weight[0].numel()
    return 0


def _is_block(model: nn.Module, name: str) -> bool:
    return isinstance(getattr(model.get_submodule(name), "branch", None), nn.Module)


def _depth(model: nn.Module) -> int:
    from ...ssl import LoweredConv2d

    return sum(1 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, LoweredConv2d)))


def _conv1(model: nn.Module) -> torch.Tensor:
    from ...ssl import LoweredConv2d

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.weight.detach()[:, 0]
        if isinstance(m, LoweredConv2d):
            return m.dense_weight()[:, 0]
    return torch.zeros(0, 1, 1)


def _export_onnx(model: nn.Module, x: torch.Tensor, path: Path) -> str:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return "skipped: onnx not installed"
    import warnings

    try:
        with warnings.catch_warnings(), io.atomic_path(path) as tmp:
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(tmp), dynamo=False, input_names=["x"], output_names=["logits"])
        return "ok"
    except Exception as e:  # noqa: BLE001 - report, do not fail the experiment
        return f"failed: {type(e).__name__}: {e}"


def run_ssl(cfg: SSLSpec, run_dir: str | Path, *, data: DataSplits | None = None,
            callbacks_for: Callable[[str], Sequence[Callback]] = lambda label: (), overwrite: bool = False) -> dict:
    """Run (or resume) the whole recipe and write its tables, plots and report. Returns
    ``{"baseline": result, "variants": [result, ...]}`` (see :func:`analyse`).

    ``run_dir`` is a :class:`~sparseforge.runs.RunStore`: a run of other baseline, data or benchmark settings
    is refused naming the fields (unless ``overwrite``); variants may be added, and a finished variant is
    reused only under its own settings."""
    run_dir = Path(run_dir)
    data = data or cfg.data.load()
    run_settings = {k: v for k, v in canonical(cfg).items() if k != "threads"}
    with RunStore(run_dir, run_settings, command="ssl", overwrite=overwrite, mutable=("variants",)):
        base_model, base_info = _baseline(cfg, data, run_dir, callbacks_for)
        base_file = run_dir / "baseline" / "analysis.json"
        if base_file.exists():
            base = json.loads(base_file.read_text())
        else:
            base = analyse("baseline", copy.deepcopy(base_model), base_model, data, cfg, None)
            base.update(base_info)
            io.write_json(base_file, base)
        results = []
        for v in cfg.variants:
            vdir = run_dir / v.name
            rfile = vdir / "result.json"
            settings = _variant_settings(cfg, v)
            if rfile.exists():
                done = json.loads(rfile.read_text())
                _check_same_settings(v.name, vdir, done.get("settings"), settings)
                results.append(done)
                continue
            model = copy.deepcopy(base_model)
            reg = GroupLasso(v.groups(model), mode=v.mode, threshold=v.threshold)
            st = _fit(model, data, cfg.ssl_config(), [reg], vdir / "ssl", f"{v.name} ssl", callbacks_for)
            history = list(st.history)
            if cfg.ssl.finetune_epochs > 0:
                freeze = FreezeZeroGroups(ssl_groups(model, **{k: 1.0 for k in v.coefficients()}))
                st = _fit(model, data, cfg.finetune_config(), [freeze], vdir / "finetune", f"{v.name} finetune",
                          callbacks_for)
                history += st.history
            res = analyse(v.name, model, base_model, data, cfg, vdir)
            res.update(variant=_variant_row(v), history=history, settings=settings)
            io.write_json(rfile, res)
            results.append(res)
        out = {"baseline": base, "variants": results}
        write_outputs(out, run_dir, cfg)
    return out


def _variant_row(v: Variant) -> dict:
    """A variant's fields as JSON values, ``layer_scale`` as ``[[layer, multiplier], ...]``."""
    return {**v.model_dump(), "layer_scale": [list(p) for p in v.layer_scale.items()]}


def _variant_settings(cfg: SSLSpec, v: Variant) -> dict:
    """What a variant's result depends on (besides the baseline), as plain JSON values."""
    return json.loads(json.dumps(dict(
        variant=_variant_row(v), ssl=dataclasses.asdict(cfg.ssl_config()),
        finetune=dataclasses.asdict(cfg.finetune_config()) if cfg.ssl.finetune_epochs > 0 else None,
        bench=dict(batch=cfg.bench.batch, repeats=cfg.bench.repeats, number=cfg.bench.number,
                   threads=cfg.bench.threads)), default=str))


def _check_same_settings(name: str, vdir: Path, done: dict | None, now: dict) -> None:
    """A finished variant is reused only when it was run with the settings asked for now."""
    if done == now:
        return
    changed = sorted(f"{part}.{k}" for part in now for k in set((done or {}).get(part) or {}) | set(now[part] or {})
                     if ((done or {}).get(part) or {}).get(k) != (now[part] or {}).get(k))
    raise ConfigError(f"ssl: variant {name!r} in {vdir} was run with other settings "
                      f"({', '.join(changed) or 'none recorded'}); use a new --run-dir or delete {vdir}")
