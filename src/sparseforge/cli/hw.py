"""``sparseforge hw ...``: map a pre-defined sparse network onto the seeds' edge-processing hardware.

Registered onto the main app by ``register(app)``::

    sparseforge hw plan --net 1024,64,32 --fan-out 4,16 --z 128,32          # pipeline: 36 clocks per input
    sparseforge hw clashes --family structured                                # clashes and stall cycles
    sparseforge hw export --out-dir runs/hw_export                            # $readmemh files + hardware.json
    sparseforge hw export --from-run runs/hw_fixed/w10_i2 --out-dir runs/hw_trained   # trained weights
    sparseforge hw sweep --out-dir runs/hw_sweep                              # design space over z: table + PNG
    sparseforge hw fixed --limit 10000 --epochs 3 --word-bits 8,10,12,16      # fixed point vs float on MNIST

Every network flag defaults to the FPGA configuration of the seeds: ``N = (1024, 64, 32)``,
``d_out = (4, 16)``, ``z = (128, 32)``. Impossible configurations (z not dividing, an unbalanced pipeline
where balance is required, words too short or too long) print one line ``error: ...`` naming the parameter
and exit with status 2.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import typer

from .console import err, out, pct as _pct, rich_table, typer_app
from .parse import UserError, choice, input_path, ints, number, output_dir
from ..config import load_yaml, merge, parse, resolve_recipe

FPGA_NET, FPGA_FAN_OUT, FPGA_Z = "1024,64,32", "4,16", "128,32"


def _network(net: str, fan_out: str, z: str) -> tuple[list[int], list[int], list[int]]:
    sizes, d, zs = ints(net, "net", 1), ints(fan_out, "fan-out", 1), ints(z, "z", 1)
    assert sizes is not None and d is not None and zs is not None
    J = len(sizes) - 1
    if J < 1:
        raise UserError(f"--net: need at least two layers, got {sizes}")
    for flag, v in (("fan-out", d), ("z", zs)):
        if len(v) != J:
            raise UserError(f"--{flag}: N_net={sizes} has {J} junctions, got {len(v)} values {v}")
    return sizes, d, zs


def _clock(fill_clocks: int, proc_time: int):
    from ..hardware import ClockModel

    return ClockModel(fill_clocks=fill_clocks, proc_time=proc_time)


def _si(v: float, unit: str) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}".strip()


# ------------------------------------------------------------------------------------------ fixed spec
def resolve_config(path: Path) -> Path:
    """``path`` itself, or the packaged recipe of that name."""
    return resolve_recipe(path, "hw_")


# ---------------------------------------------------------------------------------------------- commands
def register(app: typer.Typer) -> None:
    """Add the ``hw`` command group to ``app``."""
    hw = typer_app(help="Hardware model: pipeline plan, clashes, export, design sweep, fixed point.")
    app.add_typer(hw, name="hw")

    @hw.command("plan")
    def plan(
        net: str = typer.Option(FPGA_NET, help="layer sizes N_0,...,N_J"),
        fan_out: str = typer.Option(FPGA_FAN_OUT, help="out-degree per junction"),
        z: str = typer.Option(FPGA_Z, help="degree of parallelism per junction (edges per cycle)"),
        clock_mhz: float = typer.Option(100.0, min=1e-6, help="clock frequency (MHz) for latency and throughput"),
        mode: str = typer.Option("train", help="train (FF, BP, UP pipelined) or infer (FF only)"),
        fill_clocks: int = typer.Option(2, min=0, help="clocks to start and drain a pass (the RTL's +2)"),
        proc_time: int = typer.Option(2, min=0, help="arithmetic latency after the memories (the RTL's PROCTIME)"),
        require_balanced: bool = typer.Option(False, help="fail unless every junction needs W_i/z_i equal cycles"),
        as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
    ) -> None:
        """Pipeline table: cycles per junction, block cycle, latency, throughput, speedups, balance advice."""
        from ..hardware import estimate_resources, plan_pipeline
        from ..studies.fixed_point import plan_rows

        sizes, d, zs = _network(net, fan_out, z)
        choice(mode, "mode", ("train", "infer"))
        number(clock_mhz, "clock-mhz", low=0, low_open=True)
        clock = _clock(fill_clocks, proc_time)
        rep = plan_pipeline(sizes, d, zs, mode=mode, clock=clock, require_balanced=require_balanced)  # type: ignore[arg-type]
        res = estimate_resources(sizes, d, zs, mode=mode, clock=clock)  # type: ignore[arg-type]
        rows = plan_rows(rep, clock_mhz * 1e6)
        s = rows["summary"]
        s.update(memory_bits=res.memory_bits, memory_blocks=res.blocks)
        banks = [dataclasses.asdict(b) for b in rep.layers]
        if as_json:
            typer.echo(json.dumps(dict(rows, layers=banks), indent=2))
            return
        short = dict(junction="j", clocks_per_pass="clocks/pass", stall_cycles="stalls", multipliers="mults")
        out.print(rich_table([{short.get(k, k): v for k, v in r.items()} for r in rows["junctions"]],
                         title=f"N_net = {tuple(sizes)}, d_out = {tuple(d)}, z = {tuple(zs)} ({mode})"))
        J = len(rep.junctions)
        procs = "FF, BP and UP" if mode == "train" else "FF"
        out.print(f"block cycle: {rep.block_cycles} cycles + {clock.overhead} overhead = {rep.block_clocks} clocks "
                  f"per input once the pipeline is full")
        out.print(f"latency: {rep.latency_blocks} block cycles = {rep.latency_clocks} clocks = "
                  f"{s['latency_us']:.3g} us at {clock_mhz:g} MHz")
        out.print(f"throughput: {_si(s['throughput_inputs_per_s'], 'inputs/s')} at {clock_mhz:g} MHz")
        out.print(f"speedup vs running {procs} of the {J} junctions one after the other: "
                  f"{rep.speedup_vs_sequential:.2f}x ({rep.sequential_clocks_per_input} clocks per input)")
        out.print(f"speedup vs one edge per cycle (z = 1, not pipelined): {rep.speedup_vs_edge_serial:.1f}x "
                  f"({rep.edge_serial_clocks_per_input} clocks per input)")
        out.print(f"multipliers: {rep.multipliers}; memory: {res.memory_bits / 1000:.1f} kbit in {res.blocks} "
                  f"block RAMs (10-bit words)")
        out.print(rich_table(banks, title="banks per layer (inputs in flight)"))
        if rep.balanced:
            out.print("balanced: every junction needs the same W_i/z_i cycles and none stalls")
        else:
            out.print("[yellow]unbalanced:[/yellow]")
            for a in rep.advice:
                out.print(f"  - {a}")

    @hw.command("clashes")
    def clashes(
        family: str = typer.Option("clash_free", help="pattern family: structured, random, clash_free (or any registered)"),
        net: str = typer.Option(FPGA_NET, help="layer sizes"),
        fan_out: str = typer.Option(FPGA_FAN_OUT, help="out-degree per junction"),
        z: str = typer.Option(FPGA_Z, help="degree of parallelism per junction"),
        seed: int = typer.Option(0, min=0),
        interleaver: int = typer.Option(1, min=1, max=3, help="clash_free only: interleaver 1, 2 or 3"),
        dither: bool = typer.Option(False, help="clash_free only: random lane-to-bank permutation per cycle"),
        fill_clocks: int = typer.Option(2, min=0),
        proc_time: int = typer.Option(2, min=0),
        show: int = typer.Option(0, min=0, help="also list the first SHOW clashes of every junction"),
        as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    ) -> None:
        """Build a pattern of the chosen family and count its memory clashes and stall cycles."""
        from ..hardware import junction_model, pipeline_from_patterns, plan_pipeline
        from ..topology import design
        from ..topology.clash_free import design_clash_free
        from ..studies.fixed_point import clash_rows

        sizes, d, zs = _network(net, fan_out, z)
        if family == "clash_free":
            topo = design_clash_free(sizes, fan_out=d, z=zs, interleaver=interleaver, dither=dither, seed=seed)  # type: ignore[arg-type]
        else:
            topo = design(sizes, fan_out=d, family=family, seed=seed)
        rows = clash_rows(topo, zs)
        clock = _clock(fill_clocks, proc_time)
        rep = pipeline_from_patterns(topo, zs, clock=clock)
        ideal = plan_pipeline(sizes, d, zs, clock=clock).block_clocks
        total = dict(clashes=sum(r["clashes"] for r in rows), stall_cycles=sum(r["stall_cycles"] for r in rows),
                     block_clocks=rep.block_clocks, clash_free_block_clocks=ideal)
        listed = []
        if show:
            for i, p in enumerate(topo.patterns):
                rb = zs[i + 1] if i + 1 < len(zs) else zs[i]
                for c in junction_model(p, zs[i], right_banks=rb).clashes[:show]:
                    listed.append(dict(junction=i + 1, cycle=c.cycle, side=c.side, bank=c.bank,
                                       nodes=",".join(map(str, c.nodes)), extra_clocks=c.extra_clocks))
        if as_json:
            typer.echo(json.dumps(dict(family=family, junctions=rows, total=total, listed=listed), indent=2))
            return
        show_rows = [dict(j=r["junction"], layers=f"{r['n_in']}->{r['n_out']}", edges=r["edges"], z=r["z"],
                          cycles=r["cycles"], clashes=r["clashes"], left=r["left_clashes"], right=r["right_clashes"],
                          extra_reads=r["extra_reads"], stalls=r["stall_cycles"],
                          free="yes" if r["clash_free"] else "no") for r in rows]
        out.print(rich_table(show_rows, title=f"family {family}: N_net = {tuple(sizes)}, d_out = {tuple(d)}, z = {tuple(zs)}"))
        if listed:
            out.print(rich_table(listed, title="first clashes (memory read more than once in one cycle)"))
        out.print(f"clashes: {total['clashes']}, stall cycles per pass: {total['stall_cycles']}; block cycle "
                  f"{rep.block_clocks} clocks (clash-free: {ideal})")

    @hw.command("export")
    def export(
        out_dir: Path = typer.Option(Path("runs/hw_export"), help="where the .hex files and hardware.json go"),
        from_run: Optional[Path] = typer.Option(None, help="a fixed-point study sub-run (e.g. runs/hw_fixed/w10_i2): "
                                                "export its trained network (no network flags then)"),
        net: Optional[str] = typer.Option(None, help=f"layer sizes [default: {FPGA_NET}]"),
        fan_out: Optional[str] = typer.Option(None, help=f"out-degree per junction [default: {FPGA_FAN_OUT}]"),
        z: Optional[str] = typer.Option(None, help=f"degree of parallelism per junction [default: {FPGA_Z}]"),
        seed: int = typer.Option(0, min=0, help="seed of the pattern and the initial weights"),
        interleaver: int = typer.Option(1, min=1, max=3, help="interleaver 1, 2 or 3"),
        dither: bool = typer.Option(False),
        word_bits: int = typer.Option(10, min=2, max=32, help="weight word length (bits)"),
        int_bits: int = typer.Option(2, min=0, help="weight integer bits (sign excluded)"),
        fill_clocks: int = typer.Option(2, min=0),
        proc_time: int = typer.Option(2, min=0),
    ) -> None:
        """Write the $readmemh memory files and hardware.json of a clash-free network (initial or trained)."""
        from ..hardware import FixedFormats, FixedPoint, export_network, init_fixed_mlp
        from ..topology.clash_free import design_clash_free
        from ..studies.fixed_point import load_trained_fixed

        output_dir(out_dir, "out-dir")
        input_path(from_run, "from-run")
        clock = _clock(fill_clocks, proc_time)
        if from_run is not None:
            if any(v is not None for v in (net, fan_out, z)):
                raise UserError("--from-run takes the network from the run; drop --net, --fan-out and --z")
            fx, cfg, zs = load_trained_fixed(from_run)
            extra = dict(source=str(from_run), study=cfg.model_dump(mode="json"))
        else:
            sizes, d, zs = _network(net or FPGA_NET, fan_out or FPGA_FAN_OUT, z or FPGA_Z)
            w = FixedPoint(word_bits, int_bits)
            topo = design_clash_free(sizes, fan_out=d, z=zs, interleaver=interleaver, dither=dither, seed=seed)  # type: ignore[arg-type]
            fx = init_fixed_mlp(topo, FixedFormats(weight=w, act=w, preact=w, delta=w), seed=seed)
            extra = dict(seed=seed, interleaver=interleaver, dither=dither, weights="initial (init_fixed_mlp)")
        path = export_network(out_dir, fx, list(zs), clock=clock, extra=extra)
        summary = json.loads(path.read_text())
        rows = [dict(j=j["junction"], layers=f"{j['n_in']}->{j['n_out']}", z=j["z"], cycles=j["cycles"],
                     weights=f"{j['weight_memories']}x{j['weight_depth']}",
                     left=f"{j['left_memories']}x{j['left_depth']}", addr_bits=j["address_bits"],
                     files=len(j["files"]["weight"]) + len(j["files"]["addr"]) + len(j["files"]["lane"]) + 1)
                for j in summary["junctions"]]
        wf = summary["weight_format"]
        out.print(rich_table(rows, title=f"export: {wf['word_bits']}-bit weights ({wf['int_bits']} integer bits), "
                         f"block cycle {summary['pipeline']['block_clocks']} clocks"))
        out.print(f"wrote {sum(r['files'] for r in rows)} .hex files and {path}")

    @hw.command("sweep")
    def sweep(
        net: str = typer.Option(FPGA_NET, help="layer sizes"),
        fan_out: str = typer.Option(FPGA_FAN_OUT, help="out-degree per junction"),
        mode: str = typer.Option("train", help="train or infer"),
        word_bits: int = typer.Option(10, min=1, help="bits per weight, activation and delta word"),
        all_z: bool = typer.Option(False, "--all", help="every combination of valid z, not only balanced ones"),
        interleaver: str = typer.Option("full", help="address tables: full (any clash-free pattern), 1, 2 or 3"),
        dither: bool = typer.Option(False),
        clock_mhz: float = typer.Option(100.0, min=1e-6, help="clock (MHz) for the throughput column"),
        fill_clocks: int = typer.Option(2, min=0),
        proc_time: int = typer.Option(2, min=0),
        out_dir: Path = typer.Option(Path("runs/hw_sweep"), help="writes z_sweep.csv and z_sweep.png here"),
        top: int = typer.Option(30, min=1, help="rows to print (all are in the CSV)"),
        as_json: bool = typer.Option(False, "--json", help="print JSON rows instead of a table"),
    ) -> None:
        """Design-space sweep over z: clocks per input against memory, block RAMs and multipliers."""
        from .. import io
        from ..hardware import WordLengths, plot_z_sweep, sweep_z
        from ..studies.fixed_point import sweep_rows

        output_dir(out_dir, "out-dir")
        sizes, d = ints(net, "net", 1), ints(fan_out, "fan-out", 1)
        if len(sizes) < 2 or len(d) != len(sizes) - 1:
            raise UserError(f"--net {net} --fan-out {fan_out}: need at least two layer sizes and one out-degree per "
                            f"junction ({max(len(sizes) - 1, 1)})")
        choice(mode, "mode", ("train", "infer"))
        choice(interleaver, "interleaver", ("full", "1", "2", "3"))
        number(clock_mhz, "clock-mhz", low=0, low_open=True)
        il = None if interleaver == "full" else int(interleaver)
        points = sweep_z(sizes, d, words=WordLengths(word_bits, word_bits, word_bits), mode=mode,  # type: ignore[arg-type]
                         clock=_clock(fill_clocks, proc_time), balanced_only=not all_z, interleaver=il, dither=dither)
        if not points:
            raise UserError(f"no valid z configuration for --net {net} --fan-out {fan_out}"
                             + ("" if all_z else " with a balanced pipeline; try --all"))
        rows = sweep_rows(points, clock_mhz * 1e6)
        csv = io.write_csv(out_dir / "z_sweep.csv", rows)
        png = plot_z_sweep(points, out_dir / "z_sweep.png",
                           title=f"N={tuple(sizes)}, d_out={tuple(d)}, {mode}, {word_bits}-bit words")
        if as_json:
            typer.echo(json.dumps(dict(rows=rows, csv=str(csv), png=str(png)), indent=2))
            return
        short = [dict(z=r["z"], cycles=r["block_cycles"], clocks=r["clocks_per_input"],
                      **{"in/s": _si(r["throughput_inputs_per_s"], "")}, kbit=f"{r['memory_kbit']:.1f}",
                      mems=r["memories"], brams=r["blocks"], mults=r["multipliers"],
                      bal="yes" if r["balanced"] else "no") for r in rows[:top]]
        out.print(rich_table(short, title=f"z sweep ({len(rows)} configurations, fastest first; {clock_mhz:g} MHz)"))
        out.print(f"wrote {csv} and {png}")

    @hw.command("fixed")
    def fixed(
        config: Optional[Path] = typer.Option(None, help="YAML config, or a packaged recipe (hw_fixed_mnist, hw_fixed_tiny)"),
        net: Optional[str] = typer.Option(None, help=f"layer sizes [default: {FPGA_NET}; MNIST padded to 32x32]"),
        fan_out: Optional[str] = typer.Option(None, help=f"out-degree per junction [default: {FPGA_FAN_OUT}]"),
        z: Optional[str] = typer.Option(None, help=f"parallelism per junction [default: {FPGA_Z}]"),
        dataset: Optional[str] = typer.Option(None, help="mnist, fashion-mnist, digits"),
        data_root: Optional[Path] = typer.Option(None, help="directory with the dataset files"),
        limit: Optional[int] = typer.Option(None, help="training samples [default: 10000]"),
        test_limit: Optional[int] = typer.Option(None, help="test samples [default: all]"),
        epochs: Optional[int] = typer.Option(None, help="[default: 3]"),
        batch_size: Optional[int] = typer.Option(None, help="inputs per update [default: 1, online like the hardware]"),
        lr_shift: Optional[int] = typer.Option(None, help="learning rate 2**-lr_shift [default: 3]"),
        word_bits: Optional[str] = typer.Option(None, help="word lengths to train [default: 8,10,12,16]"),
        int_bits: Optional[str] = typer.Option(None, help="integer bits (sign excluded) to sweep with every word length [default: 2,3]"),
        input_bits: Optional[int] = typer.Option(None, help="bits of the unsigned input words [default: 8]"),
        rounding: Optional[str] = typer.Option(None, help="nearest or stochastic [default: nearest]"),
        hidden: Optional[str] = typer.Option(None, help="sigmoid or relu [default: sigmoid]"),
        no_float: bool = typer.Option(False, "--no-float", help="skip the float64 baseline"),
        seed: Optional[int] = typer.Option(None, min=0, help="pattern, initial weights and sample order [default: 0]"),
        run_dir: Path = typer.Option(Path("runs/hw_fixed"), help="run directory (resumes a study of the same settings)"),
        overwrite: bool = typer.Option(False, help="clear --run-dir (a study of other settings) and start again"),
        quiet: bool = typer.Option(False, help="no progress output"),
    ) -> None:
        """Train the same clash-free sparse MLP in float64 and in bit-accurate fixed point; accuracy per epoch."""
        from ..studies.fixed_point import FixedStudyConfig, run_fixed_study, validate_study

        output_dir(run_dir, "run-dir")
        base = load_yaml(resolve_config(config), FixedStudyConfig).model_dump(mode="json") if config else {}
        flags = {
            "net": ints(net, "net"), "fan_out": ints(fan_out, "fan-out"), "z": ints(z, "z"),
            "dataset": dataset, "data_root": str(data_root) if data_root else None, "limit": limit,
            "test_limit": test_limit, "epochs": epochs, "batch_size": batch_size, "lr_shift": lr_shift,
            "word_bits": ints(word_bits, "word-bits"), "int_bits": ints(int_bits, "int-bits"), "input_bits": input_bits,
            "rounding": rounding, "hidden": hidden, "seed": seed,
            "float_baseline": False if no_float else None,
        }
        spec = parse(FixedStudyConfig, merge(base, {k: v for k, v in flags.items() if v is not None}))
        cfg = spec
        validate_study(cfg)

        def notify(label: str, row: dict) -> None:
            if not quiet:
                err.print(f"{label:>10} epoch {row['epoch']}: test acc {100 * row['test_acc']:.2f}%, loss "
                          f"{row['train_loss']:.4f}, weights changed {_pct(row['weights_changed'])}, "
                          f"saturated {row['saturated']:,} ({row['epoch_time_s']:.1f} s)")

        if not quiet:
            err.print(f"hw fixed: N={cfg.net}, word lengths {list(cfg.word_bits)} x integer bits {list(cfg.int_bits)}"
                      f"{' + float' if cfg.float_baseline else ''}, {cfg.epochs} epochs -> {run_dir}")
        result = run_fixed_study(cfg, run_dir, notify=notify, overwrite=overwrite)
        rows = result["summary"]
        show = [dict(run=r["label"], word_bits=r["word_bits"] or "float64", int_bits=r["int_bits"], frac_bits=r["frac_bits"],
                     test_acc=r["test_acc"], vs_float=r["vs_float"] if r["label"] != "float" else None,
                     weights_changed=r["weights_changed_last_epoch"], s=r["train_time_s"])
                for r in rows]
        out.print(rich_table(show, title=f"fixed point vs float after {cfg.epochs} epochs (test accuracy)",
                         fmt={"test_acc": _pct, "vs_float": lambda v: f"{100 * v:+.2f}", "weights_changed": _pct,
                              "s": lambda v: f"{v:.0f}"}))
        out.print(f"wrote {run_dir}/report.md, epochs.csv, summary.csv, fixed_vs_float.png")
