"""Morse code symbol classification, generated in-package.

Follows S. Dey, K. M. Chugg, P. A. Beerel, "Morse Code Datasets for Machine Learning",
ICCCNT 2018 (grayscale style). Each sample is one symbol in a frame of 64 time steps:

* element lengths (in time steps), drawn independently per element: dot uniform 1..3,
  dash uniform 4..9 (``difficult``: 3..9), gap between elements uniform 1..3;
* leading space 0 (``baseline``) or uniform over what fits in the frame (``difficult``);
  the rest of the frame is trailing space;
* "on" steps get levels N(12, 1.34), "off" steps 0; then additive Gaussian noise with
  standard deviation ``noise_sd`` (0 for ``baseline``, 4 for ``difficult``), clipped to
  [0, 16] and divided by 16 -> float32 in [0, 1]. (The original also rounds to 16 integer
  levels; we keep the values continuous.)

No redraws are ever needed: with every length at its maximum the longest symbols
(``,`` ``'`` ``0``) take 57 <= 64 steps (:data:`MAX_SYMBOL_LENGTH`, checked at import).

Randomness: each split uses its own streams of ``seed`` for labels, lengths, leading
space, on-levels and noise, so the same seed gives bitwise-identical data and
``noise_sd=0`` gives exactly the noiseless version of the same frames.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import ConfigError
from .base import ArrayDataset, DataSplits, _rng, register

__all__ = ["SYMBOLS", "CLASSES", "FRAME", "VARIANTS", "MAX_SYMBOL_LENGTH", "load_morse"]

# fmt: off
#: symbol -> Morse code; class id = position in this dict (see CLASSES). 64 distinct codes:
#: 26 letters, 10 digits, 18 punctuation marks (ITU + common !, &, _, $) and 10 extended
#: letters (Å and À share Á's code, Ĥ shares Ch's, so they are not separate classes).
SYMBOLS: dict[str, str] = {
    "A": ".-", "B": "-...", "C": "-.-.", "D": "-..", "E": ".", "F": "..-.", "G": "--.",
    "H": "....", "I": "..", "J": ".---", "K": "-.-", "L": ".-..", "M": "--", "N": "-.",
    "O": "---", "P": ".--.", "Q": "--.-", "R": ".-.", "S": "...", "T": "-", "U": "..-",
    "V": "...-", "W": ".--", "X": "-..-", "Y": "-.--", "Z": "--..",
    "0": "-----", "1": ".----", "2": "..---", "3": "...--", "4": "....-",
    "5": ".....", "6": "-....", "7": "--...", "8": "---..", "9": "----.",
    ".": ".-.-.-", ",": "--..--", "?": "..--..", "'": ".----.", "!": "-.-.--", "/": "-..-.",
    "(": "-.--.", ")": "-.--.-", "&": ".-...", ":": "---...", ";": "-.-.-.", "=": "-...-",
    "+": ".-.-.", "-": "-....-", "_": "..--.-", '"': ".-..-.", "$": "...-..-", "@": ".--.-.",
    "Ä": ".-.-", "Á": ".--.-", "Ch": "----", "É": "..-..", "Ñ": "--.--", "Ö": "---.",
    "Ü": "..--", "Ç": "-.-..", "È": ".-..-", "Ĵ": ".---.",
}
# fmt: on
CLASSES: tuple[str, ...] = tuple(SYMBOLS)
FRAME = 64
DOT, GAP = (1, 3), (1, 3)  # inclusive ranges, time steps
ON_MEAN, ON_SD, LEVELS = 12.0, 1.34, 16.0
#: variant -> (dash length range, random leading space, default noise sd in level units)
VARIANTS: dict[str, tuple[tuple[int, int], bool, float]] = {
    "baseline": ((4, 9), False, 0.0),
    "difficult": ((3, 9), True, 4.0),
}
DEFAULT_PER_CLASS = (5000, 1000, 1000)

if len(set(SYMBOLS.values())) != len(SYMBOLS) or len(SYMBOLS) != 64:
    raise RuntimeError("SYMBOLS must hold 64 distinct codes")
_MAX_DASH = max(dash[1] for dash, _, _ in VARIANTS.values())
MAX_SYMBOL_LENGTH = max(
    c.count("-") * _MAX_DASH + c.count(".") * DOT[1] + (len(c) - 1) * GAP[1] for c in SYMBOLS.values()
)
if MAX_SYMBOL_LENGTH > FRAME:
    raise RuntimeError(f"a symbol can take {MAX_SYMBOL_LENGTH} > {FRAME} steps")

_N_ELEMENTS = np.array([len(c) for c in SYMBOLS.values()])  # [64]
_MAX_ELEMENTS = int(_N_ELEMENTS.max())
_IS_DASH = np.array([[ch == "-" for ch in c.ljust(_MAX_ELEMENTS)] for c in SYMBOLS.values()])  # [64, E]
_RUN_IS_ON = np.arange(2 * _MAX_ELEMENTS + 1) % 2 == 1  # runs: lead, on, gap, on, ..., on, trail


def _frames(y: np.ndarray, variant: str, noise_sd: float, seed: int, split: int) -> np.ndarray:
    """Frames for labels ``y`` [n]: float32 [n, FRAME] in [0, 1]. Fully vectorised."""
    (dash_lo, dash_hi), random_lead, _ = VARIANTS[variant]
    n, e = len(y), _MAX_ELEMENTS
    stream = lambda k: _rng(seed, 3, split, k)  # noqa: E731
    r = stream(1)
    dots, dashes = r.integers(DOT[0], DOT[1] + 1, (n, e)), r.integers(dash_lo, dash_hi + 1, (n, e))
    gaps = r.integers(GAP[0], GAP[1] + 1, (n, e - 1))
    n_el = _N_ELEMENTS[y][:, None]
    on = np.where(_IS_DASH[y], dashes, dots) * (np.arange(e) < n_el)
    gaps *= np.arange(e - 1) < n_el - 1
    used = on.sum(1) + gaps.sum(1)
    lead = stream(2).integers(0, FRAME - used + 1) if random_lead else np.zeros(n, np.int64)
    runs = np.empty((n, 2 * e + 1), np.int64)
    runs[:, 0], runs[:, 1::2], runs[:, 2:-1:2], runs[:, -1] = lead, on, gaps, FRAME - lead - used
    is_on = np.repeat(np.tile(_RUN_IS_ON, n), runs.ravel()).reshape(n, FRAME)
    x = stream(3).standard_normal((n, FRAME), dtype=np.float32)
    x *= np.float32(ON_SD)
    x += np.float32(ON_MEAN)
    x *= is_on
    if noise_sd > 0:
        x += np.float32(noise_sd) * stream(4).standard_normal((n, FRAME), dtype=np.float32)
    np.clip(x, 0.0, LEVELS, out=x)
    x /= np.float32(LEVELS)
    return x


@register("morse")
def load_morse(*, root: str | os.PathLike | None = None, val_size: int | float | None = None,
               seed: int = 0, limit: int | None = None, variant: str = "baseline",
               noise_sd: float | None = None,
               per_class: tuple[int, int, int] = DEFAULT_PER_CLASS) -> DataSplits:
    """Generated Morse frames: x float32 [n, 64] in [0, 1], y int64 [n] in 0..63 (CLASSES).

    variant: ``"baseline"`` or ``"difficult"`` (see module docstring).
    noise_sd: additive noise sd in level units (frame max is 16); None -> variant default.
    per_class: samples per class for (train, val, test); default 5000/1000/1000, i.e.
        320000/64000/64000 samples. Each split is class-balanced and shuffled.
    limit: keep the first ``limit`` shuffled labels of each split and generate only those.
    ``val_size`` must be None (val is generated; size it with ``per_class``); ``root`` is ignored.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown morse variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    if val_size is not None:
        raise ConfigError("morse generates its own validation split: use per_class=(train, val, test), not val_size")
    if len(per_class) != 3 or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in per_class):
        raise ConfigError(f"per_class must be 3 non-negative ints (train, val, test), got {per_class!r}")
    noise_sd = VARIANTS[variant][2] if noise_sd is None else float(noise_sd)
    if not noise_sd >= 0:
        raise ConfigError(f"noise_sd must be >= 0, got {noise_sd}")
    splits = []
    for split, count in enumerate(per_class):
        y = _rng(seed, 3, split, 0).permutation(np.repeat(np.arange(len(SYMBOLS)), count))[:limit]
        x = _frames(y, variant, noise_sd, seed, split)
        splits.append(ArrayDataset(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))))
    return DataSplits("morse", *splits, n_classes=len(SYMBOLS), sample_shape=(FRAME,))
