"""The ``sparseforge`` command line: design, train, demo, benchmark."""

from __future__ import annotations

import sys

import typer

from .console import err
from .parse import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


def _register_subcommands() -> None:
    """Every command group has a module of its own; the order is the order of ``--help``."""
    from . import bench, hw, prune, search, ssl, study, topology, train

    for module in (topology, train, bench, study, prune, ssl, search, hw):
        module.register(app)


_register_subcommands()


def main() -> None:
    """Console entry point: user errors become one clear line and exit status 2."""
    from ..config import ConfigError
    from ..topology import TopologyError

    from ..hardware import HardwareError

    known: tuple[type[BaseException], ...] = (UserError, ConfigError, TopologyError, HardwareError)
    try:
        from ..data import DatasetUnavailable

        known += (DatasetUnavailable,)
    except ImportError:  # pragma: no cover
        pass
    try:
        code = app(standalone_mode=False)  # without standalone mode, typer returns a typer.Exit's code
    except known as e:
        err.print(f"[red]error:[/red] {e}")
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted; rerun the same command (with --resume for train) to continue")
        sys.exit(130)
    except Exception as e:  # usage errors (typer ships its own click: no `import click`)
        if hasattr(e, "show") and isinstance(getattr(e, "exit_code", None), int):
            e.show()
            sys.exit(e.exit_code)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)

