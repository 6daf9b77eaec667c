"""``sparseforge topology``: design a pre-defined sparse network of any family and show it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .console import err, notice_adjusted, out, pct, rich_table
from .parse import UserError, densities, file_arg, ints, output_file
from .parse import radices as parse_radices


# the pattern-family options, shared with `train` (one definition; typer reads them as parameter defaults)
FAMILY_NAMES = "structured, random, clash_free, expander, grouped, block, radix"
Z = typer.Option(None, min=1, help="clash_free: degree of parallelism (memory banks)")
GROUP = typer.Option(None, min=1, help="grouped: right nodes sharing one index list")
BLOCK = typer.Option(None, min=1, help="block: size b of the dense b x b blocks (4, 8 or 16)")


def family_options(family: Optional[str], z: Optional[int], group: Optional[int], block: Optional[int]) -> dict:
    """The family options given as flags (``--z``, ``--group``, ``--block``), by name; each is refused (naming
    the flag) with another ``--family`` given. Without ``--family`` (a config's family), the pattern layer
    checks them."""
    given = {k: v for k, v in (("z", z), ("group", group), ("block", block)) if v is not None}
    for flag, needs in (("z", "clash_free"), ("group", "grouped"), ("block", "block")):
        if flag in given and family is not None and family != needs:
            raise UserError(f"--{flag} applies to --family {needs} only (got --family {family})")
    return given


def register(app: typer.Typer) -> None:
    """Add the ``topology`` command to ``app``."""

    @app.command()
    def topology(
        net: str = typer.Option("784,112,10", help="layer sizes N_0,...,N_L"),
        fan_out: Optional[str] = typer.Option(None, help="out-degree per junction, e.g. 42,10"),
        fan_in: Optional[str] = typer.Option(None, help="in-degree per junction"),
        density: Optional[str] = typer.Option(None, help="density per junction (or one for all), e.g. 0.2 or 20%"),
        rho_net: Optional[float] = typer.Option(None, help="overall density; degrees allocated with the last junction dense"),
        family: str = typer.Option("structured", help=FAMILY_NAMES),
        z: Optional[int] = Z,
        group: Optional[int] = GROUP,
        block: Optional[int] = BLOCK,
        radices: Optional[str] = typer.Option(None, help="RadiX-Net radix lists, e.g. 10,10 or 2,2,2;2,2,2 (sizes follow)"),
        widths: Optional[str] = typer.Option(None, help="RadiX-Net dense widths B_0,...,B_L (default all 1)"),
        seed: int = typer.Option(0, min=0),
        analyze: bool = typer.Option(False, "--analyze", help="degrees, path counts, spectral gap, scatter"),
        plot: Optional[Path] = typer.Option(None, metavar="<path>", parser=file_arg("plot", "adjacency.png"),
                                            help="write the adjacency matrices to this PNG"),
        paths_plot: Optional[Path] = typer.Option(None, metavar="<path>", parser=file_arg("paths-plot", "paths.png"),
                                                  help="write the input-output path-count histogram to this PNG"),
        as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    ) -> None:
        """Design a pre-defined sparse network (any family) and print its junction table and overall density."""
        from ..config import ModelSpec, parse
        from ..topology import analysis, radix_net

        options = family_options(family, z, group, block)
        if widths is not None and radices is None:
            raise UserError("--widths applies to RadiX-Nets only: give --radices too")
        output_file(plot, "plot")
        output_file(paths_plot, "paths-plot")
        if radices is not None:
            topo = radix_net(parse_radices(radices), ints(widths, "widths", 1))
        else:
            dens = densities(density, "density")
            spec = {"net": ints(net, "net"), "fan_out": ints(fan_out, "fan-out"), "fan_in": ints(fan_in, "fan-in"),
                    "density": (dens[0] if dens and len(dens) == 1 else dens), "rho_net": rho_net, "family": family,
                    "seed": seed, "options": options}
            model = parse(ModelSpec, {k: v for k, v in spec.items() if v is not None}, where="")
            topo = model.topology()
            notice_adjusted(model.density, topo)
        rows = topo.table()
        summary = analysis.summarize(topo) if analyze else None
        if as_json:
            out.print_json(json.dumps({"sizes": topo.sizes, "family": topo.family, "junctions": rows, "edges": topo.edges,
                                       "rho_net": topo.rho_net, **({"analysis": summary} if summary else {})}))
        else:
            out.print(rich_table(rows, title=f"N_net = {topo.sizes}, family {topo.family}", fmt={"density": pct}))
            out.print(f"edges {topo.edges:,} of {topo.fc_edges:,} (FC): rho_net = {100 * topo.rho_net:.2f}%")
            if summary:
                jrows = [{"junction": j["junction"], "spectral_gap": j["spectral_gap"], "scatter_fwd": j["scatter_forward"],
                          "scatter_bwd": j["scatter_backward"]} for j in summary["junctions"]]
                out.print(rich_table(jrows, title="expansion and scatter per junction",
                                 fmt={k: (lambda v: f"{v:.3f}") for k in ("spectral_gap", "scatter_fwd", "scatter_bwd")}))
                pth = summary.get("paths") or {}
                if pth:
                    out.print(f"input-output paths: connectivity {100 * pth['connectivity']:.1f}%, min {pth['min']}, "
                              f"max {pth['max']}, cv {pth['cv']:.3f}{' (all pairs equal)' if pth['uniform'] else ''}")
        if plot or paths_plot:
            from ..runs.topology_plots import plot_adjacency, plot_path_counts

            for path, fn in ((plot, plot_adjacency), (paths_plot, plot_path_counts)):
                if path:
                    fn(topo, path)
                    err.print(f"wrote {path}")
