"""Fixed-point arithmetic as the edge-processing hardware does it, and a bit-accurate training step.

Length (over 500 lines, on purpose): the formats, the ROM tables and the step functions share the word-width
bookkeeping that proves no int64 intermediate overflows; kept in one module so that the proof reads in one place.

Number format. :class:`FixedPoint` ``(word_bits, int_bits, signed)`` stores a value as an integer ``k``
of ``word_bits`` bits (two's complement when signed) meaning ``k * 2**-frac_bits``, with
``frac_bits = word_bits - int_bits - (1 if signed else 0)``; e.g. ``FixedPoint(10, 2)`` is 1 sign bit,
2 integer bits and 7 fraction bits: ``[-4, 4 - 2**-7]`` in steps of ``2**-7``. Conversions saturate
(clip to the range) and round to nearest (ties upwards, ``floor(x + 1/2)``, which is what adding half an
LSB and truncating does in hardware) or stochastically (``floor(x + u)``, ``u ~ U[0, 1)``).

Bit-exactness. The step functions below work on numpy ``int64`` arrays holding the integers ``k``:
products of two words and sums of products are exact integer operations, and rounding happens only at
the documented points, by integer shifts (:meth:`FixedPoint.requantize`). Before each step the word
lengths, in-degrees and batch size are checked so that no intermediate exceeds 62 bits, so int64 never
overflows; hence the result is exactly what a hardware datapath with full-width products and
accumulators followed by a round-and-saturate stage computes. (Exactly-quantized float64 would be exact
only up to 53 bits of product plus accumulator growth; int64 is exact up to 62 and is as fast.) The
nonlinearities are ROMs (look-up tables) indexed by the integer pre-activation: a table entry is the
round-to-nearest of the float64 function at that exact input, a deterministic function of the integer.

Training step (one junction ``W`` between layers ``a`` (left) and ``a'`` (right); formats ``w``, ``a``,
``p`` (pre-activation), ``d`` (delta), ``x`` (input)); all sums are over a right node's edges:

* FF: ``h = requant_p(sum W a + b)``; ``a' = sigma_ROM(h)``; ``sigma'_ROM(h)`` kept for BP (format ``a``).
* output: sigmoid units with cross-entropy cost, ``delta_L = requant_d(a_L - y)``.
* BP: ``e = requant_d(sum_right W delta')``; ``delta = requant_d(e * sigma')``.
* UP (learning rate ``2**-lr_shift``, a shift): ``W <- requant_w(W - (sum_batch delta' a) >> lr_shift)``,
  ``b <- requant_w(b - (sum_batch delta') >> lr_shift)``, one rounding each, computed exactly first.

A batch of ``B`` inputs sums the gradients before the one update (``B = 1`` is the hardware's online
update); fold ``1/B`` into ``lr_shift``. BP uses the weights before the update, as in the hardware where
BP and UP read the same weight word in the same cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal, Sequence

import numpy as np
from scipy.special import expit

from sparseforge.topology.network import NetworkTopology
from sparseforge.topology.pattern import Pattern

from .junction import HardwareError

__all__ = [
    "FixedFormats",
    "FixedMLP",
    "FixedPoint",
    "FixedPointError",
    "FixedTrace",
    "FloatMLP",
    "StepStats",
    "fixed_from_float",
    "forward_fixed",
    "forward_float",
    "init_fixed_mlp",
    "initial_weights",
    "predict_fixed",
    "to_float",
    "train_step_fixed",
    "train_step_float",
]

_MAX_BITS = 62  # largest magnitude (bits) an int64 intermediate may reach


class FixedPointError(HardwareError):
    """A fixed-point format or datapath that cannot hold the values (names the word lengths)."""


def _is_torch(x: object) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return isinstance(x, torch.Tensor)


@dataclass(frozen=True)
class FixedPoint:
    """A fixed-point number format (see the module docstring).

    Attributes:
        word_bits: total bits per word, sign included (1..62).
        int_bits: integer bits, sign excluded (>= 0).
        signed: two's complement when True; otherwise unsigned (values >= 0).
        rounding: "nearest" (ties up) or "stochastic" (needs an ``rng`` wherever it rounds).
    """

    word_bits: int
    int_bits: int
    signed: bool = True
    rounding: Literal["nearest", "stochastic"] = "nearest"

    def __post_init__(self) -> None:
        w, i = self.word_bits, self.int_bits
        if not isinstance(w, (int, np.integer)) or isinstance(w, bool) or not 1 <= w <= _MAX_BITS:
            raise FixedPointError(f"word_bits={w!r} must be an integer in [1, {_MAX_BITS}]")
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or i < 0:
            raise FixedPointError(f"int_bits={i!r} must be a non-negative integer")
        need = i + (1 if self.signed else 0)
        if w < need:
            raise FixedPointError(
                f"word length word_bits={w} cannot hold int_bits={i} integer bits"
                f"{' plus the sign bit' if self.signed else ''}: need word_bits >= {need}"
            )
        if self.rounding not in ("nearest", "stochastic"):
            raise FixedPointError(f"rounding={self.rounding!r} must be 'nearest' or 'stochastic'")

    # ------------------------------------------------------------------ range (units: LSBs and values)
    @property
    def frac_bits(self) -> int:
        return self.word_bits - self.int_bits - (1 if self.signed else 0)

    @property
    def lsb(self) -> float:
        """Value of one least significant bit: ``2**-frac_bits``."""
        return 2.0**-self.frac_bits

    @property
    def min_int(self) -> int:
        return -(1 << (self.word_bits - 1)) if self.signed else 0

    @property
    def max_int(self) -> int:
        return (1 << (self.word_bits - 1)) - 1 if self.signed else (1 << self.word_bits) - 1

    @property
    def min_value(self) -> float:
        return self.min_int * self.lsb

    @property
    def max_value(self) -> float:
        return self.max_int * self.lsb

    @property
    def hex_digits(self) -> int:
        """Hex digits per word in a ``$readmemh`` file."""
        return -(-self.word_bits // 4)

    def holds(self, lo: float, hi: float) -> bool:
        """True when every multiple of the LSB in ``[lo, hi]`` is representable (no saturation)."""
        return self.min_value <= lo and hi <= self.max_value

    # ------------------------------------------------------------------ conversions
    def saturate(self, k: np.ndarray) -> np.ndarray:
        """Clip integers to ``[min_int, max_int]``."""
        return np.clip(k, self.min_int, self.max_int)

    def _check_rng(self, rng: np.random.Generator | None) -> None:
        if self.rounding == "stochastic" and not isinstance(rng, np.random.Generator):
            raise FixedPointError("stochastic rounding needs rng=numpy.random.Generator (runs must be reproducible)")

    def to_int(self, x, rng: np.random.Generator | None = None):
        """Round and saturate real values to the integer code ``k`` (int64; a torch tensor stays torch)."""
        self._check_rng(rng)
        if _is_torch(x):
            import torch

            return torch.from_numpy(self.to_int(x.detach().cpu().double().numpy(), rng))
        v = np.asarray(x, dtype=np.float64) * float(2**self.frac_bits)
        if not np.all(np.isfinite(v)):
            raise FixedPointError("cannot quantize NaN or infinite values")
        lim = float(2**_MAX_BITS)
        v = np.clip(v, -lim, lim)
        if self.rounding == "nearest":
            k = np.floor(v + 0.5)
        else:
            k = np.floor(v + rng.random(v.shape))  # type: ignore[union-attr]
        return self.saturate(k.astype(np.int64))

    def from_int(self, k):
        """Real values ``k * 2**-frac_bits`` (float64, exact; a torch tensor stays torch)."""
        if _is_torch(k):
            import torch

            return torch.from_numpy(self.from_int(k.cpu().numpy()))
        return np.asarray(k, dtype=np.int64).astype(np.float64) * self.lsb

    def quantize(self, x, rng: np.random.Generator | None = None):
        """Round and saturate to the nearest representable values (same type; torch keeps its dtype)."""
        if _is_torch(x):
            import torch

            return torch.from_numpy(self.quantize(x.detach().cpu().double().numpy(), rng)).to(x.dtype)
        return self.from_int(self.to_int(x, rng))

    def requantize(self, k: np.ndarray, frac: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Integers ``k`` with ``frac`` fraction bits, rounded (integer shift) and saturated to this format."""
        self._check_rng(rng)
        k = np.asarray(k, dtype=np.int64)
        s = int(frac) - self.frac_bits
        if s > 0:
            if self.rounding == "nearest":
                k = (k + (1 << (s - 1))) >> s
            else:
                k = (k + rng.integers(0, 1 << s, size=k.shape, dtype=np.int64)) >> s  # type: ignore[union-attr]
        elif s < 0:
            k = k << (-s)
        return self.saturate(k)

    def to_bits(self, k: np.ndarray) -> np.ndarray:
        """Integer codes as unsigned bit patterns of ``word_bits`` bits (two's complement)."""
        k = np.asarray(k, dtype=np.int64)
        if np.any(k < self.min_int) or np.any(k > self.max_int):
            raise FixedPointError(f"values outside [{self.min_int}, {self.max_int}] do not fit {self.word_bits} bits")
        return k & ((1 << self.word_bits) - 1)

    def from_bits(self, u: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_bits` (sign-extends when signed)."""
        u = np.asarray(u, dtype=np.int64) & ((1 << self.word_bits) - 1)
        if self.signed:
            u = np.where(u >= (1 << (self.word_bits - 1)), u - (1 << self.word_bits), u)
        return u


@dataclass(frozen=True)
class FixedFormats:
    """Word formats of a fixed-point MLP (default: 10-bit words with 2 integer bits, 8-bit inputs).

    Attributes:
        weight: weights and biases.
        act: activations and activation derivatives (ROM outputs).
        preact: pre-activations (ROM addresses).
        delta: deltas (errors).
        input: the network input (unsigned 8 bits, ``[0, 1)`` by default).
        hidden: hidden nonlinearity, "sigmoid" or "relu" (the output layer is always sigmoid).
    """

    weight: FixedPoint = FixedPoint(10, 2)
    act: FixedPoint = FixedPoint(10, 2)
    preact: FixedPoint = FixedPoint(10, 2)
    delta: FixedPoint = FixedPoint(10, 2)
    input: FixedPoint = FixedPoint(8, 0, signed=False)
    hidden: Literal["sigmoid", "relu"] = "sigmoid"

    def __post_init__(self) -> None:
        if self.hidden not in ("sigmoid", "relu"):
            raise FixedPointError(f"hidden={self.hidden!r} must be 'sigmoid' or 'relu'")
        if not self.delta.signed:
            raise FixedPointError("delta format must be signed: deltas (a - y, W^T delta) take both signs")
        if not self.weight.signed:
            raise FixedPointError("weight format must be signed: weights take both signs")
        if not self.act.holds(0.0, 1.0 - self.act.lsb):
            raise FixedPointError(f"act format {self.act} cannot hold activations in [0, 1)")
        if self.hidden == "relu" and not self.act.holds(0.0, 1.0):
            raise FixedPointError(
                f"act format {self.act} cannot hold the ReLU derivative 1.0; use int_bits >= 1 "
                f"(e.g. FixedPoint({self.act.word_bits}, 1))"
            )


# ---------------------------------------------------------------------------------------- the network
@dataclass(frozen=True, eq=False)
class _Plan:
    """Static index arrays of one junction (padded ELL, its CSR positions, the transposed order)."""

    pattern: Pattern
    idx: np.ndarray  # [n_out, d_max] left node per slot
    valid: np.ndarray  # [n_out, d_max] bool
    rows: np.ndarray  # [E] right node per edge (CSR order)
    cols: np.ndarray  # [E] left node per edge
    tperm: np.ndarray | None  # [E]: CSR edges grouped by left node (fixed out-degree only)

    @staticmethod
    def of(p: Pattern) -> _Plan:
        idx, valid = p.padded_ell()
        tperm = p.transpose_order()[1] if p.is_fixed_out_degree else None
        return _Plan(p, idx, valid, p.rows, p.indices, tperm)

    def scatter_left(self, contrib: np.ndarray) -> np.ndarray:
        """Sum per-edge values ``[B, E]`` into the left nodes ``[B, n_in]`` (exact for int64)."""
        B = contrib.shape[0]
        if self.tperm is not None:
            return contrib[:, self.tperm].reshape(B, self.pattern.n_in, -1).sum(-1)
        out = np.zeros((self.pattern.n_in, B), dtype=contrib.dtype)
        np.add.at(out, self.cols, contrib.T)
        return out.T


@dataclass(frozen=True, eq=False)
class FixedMLP:
    """A pre-defined sparse MLP in fixed point: integer codes of its weights and biases.

    Attributes:
        weights: per junction, int64 ``[n_out, d_max]`` aligned with ``pattern.padded_ell()``
            (0 in padded slots); for fixed in-degree that is ``pattern.ell()``.
        biases: per junction, int64 ``[n_out]``; both in ``formats.weight``.
        formats: the word formats.
    """

    plans: tuple[_Plan, ...] = field(repr=False)
    weights: tuple[np.ndarray, ...] = field(repr=False)
    biases: tuple[np.ndarray, ...] = field(repr=False)
    formats: FixedFormats = FixedFormats()

    @property
    def patterns(self) -> tuple[Pattern, ...]:
        return tuple(p.pattern for p in self.plans)

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.plans[0].pattern.n_in,) + tuple(p.pattern.n_out for p in self.plans)

    def weights_csr(self) -> tuple[np.ndarray, ...]:
        """Per junction, the weight codes of the edges in CSR order (int64 ``[E]``)."""
        return tuple(w[p.valid] for w, p in zip(self.weights, self.plans))


@dataclass(frozen=True, eq=False)
class FloatMLP:
    """The same network in float64 (reference for tests): ``weights`` ``[n_out, d_max]``, ``biases``."""

    plans: tuple[_Plan, ...] = field(repr=False)
    weights: tuple[np.ndarray, ...] = field(repr=False)
    biases: tuple[np.ndarray, ...] = field(repr=False)
    hidden: Literal["sigmoid", "relu"] = "sigmoid"


@dataclass(frozen=True)
class StepStats:
    """What one step saw.

    Attributes:
        loss: mean cross-entropy of the sigmoid outputs (nats per input), before the update.
        correct: inputs whose largest output is the label.
        batch: number of inputs.
        saturated: values clipped by saturation in this step (pre-activations, deltas, weights).
    """

    loss: float
    correct: int
    batch: int
    saturated: int = 0


@dataclass(frozen=True)
class FixedTrace:
    """Integer codes of a forward pass: ``acts[0]`` the input (input format), ``acts[i]`` layer ``i``
    (act format), ``preacts[i-1]`` and ``derivs[i-1]`` of layer ``i`` (preact and act formats)."""

    acts: tuple[np.ndarray, ...]
    preacts: tuple[np.ndarray, ...]
    derivs: tuple[np.ndarray, ...]
    saturated: int = 0


def _plans(patterns: NetworkTopology | Sequence[Pattern]) -> tuple[_Plan, ...]:
    pats = list(patterns.patterns if isinstance(patterns, NetworkTopology) else patterns)
    if not pats:
        raise FixedPointError("need at least one junction")
    for i in range(1, len(pats)):
        if pats[i].n_in != pats[i - 1].n_out:
            raise FixedPointError(f"junction {i + 1} has n_in={pats[i].n_in}, junction {i} has n_out={pats[i - 1].n_out}")
    return tuple(_Plan.of(p) for p in pats)


def _bits(n: int) -> int:
    """Bits needed to count to ``n`` (accumulator growth of a sum of ``n`` terms)."""
    return max(int(n) - 1, 0).bit_length()


def _check_widths(net_formats: FixedFormats, plans: Sequence[_Plan], batch: int = 1, lr_shift: int = 0) -> None:
    f = net_formats
    for j, p in enumerate(plans):
        a = f.input if j == 0 else f.act
        d_max = int(p.valid.shape[1])
        fan_out = int(p.pattern.out_degrees.max(initial=1))
        checks = [
            ("FF accumulator", f.weight.word_bits + a.word_bits + _bits(d_max + 1)),
            ("BP accumulator", f.weight.word_bits + f.delta.word_bits + _bits(fan_out)),
            ("BP derivative product", f.delta.word_bits + f.act.word_bits),
        ]
        g = max(f.weight.frac_bits, f.delta.frac_bits + a.frac_bits + lr_shift)
        checks += [
            ("UP gradient", f.delta.word_bits + a.word_bits + _bits(batch) + g - f.delta.frac_bits - a.frac_bits - lr_shift),
            ("UP weight alignment", f.weight.word_bits + g - f.weight.frac_bits + 1),
        ]
        for what, bits in checks:
            if bits > _MAX_BITS:
                raise FixedPointError(
                    f"junction {j + 1}: {what} needs {bits} bits (> {_MAX_BITS}) with word lengths weight="
                    f"{f.weight.word_bits}, act={a.word_bits}, delta={f.delta.word_bits}, batch={batch}, "
                    f"lr_shift={lr_shift}; use shorter words, smaller batches or a smaller lr_shift"
                )


def fixed_from_float(
    patterns: NetworkTopology | Sequence[Pattern],
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray] | None = None,
    formats: FixedFormats = FixedFormats(),
) -> FixedMLP:
    """Quantize float weights (``[n_out, d_max]`` padded-ELL or ``[E]`` CSR order) to a :class:`FixedMLP`."""
    plans = _plans(patterns)
    _check_widths(formats, plans)
    ws, bs = [], []
    for j, p in enumerate(plans):
        w = np.asarray(weights[j], dtype=np.float64)
        full = np.zeros(p.valid.shape)
        if w.shape == p.valid.shape:
            full[p.valid] = w[p.valid]
        elif w.shape == (p.pattern.edges,):
            full[p.valid] = w
        else:
            raise FixedPointError(
                f"junction {j + 1}: weights of shape {w.shape}; expected {p.valid.shape} (ELL) or ({p.pattern.edges},) (CSR)"
            )
        ws.append(np.where(p.valid, formats.weight.to_int(full, _rng_for(formats.weight)), 0))
        b = np.zeros(p.pattern.n_out) if biases is None else np.asarray(biases[j], dtype=np.float64)
        if b.shape != (p.pattern.n_out,):
            raise FixedPointError(f"junction {j + 1}: biases of shape {b.shape}; expected ({p.pattern.n_out},)")
        bs.append(formats.weight.to_int(b, _rng_for(formats.weight)))
    return FixedMLP(plans, tuple(ws), tuple(bs), formats)


def _rng_for(fmt: FixedPoint) -> np.random.Generator | None:
    # Initial quantization is deterministic (nearest) even for stochastic formats.
    return np.random.default_rng(0) if fmt.rounding == "stochastic" else None


def initial_weights(patterns: NetworkTopology | Sequence[Pattern], seed: int | np.random.Generator = 0) -> list[np.ndarray]:
    """Float64 initial weights ``[n_out, d_max]`` per junction (0 in padding slots): normal with std
    ``sqrt(2 / (d_in + d_out))`` (Glorot for the junction's degrees), drawn junction by junction from
    ``numpy.random.default_rng(seed)`` (or the generator given)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    ws = []
    for p in _plans(patterns):
        d_in = float(p.pattern.in_degrees.mean())
        d_out = float(p.pattern.out_degrees.mean())
        ws.append(rng.normal(0.0, np.sqrt(2.0 / (d_in + d_out)), size=p.valid.shape) * p.valid)
    return ws


def init_fixed_mlp(
    patterns: NetworkTopology | Sequence[Pattern],
    formats: FixedFormats = FixedFormats(),
    *,
    seed: int | np.random.Generator = 0,
) -> FixedMLP:
    """:func:`initial_weights`, quantized to ``formats``; biases 0."""
    return fixed_from_float(patterns, initial_weights(patterns, seed), None, formats)


def to_float(net: FixedMLP) -> FloatMLP:
    """The exact real values of a fixed-point network, as a float64 network."""
    f = net.formats.weight
    return FloatMLP(net.plans, tuple(f.from_int(w) for w in net.weights), tuple(f.from_int(b) for b in net.biases), net.formats.hidden)


# ------------------------------------------------------------------------------------------ ROMs
_ROM_MAX_WORD = 16  # tabulate up to 2**16 entries; wider formats evaluate the same formula directly


def _act_float(h: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == "sigmoid":
        s = expit(h)
        return s, s * (1.0 - s)
    return np.maximum(h, 0.0), (h > 0).astype(np.float64)


@lru_cache(maxsize=16)
def _rom(preact: FixedPoint, act: FixedPoint, kind: str) -> tuple[np.ndarray, np.ndarray]:
    codes = np.arange(preact.min_int, preact.max_int + 1, dtype=np.int64)
    nearest = replace(act, rounding="nearest")
    a, d = _act_float(preact.from_int(codes), kind)
    return nearest.to_int(a), nearest.to_int(d)


def _nonlinearity(h: np.ndarray, f: FixedFormats, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """ROM lookup: activation and derivative codes (act format, round to nearest) of pre-activation codes."""
    if f.preact.word_bits <= _ROM_MAX_WORD:
        a_tab, d_tab = _rom(f.preact, f.act, kind)
        i = h - f.preact.min_int
        return a_tab[i], d_tab[i]
    nearest = replace(f.act, rounding="nearest")
    a, d = _act_float(f.preact.from_int(h), kind)
    return nearest.to_int(a), nearest.to_int(d)


def _requant(fmt: FixedPoint, k: np.ndarray, frac: int, rng, counter: list[int]) -> np.ndarray:
    """Requantize and count saturations (values whose rounded code fell outside the range)."""
    wide = replace(fmt, word_bits=_MAX_BITS, int_bits=_MAX_BITS - fmt.frac_bits - 1, signed=True)
    r = wide.requantize(k, frac, rng)
    counter[0] += int(np.count_nonzero((r < fmt.min_int) | (r > fmt.max_int)))
    return fmt.saturate(r)


def _as_rng(rng) -> np.random.Generator | None:
    if rng is None or isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def forward_fixed(net: FixedMLP, x, *, rng: np.random.Generator | int | None = None) -> FixedTrace:
    """Bit-accurate forward pass. ``x``: real inputs ``[B, N_0]`` (or ``[N_0]``), quantized to the input
    format first (ints are not accepted: pass real values)."""
    f = net.formats
    rng = _as_rng(rng)
    x = np.asarray(x.detach().cpu().numpy() if _is_torch(x) else x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.shape[1] != net.sizes[0]:
        raise FixedPointError(f"input has {x.shape[1]} features, the network's input layer has {net.sizes[0]}")
    sat = [0]
    a = f.input.to_int(x, rng)
    acts, pres, ders = [a], [], []
    for j, (p, w, b) in enumerate(zip(net.plans, net.weights, net.biases)):
        fa = f.input.frac_bits if j == 0 else f.act.frac_bits
        acc = (w[None] * a[:, p.idx]).sum(-1) + (b << fa)[None]  # frac: weight + fa
        h = _requant(f.preact, acc, f.weight.frac_bits + fa, rng, sat)
        kind = "sigmoid" if j == len(net.plans) - 1 else f.hidden
        a, d = _nonlinearity(h, f, kind)
        acts.append(a)
        pres.append(h)
        ders.append(d)
    return FixedTrace(tuple(acts), tuple(pres), tuple(ders), sat[0])


def predict_fixed(net: FixedMLP, x) -> np.ndarray:
    """Real-valued outputs ``[B, N_L]`` (sigmoid activations) of the fixed-point network."""
    return net.formats.act.from_int(forward_fixed(net, x).acts[-1])


def _one_hot(y, n: int, batch: int) -> np.ndarray:
    y = np.asarray(y.cpu().numpy() if _is_torch(y) else y)
    if y.ndim == 1:
        if y.shape[0] != batch:
            raise FixedPointError(f"{y.shape[0]} labels for {batch} inputs")
        if y.size and (y.min() < 0 or y.max() >= n):
            raise FixedPointError(f"labels must lie in [0, {n}), got [{y.min()}, {y.max()}]")
        out = np.zeros((batch, n), dtype=np.int64)
        out[np.arange(batch), y.astype(np.int64)] = 1
        return out
    if y.shape != (batch, n) or not np.isin(y, (0, 1)).all():
        raise FixedPointError(f"targets must be labels [{batch}] or one-hot 0/1 [{batch}, {n}], got shape {y.shape}")
    return y.astype(np.int64)


def _stats(out: np.ndarray, onehot: np.ndarray, saturated: int) -> StepStats:
    o = np.clip(out, 1e-7, 1 - 1e-7)
    loss = float(-(onehot * np.log(o) + (1 - onehot) * np.log(1 - o)).sum(1).mean())
    correct = int((out.argmax(1) == onehot.argmax(1)).sum())
    return StepStats(loss, correct, int(out.shape[0]), saturated)


def train_step_fixed(
    net: FixedMLP,
    x,
    y,
    *,
    lr_shift: int,
    rng: np.random.Generator | int | None = None,
) -> tuple[FixedMLP, StepStats]:
    """One bit-accurate training step (FF, BP, UP; see the module docstring).

    Args:
        net: the network (not modified).
        x: real inputs ``[B, N_0]`` (quantized to ``formats.input``).
        y: labels ``[B]`` (ints) or one-hot targets ``[B, N_L]``.
        lr_shift: learning rate ``2**-lr_shift`` (the update is an arithmetic shift).
        rng: generator (or seed) for stochastic rounding; unused with round-to-nearest.

    Returns ``(new_net, stats)``; ``stats`` describe the forward pass before the update.
    """
    if not isinstance(lr_shift, (int, np.integer)) or isinstance(lr_shift, bool) or lr_shift < 0:
        raise FixedPointError(f"lr_shift={lr_shift!r} must be a non-negative integer (learning rate 2**-lr_shift)")
    f = net.formats
    rng = _as_rng(rng)
    tr = forward_fixed(net, x, rng=rng)
    B = tr.acts[0].shape[0]
    _check_widths(f, net.plans, B, int(lr_shift))
    sat = [tr.saturated]
    L = len(net.plans)
    onehot = _one_hot(y, net.sizes[-1], B)
    fa, fd, fw = f.act.frac_bits, f.delta.frac_bits, f.weight.frac_bits
    F = max(fa, fd)
    deltas: list[np.ndarray] = [None] * (L + 1)  # type: ignore[list-item]
    deltas[L] = _requant(f.delta, (tr.acts[L] << (F - fa)) - (onehot << F), F, rng, sat)
    for j in range(L - 1, 0, -1):  # junction j+1 back-propagates into layer j
        p, w = net.plans[j], net.weights[j]
        contrib = w[p.valid][None] * deltas[j + 1][:, p.rows]  # [B, E], frac fw + fd
        e = _requant(f.delta, p.scatter_left(contrib), fw + fd, rng, sat)
        deltas[j] = _requant(f.delta, e * tr.derivs[j - 1], fd + fa, rng, sat)
    new_w, new_b = [], []
    s = int(lr_shift)
    for j, (p, w, b) in enumerate(zip(net.plans, net.weights, net.biases)):
        a = tr.acts[j]
        fx = f.input.frac_bits if j == 0 else fa
        d = deltas[j + 1]
        grad = np.einsum("bj,bjk->jk", d, a[:, p.idx]) * p.valid  # frac fd + fx (int64, exact)
        G = max(fw, fd + fx + s)
        new_w.append(np.where(p.valid, _requant(f.weight, (w << (G - fw)) - (grad << (G - fd - fx - s)), G, rng, sat), 0))
        Gb = max(fw, fd + s)
        gb = d.sum(0)
        new_b.append(_requant(f.weight, (b << (Gb - fw)) - (gb << (Gb - fd - s)), Gb, rng, sat))
    stats = _stats(f.act.from_int(tr.acts[L]), onehot, sat[0])
    return FixedMLP(net.plans, tuple(new_w), tuple(new_b), f), stats


# ------------------------------------------------------------------------------------ float reference
def forward_float(net: FloatMLP, x) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Float64 forward: ``(acts, derivs)`` with ``acts[0] = x``."""
    a = np.asarray(x, dtype=np.float64)
    a = a[None] if a.ndim == 1 else a
    acts, ders = [a], []
    for j, (p, w, b) in enumerate(zip(net.plans, net.weights, net.biases)):
        h = (w[None] * a[:, p.idx]).sum(-1) + b[None]
        a, d = _act_float(h, "sigmoid" if j == len(net.plans) - 1 else net.hidden)
        acts.append(a)
        ders.append(d)
    return acts, ders


def train_step_float(net: FloatMLP, x, y, *, lr: float) -> tuple[FloatMLP, StepStats]:
    """The same step as :func:`train_step_fixed` in float64 with no rounding (learning rate ``lr``)."""
    acts, ders = forward_float(net, x)
    B, L = acts[0].shape[0], len(net.plans)
    onehot = _one_hot(y, acts[-1].shape[1], B)
    deltas: list[np.ndarray] = [None] * (L + 1)  # type: ignore[list-item]
    deltas[L] = acts[L] - onehot
    for j in range(L - 1, 0, -1):
        p, w = net.plans[j], net.weights[j]
        deltas[j] = p.scatter_left(w[p.valid][None] * deltas[j + 1][:, p.rows]) * ders[j - 1]
    new_w, new_b = [], []
    for j, (p, w, b) in enumerate(zip(net.plans, net.weights, net.biases)):
        grad = np.einsum("bj,bjk->jk", deltas[j + 1], acts[j][:, p.idx]) * p.valid
        new_w.append(w - lr * grad)
        new_b.append(b - lr * deltas[j + 1].sum(0))
    return FloatMLP(net.plans, tuple(new_w), tuple(new_b), net.hidden), _stats(acts[L], onehot, 0)
