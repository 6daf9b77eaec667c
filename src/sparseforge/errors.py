"""Exceptions every layer may raise (this module imports nothing from the package, so any layer can use it).

The command line prints them as one line and exits with status 2.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is not allowed; the message names field, value and what is allowed."""


class RunError(ConfigError):
    """A run directory cannot be used as asked: another writer holds it, or a checkpoint is damaged.

    A ConfigError so that the command line treats it alike (one line, exit 2); the message says what to do.
    """
