"""Run the command line in-process through its one error boundary (``sparseforge.cli.main.run``), as the
installed ``sparseforge`` script does: exit status, stdout and stderr as a user sees them."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class BoundaryRunner:
    """Drop-in for ``typer.testing.CliRunner`` whose ``invoke(app, args)`` goes through ``cli.main.run``
    (the error boundary), so user errors are exit 2 with one ``error:`` line, as in the console script."""

    def invoke(self, app, args) -> Result:  # noqa: ARG002 - the real app is the one run() drives
        from sparseforge.cli.main import run

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = run([str(a) for a in args])
        return Result(rc, out.getvalue(), err.getvalue())
