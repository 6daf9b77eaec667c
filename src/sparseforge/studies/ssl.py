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

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .. import io
from ..config import ConfigError
from ..data import DataSplits, load_dataset
from ..nn import lenet5
from ..nn.resnet import resnet20
from ..ssl import (
    FreezeZeroGroups,
    GroupLasso,
    layer_flops,
    layer_inputs,
    sparsity_report,
    ssl_groups,
    thin,
)
from ..runs import RunStore, canonical
from ..runs.timing import interleaved_times
from ..train import Callback, TrainConfig, evaluate, fit, load_checkpoint
from ..runs.plots import save_figure, subplots

MODELS = {"lenet5": lenet5, "resnet20": resnet20}
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


@dataclass(frozen=True)
class Variant:
    """One SSL setting: group-Lasso coefficients per kind, mode and zeroing threshold.

    mode: ``"proximal"`` or ``"loss"`` (see :class:`sparseforge.ssl.GroupLasso`).
    threshold: group norm below which groups are set to zero.
    filter/channel/shape (convs), row/column (linears), depth (residual blocks): coefficients.
    layer_scale: ``((layer name, multiplier), ...)`` applied to all coefficients of that layer.
    """

    name: str
    mode: str = "proximal"
    filter: float = 0.0
    channel: float = 0.0
    shape: float = 0.0
    depth: float = 0.0
    row: float = 0.0
    column: float = 0.0
    threshold: float = 1e-4
    layer_scale: tuple[tuple[str, float], ...] = ()

    def coefficients(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in KIND_FIELDS if getattr(self, k)}

    def groups(self, model: nn.Module) -> list:
        """The variant's group sets on ``model``; ``layer_scale`` multiplies every coefficient of the named
        layers (per-layer multipliers, as the seed's Caffe prototxts set them)."""
        scale = dict(self.layer_scale)
        sets = ssl_groups(model, **self.coefficients())
        unknown = sorted(set(scale) - {gs.layer for gs in sets})
        if unknown:
            raise ValueError(f"variant {self.name}: layer_scale names {unknown}, which have no groups; "
                             f"layers with groups: {sorted({gs.layer for gs in sets})}")
        return [gs.with_lam(gs.lam * scale.get(gs.layer, 1.0)) for gs in sets]


@dataclass(frozen=True)
class SSLExperiment:
    """Settings of one SSL recipe (``sparseforge ssl``).

    train: the baseline's training; the SSL phase uses the same settings with ``ssl_epochs`` epochs and
    learning rate ``ssl_lr`` (default ``train.lr``), the fine-tuning phase ``finetune_epochs`` at
    ``finetune_lr`` (default ``ssl_lr / 10``). ``baseline_from``: reuse the trained baseline of another run
    directory (same model and data) instead of training one. bench_*: CPU benchmark batch size, repeats and
    torch threads.
    """

    name: str = "lenet-filter"
    model: str = "lenet5"
    dataset: str = "mnist"
    data_root: str | None = None
    limit: int | None = None
    val_size: int | float | None = None
    data_seed: int = 0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=6, batch_size=64, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, lr_schedule="cosine"))
    ssl_epochs: int = 4
    ssl_lr: float | None = None
    finetune_epochs: int = 1
    finetune_lr: float | None = None
    variants: tuple[Variant, ...] = (Variant("ssl", filter=0.02, channel=0.02),)
    baseline_from: str | None = None
    bench_batch: int = 64
    bench_repeats: int = 10
    bench_number: int = 5
    bench_threads: int = 1
    export_onnx: bool = True
    seed: int = 0

    def ssl_config(self) -> TrainConfig:
        return dataclasses.replace(self.train, epochs=self.ssl_epochs, lr=self.ssl_lr or self.train.lr,
                                   lr_schedule="constant")

    def finetune_config(self) -> TrainConfig:
        lr = self.finetune_lr or (self.ssl_lr or self.train.lr) / 10
        return dataclasses.replace(self.train, epochs=self.finetune_epochs, lr=lr, lr_schedule="cosine")


def build_model(name: str, data: DataSplits) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"model={name!r}: choose one of {', '.join(MODELS)}")
    c = data.sample_shape[0]
    if name == "lenet5":
        return lenet5(in_channels=c, n_classes=data.n_classes, image_size=data.sample_shape[-1])
    return resnet20(in_channels=c, n_classes=data.n_classes)


# ---------------------------------------------------------------------------------------------- timing
@torch.no_grad()
def time_pair(a: nn.Module, xa: torch.Tensor, b: nn.Module, xb: torch.Tensor, repeats: int = 10,
              number: int = 5) -> tuple[float, float]:
    """Seconds per forward call of ``a(xa)`` and ``b(xb)``: min over ``repeats`` of the mean of ``number``
    calls, the two timed alternately so that both see the same machine load (after one warm-up call each).
    Uses the current torch thread setting."""
    t = interleaved_times({0: lambda: a(xa), 1: lambda: b(xb)}, repeats, warmup=1, number=number)
    return t[0], t[1]


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


@torch.no_grad()
def benchmark(original: nn.Module, thinned: nn.Module, x: torch.Tensor, *, threads: int = 1, repeats: int = 10,
              number: int = 5) -> dict:
    """CPU forward time (ms) of ``original`` vs ``thinned`` on batch ``x``: per conv/linear layer of the
    original (on its own traced input; a layer absent from the thinned model, e.g. inside a removed residual
    block, has thinned time 0), per residual block (top-level children with a ``branch``), and whole model.
    Returns ``{"threads", "batch", "layers": {name: (orig_ms, thin_ms)}, "blocks": {...}, "model": (o, t)}``.
    """
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    was = (original.training, thinned.training)
    original.eval()
    thinned.eval()
    try:
        ins_o, ins_t = layer_inputs(original, x), layer_inputs(thinned, x)
        layers = {}
        for name, xo in ins_o.items():
            mo, mt = original.get_submodule(name), _submodule(thinned, name)
            if mt is not None and name in ins_t:
                to, tt = time_pair(mo, xo, mt, ins_t[name], repeats, number)
            else:                                   # removed (inside a removed residual block)
                to, tt = time_pair(mo, xo, nn.Identity(), xo, repeats, number)[0], 0.0
            layers[name] = (1e3 * to, 1e3 * tt)
        blocks = {}
        block_names = [n for n, m in original.named_children() if isinstance(getattr(m, "branch", None), nn.Module)]
        if block_names:
            feats_o = _child_inputs(original, x)
            feats_t = _child_inputs(thinned, x)
            for n in block_names:
                to, tt = time_pair(original.get_submodule(n), feats_o[n], thinned.get_submodule(n), feats_t[n],
                                   repeats, number)
                blocks[n] = (1e3 * to, 1e3 * tt)
        to, tt = time_pair(original, x, thinned, x, repeats, number)
        whole = (1e3 * to, 1e3 * tt)
    finally:
        torch.set_num_threads(prev)
        original.train(was[0])
        thinned.train(was[1])
    return {"threads": threads, "batch": int(x.shape[0]), "layers": layers, "blocks": blocks, "model": whole}


@torch.no_grad()
def _child_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {}
    for n, m in model.named_children():
        out[n] = x
        x = m(x)
    return out


# ---------------------------------------------------------------------------------------------- one run
def _fit(model, data, cfg, callbacks, run_dir, label, callbacks_for):
    return fit(model, data, cfg, callbacks=list(callbacks) + list(callbacks_for(label)), run_dir=run_dir, resume=True)


def _baseline(cfg: SSLExperiment, data: DataSplits, run_dir: Path, callbacks_for) -> tuple[nn.Module, dict]:
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
    st = _fit(model, data, cfg.train, [], src, "baseline", callbacks_for)
    return model, {"test_acc": st.metrics["test_acc"], "epochs": st.epoch, "source": str(src)}


def analyse(name: str, model: nn.Module, original: nn.Module, data: DataSplits, cfg: SSLExperiment,
            out_dir: Path | None) -> dict:
    """Thin ``model``, check it against the un-thinned model, count FLOPs and time both. ``original`` is
    the baseline (its FLOPs are the 100 %). Returns the variant's result (JSON-able)."""
    model.eval()
    example = data.test.x[: max(cfg.bench_batch, 1)]
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
    bench = benchmark(model, thinned, example, threads=cfg.bench_threads, repeats=cfg.bench_repeats,
                      number=cfg.bench_number)
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
            thinned_columns=_columns(_submodule(thinned, n)),
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
def _time_lowering(thinned: nn.Module, x: torch.Tensor, layers: list[dict], cfg: SSLExperiment) -> None:
    """For every LoweredConv2d of ``thinned``: time it against a plain Conv2d of the same (channel-thinned)
    shape holding its zero columns, i.e. is lowering worth it on top of filter/channel removal? Adds
    ``lowered_ms``, ``same_shape_conv_ms`` and ``lowering_speedup`` to the layer rows."""
    from ..ssl import LoweredConv2d

    ins = layer_inputs(thinned, x)
    prev = torch.get_num_threads()
    torch.set_num_threads(cfg.bench_threads)
    try:
        for r in layers:
            m = _submodule(thinned, r["layer"])
            if not isinstance(m, LoweredConv2d):
                continue
            conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                             bias=m.bias is not None).eval()
            conv.weight.copy_(m.dense_weight())
            if m.bias is not None:
                conv.bias.copy_(m.bias)
            tc, tl = time_pair(conv, ins[r["layer"]], m, ins[r["layer"]], cfg.bench_repeats, cfg.bench_number)
            r.update(lowered_ms=1e3 * tl, same_shape_conv_ms=1e3 * tc, lowering_speedup=tc / tl)
    finally:
        torch.set_num_threads(prev)


def _columns(m: nn.Module | None) -> int:
    """Columns of a layer's lowered weight matrix (kept columns of a LoweredConv2d); 0 if absent."""
    from ..ssl import LoweredConv2d

    if isinstance(m, LoweredConv2d):
        return m.n_columns
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        return m.weight[0].numel()
    return 0


def _is_block(model: nn.Module, name: str) -> bool:
    return isinstance(getattr(model.get_submodule(name), "branch", None), nn.Module)


def _depth(model: nn.Module) -> int:
    from ..ssl import LoweredConv2d

    return sum(1 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, LoweredConv2d)))


def _conv1(model: nn.Module) -> torch.Tensor:
    from ..ssl import LoweredConv2d

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


def run_ssl(cfg: SSLExperiment, run_dir: str | Path, *, data: DataSplits | None = None,
            callbacks_for: Callable[[str], Sequence[Callback]] = lambda label: (), overwrite: bool = False) -> dict:
    """Run (or resume) the whole recipe and write its tables, plots and report. Returns
    ``{"baseline": result, "variants": [result, ...]}`` (see :func:`analyse`).

    ``run_dir`` is a :class:`~sparseforge.runs.RunStore`: a run of other baseline, data or benchmark settings
    is refused naming the fields (unless ``overwrite``); variants may be added, and a finished variant is
    reused only under its own settings."""
    run_dir = Path(run_dir)
    data = data or load_dataset(cfg.dataset, root=cfg.data_root, val_size=cfg.val_size, seed=cfg.data_seed,
                                limit=cfg.limit)
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
            if cfg.finetune_epochs > 0:
                freeze = FreezeZeroGroups(ssl_groups(model, **{k: 1.0 for k in v.coefficients()}))
                st = _fit(model, data, cfg.finetune_config(), [freeze], vdir / "finetune", f"{v.name} finetune",
                          callbacks_for)
                history += st.history
            res = analyse(v.name, model, base_model, data, cfg, vdir)
            res.update(variant=dataclasses.asdict(v), history=history, settings=settings)
            io.write_json(rfile, res)
            results.append(res)
        out = {"baseline": base, "variants": results}
        write_outputs(out, run_dir, cfg)
    return out


def _variant_settings(cfg: SSLExperiment, v: Variant) -> dict:
    """What a variant's result depends on (besides the baseline), as plain JSON values."""
    return json.loads(json.dumps(dict(
        variant=dataclasses.asdict(v), ssl=dataclasses.asdict(cfg.ssl_config()),
        finetune=dataclasses.asdict(cfg.finetune_config()) if cfg.finetune_epochs > 0 else None,
        bench=dict(batch=cfg.bench_batch, repeats=cfg.bench_repeats, number=cfg.bench_number,
                   threads=cfg.bench_threads)), default=str))


def _check_same_settings(name: str, vdir: Path, done: dict | None, now: dict) -> None:
    """A finished variant is reused only when it was run with the settings asked for now."""
    if done == now:
        return
    changed = sorted(f"{part}.{k}" for part in now for k in set((done or {}).get(part) or {}) | set(now[part] or {})
                     if ((done or {}).get(part) or {}).get(k) != (now[part] or {}).get(k))
    raise ConfigError(f"ssl: variant {name!r} in {vdir} was run with other settings "
                      f"({', '.join(changed) or 'none recorded'}); use a new --run-dir or delete {vdir}")


# ---------------------------------------------------------------------------------------------- outputs
def _convs(res: dict) -> list[dict]:
    return [r for r in res["layers"] if r["type"] in ("Conv2d", "LoweredConv2d")]


def _join(vals, fmt="{}") -> str:
    return "—".join(fmt.format(v) for v in vals)


def table_rows(out: dict) -> list[dict]:
    """One row per model (baseline first) with the seed's table columns, conv layers joined by '—'.

    ``filters``, ``channels``, ``filter_size`` are those of the thinned convs (output channels, input
    channels, columns of the lowered weight matrix); ``learned_*_nz`` count the non-zero structures of the
    regularized weights (a conv may have more non-zero input channels than the previous layer keeps
    filters: channels fed by zero filters carry constants that are folded into biases).
    """
    rows = []
    for res in [out["baseline"]] + out["variants"]:
        convs = _convs(res)
        v = res.get("variant", {})
        rows.append(dict(
            model=res["model"], mode=v.get("mode", ""),
            coefficients=",".join([f"{k}={v[k]:g}" for k in KIND_FIELDS if v.get(k)]
                                   + [f"x{m:g}@{n}" for n, m in v.get("layer_scale", ())]),
            test_err=res["test_err"], test_err_thinned=1 - res["test_acc_thinned"], max_abs_diff=res["max_abs_diff"],
            filters=_join((r["thinned_out"] or [0])[0] for r in convs),
            channels=_join((r["thinned_in"] or [0])[0] for r in convs),
            filter_size=_join(r["thinned_columns"] for r in convs),
            learned_filters_nz=_join(r["filters_nz"] for r in convs),
            learned_channels_nz=_join(r["channels_nz"] for r in convs),
            learned_columns_nz=_join(r["columns_nz"] for r in convs),
            conv_flop_pct=_join((100 * r["flop_pct"] for r in convs), "{:.1f}%"),
            conv_speedup=_join((r["speedup"] for r in convs), "{:.2f}x"),
            depth=res["depth"], depth_thinned=res["depth_thinned"],
            params=res["params"], params_thinned=res["params_thinned"],
            flop_pct=res["flop_pct"], time_ms=res["time_ms"], time_thinned_ms=res["time_thinned_ms"],
            speedup=res["speedup"],
        ))
    return rows


def write_outputs(out: dict, run_dir: Path, cfg: SSLExperiment) -> None:
    """table.csv, layers.csv, conv1_filters.png, sparsity.png and report.md in ``run_dir``."""
    rows = table_rows(out)
    io.write_csv(run_dir / "table.csv", rows)
    layers = [r for res in [out["baseline"]] + out["variants"] for r in res["layers"]]
    io.write_csv(run_dir / "layers.csv", layers)
    plot_conv1_filters(out, run_dir / "conv1_filters.png")
    plot_sparsity(out, run_dir / "sparsity.png")
    io.write_text(run_dir / "report.md", report_markdown(out, rows, cfg))


def plot_conv1_filters(out: dict, path: Path) -> Path:
    """One row of conv1 filters per model, each model scaled to its largest |weight|; the middle grey is
    zero, as in the seed's figures. Drawn as one tiled image (fast)."""
    import matplotlib
    import numpy as np

    models = [out["baseline"]] + out["variants"]
    ws = [np.asarray(m["conv1_filters"], dtype=np.float32) for m in models]
    n = max(len(w) for w in ws)
    kh, kw = max(w.shape[1] for w in ws), max(w.shape[2] for w in ws)
    img = np.full((len(ws) * (kh + 1) - 1, n * (kw + 1) - 1), np.nan, dtype=np.float32)
    for i, w in enumerate(ws):
        lim = float(np.abs(w).max()) or 1.0
        for j in range(len(w)):
            img[i * (kh + 1): i * (kh + 1) + w.shape[1], j * (kw + 1): j * (kw + 1) + w.shape[2]] = w[j] / lim
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="white")
    fig, ax = subplots(figsize=(0.35 * n * (kw + 1) / 6 + 1.5, 0.45 * len(ws) * (kh + 1) / 6 + 0.6))
    ax.imshow(np.ma.masked_invalid(img), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([i * (kh + 1) + (kh - 1) / 2 for i in range(len(ws))])
    ax.set_yticklabels([m["model"] for m in models], fontsize=8)
    ax.set_title("conv1 filters (grey = 0)", fontsize=9)
    return save_figure(fig, path)


def plot_sparsity(out: dict, path: Path) -> Path:
    """Row (filter), column (shape) and element sparsity per conv/linear layer, one panel per SSL variant."""
    import numpy as np

    variants = out["variants"] or [out["baseline"]]
    fig, axes = subplots(len(variants), 1, figsize=(max(6.0, 0.45 * len(variants[0]["layers"]) + 2),
                                                         2.6 * len(variants)), squeeze=False)
    for ax, res in zip(axes[:, 0], variants):
        names = [r["layer"] for r in res["layers"]]
        x = np.arange(len(names))
        for k, (key, label) in enumerate([("row_sparsity", "row (filter)"), ("col_sparsity", "column (shape)"),
                                          ("elem_sparsity", "element")]):
            ax.bar(x + (k - 1) * 0.27, [100 * r[key] for r in res["layers"]], 0.27, label=label)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=60 if len(names) > 6 else 0, fontsize=7)
        ax.set_ylim(0, 105)
        ax.set_ylabel("sparsity (%)")
        ax.set_title(f"{res['model']}: error {100 * res['test_err']:.2f}%, FLOPs {100 * res['flop_pct']:.1f}%, "
                     f"depth {res['depth_thinned']}", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _kind(cfg: SSLExperiment) -> str:
    if any(v.depth for v in cfg.variants):
        return "depth"
    if any(v.shape for v in cfg.variants):
        return "shape"
    return "filter"


def report_markdown(out: dict, rows: list[dict], cfg: SSLExperiment) -> str:
    t = cfg.train
    kind = _kind(cfg)
    n_train = "all" if cfg.limit is None else f"{cfg.limit} per split"
    lines = [
        f"# SSL recipe `{cfg.name}`: {cfg.model} on {cfg.dataset}",
        "",
        f"Data: {cfg.dataset}, samples {n_train}. Baseline: {t.epochs} epochs {t.optimizer} lr {t.lr:g} "
        f"({t.lr_schedule}), momentum {t.momentum:g}, weight decay {t.weight_decay:g}, batch {t.batch_size}, seed "
        f"{cfg.seed}. SSL: {cfg.ssl_epochs} epochs from the baseline at lr {cfg.ssl_lr or t.lr:g} (constant) with "
        f"group Lasso, then {cfg.finetune_epochs} fine-tuning epochs with the zero groups frozen. Thinned models "
        "are checked against the regularized model (max |logit difference| on 512 test images).",
        "",
        f"Speed: CPU forward time, batch {cfg.bench_batch}, torch threads {cfg.bench_threads}, min over "
        f"{cfg.bench_repeats} repeats of the mean of {cfg.bench_number} calls, original and thinned timed "
        "alternately; speedup = original (same weights, "
        "not thinned) / thinned. FLOPs = 2 x multiply-accumulates of conv/linear layers per sample; "
        "FLOP % is thinned / baseline.",
        "",
        "## Results",
        "",
    ]
    if kind == "depth":
        lines += [
            "| model | mode | coefficients | error | layers | blocks kept | params | FLOP % | time (ms) | speedup |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r, res in zip(rows, [out["baseline"]] + out["variants"]):
            nb = len(res["blocks"])
            kept = sum(1 for b in res["blocks"].values() if b["kept"])
            lines.append(
                f"| {r['model']} | {r['mode']} | {r['coefficients']} | {100 * r['test_err']:.2f}% | "
                f"{r['depth']}→{r['depth_thinned']} | {kept}/{nb} | {r['params_thinned']:,} | "
                f"{100 * r['flop_pct']:.1f}% | {r['time_thinned_ms']:.2f} | {r['speedup']:.2f}× |")
    else:
        size_col = "filter size" if kind == "shape" else "filter #"
        lines += [
            f"| model | mode | coefficients | error | {size_col} | channel # | FLOP (per conv) | speedup (per conv) "
            "| FLOP (model) | speedup (model) |",
            "|---|---|---|---:|---|---|---|---|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['model']} | {r['mode']} | {r['coefficients']} | {100 * r['test_err']:.2f}% | "
                f"{r['filter_size'] if kind == 'shape' else r['filters']} | {r['channels']} | {r['conv_flop_pct']} | "
                f"{r['conv_speedup']} | {100 * r['flop_pct']:.1f}% | {r['speedup']:.2f}× |")
    if kind != "depth":
        lines += ["", "Filter #, channel # and filter size are those of the thinned convs (conv1—conv2); the "
                  "per-layer table below also gives the non-zero structures of the regularized weights."]
    lines += ["", SEED_TABLES[kind], "", "## Per layer", ""]
    lines += ["| model | layer | thinned as | filters | channels | columns | row / col / elem sparsity | FLOPs | "
              "FLOP % | ms orig | ms thinned | speedup |", "|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for res in [out["baseline"]] + out["variants"]:
        for r in res["layers"]:
            lines.append(
                f"| {r['model']} | {r['layer']} | {r['thinned_type']} | {r['filters_nz']}/{r['filters']} | "
                f"{r['channels_nz']}/{r['channels']} | {r['columns_nz']}/{r['columns']} | "
                f"{100 * r['row_sparsity']:.1f}% / {100 * r['col_sparsity']:.1f}% / {100 * r['elem_sparsity']:.1f}% | "
                f"{r['flops']:,} | {100 * r['flop_pct']:.1f}% | {r['time_ms']:.3f} | {r['time_thinned_ms']:.3f} | "
                + ("removed |" if r["thinned_type"] == "removed" else f"{r['speedup']:.2f}× |"))
    low = [r for res in out["variants"] for r in res["layers"] if "lowering_speedup" in r]
    if low:
        lines += ["", "## Lowered convs (shape-wise thinning) against a Conv2d of the same channel-thinned shape",
                  "", "Both compute the same function; the Conv2d (oneDNN) keeps the zero columns, the lowered conv "
                  "gathers only the kept columns and runs one GEMM.", "",
                  "| model | layer | columns kept | Conv2d ms | lowered ms | lowering speedup |", "|---|---|---|---:|---:|---:|"]
        for r in low:
            lines.append(f"| {r['model']} | {r['layer']} | {r['thinned_columns']} of {r['thinned_in'][0]}x"
                         f"{r['columns'] // max(r['channels'], 1)} | {r['same_shape_conv_ms']:.3f} | "
                         f"{r['lowered_ms']:.3f} | {r['lowering_speedup']:.2f}× |")
    if any(res["blocks"] for res in out["variants"]):
        lines += ["", "## Residual blocks", "", "| model | block | kept | ms orig | ms thinned | speedup |",
                  "|---|---|---|---:|---:|---:|"]
        for res in out["variants"]:
            for n, b in res["blocks"].items():
                sp = f"{b['speedup']:.2f}×" if b["kept"] else "(shortcut only)"
                lines.append(f"| {res['model']} | {n} | {'yes' if b['kept'] else 'removed'} | {b['time_ms']:.3f} | "
                             f"{b['time_thinned_ms']:.3f} | {sp} |")
    lines += ["", "Thinned models: " + ", ".join(
        f"{res['model']}: test error {100 * (1 - res['test_acc_thinned']):.2f}%, max |diff| {res['max_abs_diff']:.2e}"
        + (f", ONNX {res['onnx']}" if "onnx" in res else "") for res in out["variants"]) + ".",
        "", "![conv1 filters](conv1_filters.png)", "", "![sparsity per layer](sparsity.png)", ""]
    return "\n".join(lines)
