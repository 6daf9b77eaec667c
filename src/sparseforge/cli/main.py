"""The ``sparseforge`` command line: design, train, demo, benchmark."""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

import typer

from .console import err, typer_app
from .parse import UserError

ISSUES_URL = "https://github.com/sparseforge/sparseforge/issues"

app = typer_app(add_completion=False, help=__doc__)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="show the full traceback of an internal error "
                               "(also SPARSEFORGE_DEBUG=1)"),
) -> None:
    """Design, train, demo and benchmark sparse deep networks."""


def _register_subcommands() -> None:
    """Every command group has a module of its own; the order is the order of ``--help``."""
    from . import bench, conv2, export, hw, prune, recipes, search, ssl, study, topology, train

    for module in (topology, train, export, bench, study, conv2, prune, ssl, search, hw, recipes):
        module.register(app)


_register_subcommands()

# Exceptions that mean "the user asked for something that cannot be done" (exit 2), by the module defining
# them. Only modules already imported are looked at: an exception class that was never imported was never
# raised, and the command line stays quick to start (no torch import to print an error).
_USER_ERRORS = (
    ("sparseforge.errors", "ConfigError"),      # also the base of the data layer's DataError
    ("sparseforge.errors", "DataError"),
    ("sparseforge.errors", "MissingExtra"),
    ("sparseforge.topology.pattern", "TopologyError"),
    ("sparseforge.hardware.junction", "HardwareError"),
    ("sparseforge.data.base", "DatasetUnavailable"),
    ("sparseforge.search.study", "SearchError"),
)


def _user_error_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [UserError]
    for module, name in _USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


def _named_in_mro(e: BaseException, name: str) -> bool:
    """True when ``e`` derives from a class called ``name``: click's exceptions are found this way whether
    typer vendors click (typer >= 0.25: ``typer._click``) or uses the ``click`` package."""
    return any(c.__name__ == name for c in type(e).__mro__)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _usage_error(e: BaseException) -> int:
    """A click/typer usage error (bad value, unknown option, missing argument): one line and a hint."""
    msg = e.format_message() if hasattr(e, "format_message") else str(e)  # type: ignore[attr-defined]
    ctx = getattr(e, "ctx", None)
    path = getattr(ctx, "command_path", None) or "sparseforge"
    err.print(f"error: {_one_line(msg)}", markup=False, highlight=False)
    err.print(f"hint: see `{path} --help`", markup=False, highlight=False)
    return int(getattr(e, "exit_code", 2) or 2)


def _interrupted() -> int:
    err.print("interrupted. Run the same command again to continue where it stopped "
              "(train: add --resume; the other commands resume from their --run-dir).", markup=False, highlight=False)
    return 130


def _debug_wanted(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("SPARSEFORGE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


_ARGS: list[str] = []


def current_args() -> list[str]:
    """The command line being run (without ``--debug``), e.g. for ``train --nproc`` to relaunch itself."""
    return list(_ARGS)


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit status:
    0 success, 1 internal error (a bug), 2 user error, 130 interrupted."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_wanted(args)
    args = [a for a in args if a != "--debug"]  # accepted anywhere on the line, not only before the command
    _ARGS[:] = args
    if debug:
        os.environ["SPARSEFORGE_DEBUG"] = "1"  # processes this one starts (train --nproc) debug too
    try:
        rc = app(args=args, prog_name="sparseforge", standalone_mode=False)
        rc = rc if isinstance(rc, int) else 0  # a typer.Exit(code) inside a command comes back as its code
        return _interrupted() if rc == 130 else rc  # typer >= 0.26 turns Ctrl-C into a silent Exit(130)
    except typer.Exit as e:
        return _interrupted() if e.exit_code == 130 else int(e.exit_code or 0)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as e:  # noqa: BLE001 - this is the one error boundary of the command line
        if _named_in_mro(e, "Abort"):  # click turns Ctrl-C into Abort
            return _interrupted()
        if _named_in_mro(e, "ClickException"):
            return _usage_error(e)
        if isinstance(e, _user_error_types()):
            err.print(f"error: {_one_line(e)}", markup=False, highlight=False)
            hint = getattr(e, "hint", None)
            if hint:
                err.print(f"hint: {_one_line(hint)}", markup=False, highlight=False)
            return 2
        if debug:
            import traceback

            traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
        err.print(f"error: internal error: {type(e).__name__}: {_one_line(e)}", markup=False, highlight=False)
        err.print(f"This is a bug in sparseforge; please report it with the command line"
                  f"{'' if debug else ' and the output of the same command with --debug'} at {ISSUES_URL}",
                  markup=False, highlight=False)
        return 1


def main() -> None:
    """Console entry point (``sparseforge``): exit status from :func:`run`."""
    sys.exit(run())
