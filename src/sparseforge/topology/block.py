"""Block patterns: dense ``b x b`` blocks placed by a structured pattern between blocks of nodes.

Left nodes come in ``n_in / b`` blocks and right nodes in ``n_out / b`` blocks; a structured pattern with
block out-degree ``d_out / b`` (and so a fixed block in-degree) decides which (right block, left block) pairs
are connected, and every connected pair is a dense ``b x b`` block (the Kronecker product of the block-level
pattern with a ``b x b`` matrix of ones). Every left node keeps out-degree ``d_out`` and every right node has
in-degree ``n_in * d_out / n_out``, exactly as :func:`~sparseforge.topology.structured`.

Why: every ``b`` consecutive right nodes share one index list (``group = min(b, 8)`` in
:class:`~sparseforge.kernels.SparseLayout`), so each gathered activation row feeds ``b`` multiply-adds, and
each list is runs of ``b`` consecutive left nodes, whose rows are contiguous in memory.
"""

from __future__ import annotations

import numpy as np

from .generators import SeedLike, check_degrees, register_family, structured, valid_out_degrees
from .pattern import Pattern, TopologyError

BLOCK_SIZES = (4, 8, 16)


def block(n_in: int, n_out: int, d_out: int, *, block: int = 8, seed: SeedLike = 0) -> Pattern:
    """Pattern of dense ``block x block`` blocks with fixed block in- and out-degrees.

    Args:
        n_in, n_out: junction sizes; both multiples of ``block``.
        d_out: out-degree of every left node; a multiple of ``block`` that makes the block-level in-degree an
            integer.
        block: ``b``, one of 4, 8, 16.
        seed: for the structured pattern between blocks.

    Raises:
        TopologyError: naming the values and what would work.
    """
    where = f"block junction ({n_in} -> {n_out}, d_out={d_out}, block={block})"
    if block not in BLOCK_SIZES:
        raise TopologyError(f"{where}: block must be one of {', '.join(map(str, BLOCK_SIZES))}, got {block!r}")
    check_degrees(n_in, n_out, d_out, where)
    for name, n in (("n_in", n_in), ("n_out", n_out)):
        if n % block:
            raise TopologyError(f"{where}: {name}={n} must be a multiple of block={block}")
    ok = valid_out_degrees(n_in // block, n_out // block)
    if d_out % block or d_out // block not in ok:
        near = sorted((d * block for d in ok), key=lambda d: (abs(d - d_out), d))[:2]
        raise TopologyError(f"{where}: d_out must be {block} x a block out-degree that the {n_in // block} -> "
                            f"{n_out // block} blocks allow, e.g. d_out = {' or '.join(map(str, sorted(near)))}")
    base = structured(n_in // block, n_out // block, d_out // block, seed=seed).ell()  # [n_out/b, d_in/b]
    cols = (base[:, :, None] * block + np.arange(block)).reshape(base.shape[0], -1)  # each block's b columns
    return Pattern.from_ell(np.repeat(cols, block, axis=0), n_in)


def _block_out_degrees(n_in: int, n_out: int, *, block: int = 8, **_) -> list[int]:
    """Out-degrees :func:`block` builds: ``block`` x a block-level realisable out-degree."""
    if block not in BLOCK_SIZES or n_in % block or n_out % block:
        return []
    return [d * block for d in valid_out_degrees(n_in // block, n_out // block)]


register_family("block", block, _block_out_degrees)
