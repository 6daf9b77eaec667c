"""A Vision Transformer with pre-defined sparse feed-forward layers, trained from scratch: dense vs sparse.

Two parts, both per feed-forward density (1.0 = the dense model):

* **accuracy** at a width that trains in minutes here (the setting's ``d_model`` / ``d_ff``): test accuracy,
  parameters, training time; each density is a sub-run with its own checkpoint (a stopped study resumes).
* **timing** at a width where the feed-forward dominates (``d_model`` 512, ``d_ff`` 2048, ``batch x tokens``
  >= 4096 in ``medium``): one training step (forward, cross-entropy, backward, Adam step) and one inference
  forward of the whole model, and forward+backward / forward of one feed-forward block alone, on random
  inputs. Every candidate runs once per round, interleaved, and the minimum over rounds is kept; with one
  thread the clock is the calling thread's CPU time, so other processes' load does not count. Ratios are
  against the dense model measured in the same run.

Writes ``table.csv`` (accuracy), ``timing.csv``, ``report.md``, ``accuracy_vs_density.png`` and
``speedup_vs_density.png`` into the run directory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .. import io
from ..data import DataSplits, load_dataset
from ..nn.sparsify import sparsify
from ..nn.transformer import FeedForward, sparse_vit
from ..runs import RunStore
from ..runs.plots import plot_metric_vs_density, save_figure, subplots
from ..runs.timing import interleaved_times
from ..train import Callback, TrainConfig, fit

__all__ = ["SETTINGS", "TransformerStudyConfig", "run_transformer_study", "measure_timing"]


@dataclass(frozen=True)
class TransformerStudyConfig:
    """Settings of ``sparseforge study transformer`` (see :data:`SETTINGS`)."""

    densities: tuple[float, ...] = (1.0, 0.5, 0.25, 0.1)
    proj_density: float | None = None  # also make the attention projections sparse
    family: str = "structured"
    # accuracy part
    dataset: str = "mnist"
    limit: int | None = 2000
    epochs: int = 1
    batch_size: int = 128
    lr: float = 2e-3
    patch: int = 7
    d_model: int = 32
    d_ff: int = 128
    depth: int = 1
    heads: int = 4
    # timing part
    timing_d_model: int = 64
    timing_d_ff: int = 256
    timing_depth: int = 1
    timing_batch: int = 8
    timing_image: int = 28  # square images of this side; tokens = (side / patch)**2 + 1
    timing_repeats: int = 2
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.densities or any(not isinstance(d, (int, float)) or not 0 < d <= 1 for d in self.densities):
            raise ValueError(f"densities={list(self.densities)}: give densities in (0, 1]")
        if self.threads < 1:
            raise ValueError(f"threads={self.threads} must be >= 1")

    @property
    def timing_tokens(self) -> int:
        return self.timing_batch * ((self.timing_image // self.patch) ** 2 + 1)


#: ``tiny``: seconds (CI); ``medium``: accuracy at d_model 64 / d_ff 256 on 10k MNIST images, timing at
#: d_model 512 / d_ff 2048 with 64 images x 65 tokens = 4160 tokens.
SETTINGS: dict[str, TransformerStudyConfig] = {
    "tiny": TransformerStudyConfig(),
    "medium": TransformerStudyConfig(limit=10000, epochs=4, d_model=64, d_ff=256, depth=2, timing_d_model=512,
                                     timing_d_ff=2048, timing_depth=2, timing_batch=64, timing_image=56,
                                     timing_repeats=3),
}


def _label(density: float) -> str:
    return "dense" if density == 1.0 else f"ff{100 * density:g}"


def _train_rows(cfg: TransformerStudyConfig, store: RunStore, data: DataSplits,
                callbacks_for: Callable[[str], Sequence[Callback]]) -> list[dict]:
    rows = []
    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                            lr_schedule="cosine")
    for rho in cfg.densities:
        label = _label(rho)
        done = store.result(label)
        if done is not None:
            rows.append(done)
            continue
        torch.manual_seed(cfg.seed)
        model, rep = sparse_vit(data.sample_shape, data.n_classes, ff_density=rho,
                                proj_density=cfg.proj_density if rho != 1.0 else None, family=cfg.family,
                                seed=cfg.seed, patch=cfg.patch, d_model=cfg.d_model, d_ff=cfg.d_ff,
                                depth=cfg.depth, heads=cfg.heads)
        t0 = time.perf_counter()
        state = fit(model, data, train_cfg, callbacks=callbacks_for(label), run_dir=store.path(label), resume=True,
                    settings={"transformer": store.hash, "label": label})
        ff = [r for r in rep.layers if ".ff." in r.name] if rep else []
        row = dict(label=label, ff_density=ff[0].density if ff else 1.0, requested=rho,
                   params=sum(p.numel() for p in model.parameters()),
                   ff_params=sum(p.numel() for n, p in model.named_parameters() if ".ff." in n),
                   test_acc=state.metrics["test_acc"], val_acc=state.history[-1]["val_acc"],
                   epochs=len(state.history), train_time_s=time.perf_counter() - t0)
        store.save_result(label, row)
        rows.append(row)
    return rows


def measure_timing(cfg: TransformerStudyConfig) -> list[dict]:
    """Seconds per training step / inference forward of the whole model and of one feed-forward block, per
    density, at the setting's timing width (random inputs; ratios vs the dense model of the same run)."""
    torch.manual_seed(cfg.seed)
    shape = (1, cfg.timing_image, cfg.timing_image)
    x_img = torch.rand(cfg.timing_batch, *shape)
    y = torch.randint(0, 10, (cfg.timing_batch,))
    n_tok = cfg.timing_tokens // cfg.timing_batch
    x_tok = torch.randn(cfg.timing_batch, n_tok, cfg.timing_d_model)
    fns: dict = {}
    for rho in cfg.densities:
        label = _label(rho)
        model, _ = sparse_vit(shape, 10, ff_density=rho, proj_density=cfg.proj_density if rho != 1.0 else None,
                              family=cfg.family, seed=cfg.seed, patch=cfg.patch, d_model=cfg.timing_d_model,
                              d_ff=cfg.timing_d_ff, depth=cfg.timing_depth, heads=8)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        ff = FeedForward(cfg.timing_d_model, cfg.timing_d_ff)
        if rho != 1.0:
            sparsify(ff, density=rho, family=cfg.family, seed=cfg.seed, dense_last=False)

        def model_train(model=model, opt=opt):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x_img), y).backward()
            opt.step()

        def model_infer(model=model):
            with torch.no_grad():
                model(x_img)

        def ff_train(ff=ff):
            ff.zero_grad(set_to_none=True)
            ff(x_tok).sum().backward()

        def ff_infer(ff=ff):
            with torch.no_grad():
                ff(x_tok)

        fns.update({(label, "model", "train"): model_train, (label, "model", "infer"): model_infer,
                    (label, "ff", "train"): ff_train, (label, "ff", "infer"): ff_infer})
    clock = "cpu" if torch.get_num_threads() == 1 else "wall"
    t = interleaved_times(fns, cfg.timing_repeats, warmup=1, clock=clock)
    rows = []
    for rho in cfg.densities:
        label = _label(rho)
        row = dict(label=label, ff_density=rho, d_model=cfg.timing_d_model, d_ff=cfg.timing_d_ff,
                   tokens=cfg.timing_tokens, threads=torch.get_num_threads(), clock=clock)
        for part in ("model", "ff"):
            for kind in ("train", "infer"):
                s = t[(label, part, kind)]
                row[f"{part}_{kind}_ms"] = 1e3 * s
                row[f"{part}_{kind}_speedup"] = t[("dense", part, kind)] / s if ("dense", part, kind) in t else None
        rows.append(row)
    return rows


def run_transformer_study(
    cfg: TransformerStudyConfig,
    run_dir: str | Path,
    *,
    data: DataSplits | None = None,
    callbacks_for: Callable[[str], Sequence[Callback]] = lambda label: (),
    notify: Callable[[str], None] = lambda msg: None,
    overwrite: bool = False,
) -> dict:
    """Train every density (resuming finished ones), measure timing once, write the outputs.

    ``run_dir`` is a :class:`~sparseforge.runs.RunStore` tied to ``cfg``: one made with other settings is
    refused naming the fields, unless ``overwrite``. Returns ``{"accuracy": rows, "timing": rows}``.
    """
    run_dir = Path(run_dir)
    if 1.0 not in cfg.densities:
        cfg = replace(cfg, densities=(1.0, *cfg.densities))  # ratios need the dense model of the same run
    with RunStore(run_dir, cfg, command="study transformer", overwrite=overwrite) as store:
        data = data or load_dataset(cfg.dataset, seed=cfg.seed, limit=cfg.limit)
        acc = _train_rows(cfg, store, data, callbacks_for)
        timing = store.result("timing")
        if timing is None:
            notify(f"timing at d_model {cfg.timing_d_model}, d_ff {cfg.timing_d_ff}, {cfg.timing_tokens} tokens")
            timing = measure_timing(cfg)
            store.save_result("timing", timing)
        io.write_csv(run_dir / "table.csv", acc)
        io.write_csv(run_dir / "timing.csv", timing)
        _plots(acc, timing, run_dir, cfg)
        io.write_text(run_dir / "report.md", report_markdown(cfg, acc, timing))
    return {"accuracy": acc, "timing": timing}


def _plots(acc: list[dict], timing: list[dict], run_dir: Path, cfg: TransformerStudyConfig) -> None:
    dense = next(r for r in acc if r["label"] == "dense")
    plot_metric_vs_density([r for r in acc if r["label"] != "dense"], run_dir / "accuracy_vs_density.png",
                           x="ff_density", title=f"ViT on {cfg.dataset}, d_model {cfg.d_model}, d_ff {cfg.d_ff}",
                           baseline=dense["test_acc"])
    fig, ax = subplots(figsize=(6, 4))
    xs = [100 * r["ff_density"] for r in timing]
    for key, name in (("model_train_speedup", "whole model, train step"), ("model_infer_speedup", "whole model, inference"),
                      ("ff_train_speedup", "FF block, fwd+bwd"), ("ff_infer_speedup", "FF block, forward")):
        ax.plot(xs, [r[key] for r in timing], marker="o", label=name)
    ax.axhline(1.0, ls="--", c="gray")
    ax.set_xscale("log")
    ax.set_xlabel("feed-forward density (%)")
    ax.set_ylabel("speed-up vs dense (same run)")
    ax.set_title(f"d_model {cfg.timing_d_model}, d_ff {cfg.timing_d_ff}, {cfg.timing_tokens} tokens")
    ax.legend()
    save_figure(fig, run_dir / "speedup_vs_density.png")


def report_markdown(cfg: TransformerStudyConfig, acc: list[dict], timing: list[dict]) -> str:
    dense = next(r for r in acc if r["label"] == "dense")
    t0 = timing[0]
    lines = [
        "# A Transformer with pre-defined sparse feed-forward layers", "",
        f"ViT (patch {cfg.patch}, d_model {cfg.d_model}, d_ff {cfg.d_ff}, depth {cfg.depth}, {cfg.heads} heads) "
        f"trained from scratch on {cfg.dataset}{f' (first {cfg.limit} samples per split)' if cfg.limit else ''}, "
        f"{cfg.epochs} epoch(s), Adam lr {cfg.lr:g} cosine, batch {cfg.batch_size}, seed {cfg.seed}. "
        f"Feed-forward layers {cfg.family}"
        + (f", attention projections at {100 * cfg.proj_density:g}%" if cfg.proj_density else "")
        + "; embedding and head dense.", "",
        "| FF density | params | FF params | test acc | vs dense | train time (s) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in acc:
        lines.append(f"| {100 * r['ff_density']:.3g}% | {r['params']:,} | {r['ff_params']:,} | "
                     f"{100 * r['test_acc']:.2f}% | {100 * (r['test_acc'] - dense['test_acc']):+.2f} | "
                     f"{r['train_time_s']:.1f} |")
    lines += [
        "", f"Timing at d_model {t0['d_model']}, d_ff {t0['d_ff']}, depth {cfg.timing_depth}, {t0['tokens']} tokens "
        f"per batch, {t0['threads']} thread(s), {t0['clock']} clock, min of {cfg.timing_repeats} interleaved rounds "
        "(ms; speed-up = dense time / this time, same run):", "",
        "| FF density | model train step | speed-up | model inference | speed-up | FF fwd+bwd | speed-up | FF forward | speed-up |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in timing:
        cells = [f"{r[f'{p}_{k}_ms']:.1f} | {r[f'{p}_{k}_speedup']:.2f}x" for p in ("model", "ff") for k in ("train", "infer")]
        lines.append(f"| {100 * r['ff_density']:.3g}% | " + " | ".join(cells) + " |")
    slow = [r for r in timing if r["label"] != "dense" and min(r["model_train_speedup"], r["model_infer_speedup"]) < 1]
    lines += ["", "Where sparse does not pay: " + (
        ", ".join(f"{100 * r['ff_density']:.3g}% (model train {r['model_train_speedup']:.2f}x, "
                  f"inference {r['model_infer_speedup']:.2f}x)" for r in slow) if slow else
        "none: every sparse density measured here is at least as fast as dense for the whole model")
        + ". Attention, layer norms, the embedding and the head stay dense, so the whole-model gain is bounded "
          "by the feed-forward share of the time.",
        "", "![accuracy](accuracy_vs_density.png) ![speed-up](speedup_vs_density.png)", ""]
    return "\n".join(lines)
