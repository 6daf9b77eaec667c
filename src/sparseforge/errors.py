"""Exceptions every layer may raise (this module imports nothing from the package, so any layer can use it).

The command line prints them as one line and exits with status 2.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is not allowed; the message names field, value and what is allowed."""


class DataError(ValueError):
    """A data file the user pointed at cannot be read (corrupt, truncated, wrong layout); the message names
    the file and what is wrong."""


class RunError(ConfigError):
    """A run directory cannot be used as asked: another writer holds it, or a checkpoint is damaged.

    A ConfigError so that the command line treats it alike (one line, exit 2); the message says what to do.
    """


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it
    (``pip install 'sparseforge[search]'``). The command line prints it as one line (exit status 2)."""


# The optional parts of sparseforge: import name -> (distribution, extra that installs it).
EXTRAS = {
    "optuna": ("optuna", "search"),
    "matplotlib": ("matplotlib", "plots"),
    "sklearn": ("scikit-learn", "digits"),
    "zarr": ("zarr", "mnist"),
    "onnx": ("onnx", "onnx"),
}


def require(module: str, what: str):
    """Import and return the optional ``module`` (a key of :data:`EXTRAS`), or raise :class:`MissingExtra`
    saying that ``what`` needs it and which extra installs it."""
    import importlib

    dist, extra = EXTRAS[module]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name is not None and e.name.split(".")[0] != module:
            raise  # the package is there but one of its own imports is broken: show that
        raise MissingExtra(f"{what} needs the optional package {dist}, which is not installed: "
                           f"pip install 'sparseforge[{extra}]'") from None
