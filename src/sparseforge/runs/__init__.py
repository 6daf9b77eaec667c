"""Runs: the run store every long command uses (settings hash, atomic results, one writer, checksummed
checkpoints), one timing helper, one report writer and one progress display.

Layer: beside ``studies/``, above ``search/`` and ``hardware/``; only ``studies/`` and ``cli/`` import it.
"""

from ..train.checkpoint import canonical, settings_hash
from .store import RunStore

__all__ = ["RunStore", "canonical", "settings_hash"]
