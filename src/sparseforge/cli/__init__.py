"""The command line: one Typer module per command group; ``main`` is the console entry point."""

from .main import app, main

__all__ = ["app", "main"]
