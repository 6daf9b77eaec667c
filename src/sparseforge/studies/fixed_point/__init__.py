"""Recipes of the hardware model (seeds 000, 001): fixed-point vs float training, and table rows.

The fixed-point study trains one clash-free pre-defined sparse MLP several times on the same data, from
the same initial weights, in the same sample order and with the same power-of-two learning rate:

* once in float64 (:func:`~sparseforge.hardware.train_step_float`, no rounding anywhere), and
* once per word format in bit-accurate fixed point (:func:`~sparseforge.hardware.train_step_fixed`):
  weights, activations, pre-activations and deltas in ``FixedPoint(word_bits, int_bits)`` (1 sign bit,
  ``int_bits`` integer bits, the rest fraction) for every ``word_bits`` x ``int_bits`` of the sweep, 8-bit
  unsigned inputs, ROM nonlinearities, the update an arithmetic shift by ``lr_shift``.

The sweep over both shows the two ways fixed point breaks down: too few fraction bits (an update smaller
than half a weight LSB rounds to nothing, so learning freezes) and too few integer bits (a saturated
pre-activation keeps a sigmoid output at ``sigmoid(-2**int_bits)`` instead of letting it approach 0, so
the cross-entropy error ``a - y`` of every wrong output never vanishes and keeps pushing its weights
towards saturation; with 2 integer bits that is ``0.018`` per output per step).

Both arithmetics see the same 8-bit input words (MNIST pixels are 8-bit already; the hardware's input
memory holds them as ``FixedPoint(8, 0, unsigned)``), so the difference between the runs is the datapath's
word length and nothing else. The initial weights are drawn once in float64 (normal, std
``sqrt(2 / (d_in + d_out))`` per junction, biases 0) and rounded to each word format.

Network. The default is the FPGA's ``N = (1024, 64, 32)``, ``d_out = (4, 16)``, ``z = (128, 32)`` (the
configuration :func:`~sparseforge.hardware.plan_pipeline` reproduces the RTL's 36 clocks for): 28x28
images are zero-padded to 32x32 (1024 inputs, as the hardware's input memory is organised); labels use the
first ``n_classes`` of the 32 outputs, the other outputs are trained towards 0 and ignored by the argmax.
Any ``net`` works whose first layer is the flattened image (or a zero-padded square) and whose last layer
has at least ``n_classes`` outputs.

Resumable: the run directory is a :class:`~sparseforge.runs.RunStore` tied to the settings of
``RUN_KEYS`` (others are refused naming the fields; word lengths, epochs and the float twin may change);
each arithmetic is a sub-run (``float``, ``w10_i2``, ...) with a checksummed ``checkpoint.pt`` written
atomically after every epoch (state and history in one file; the previous one kept) and ``result.json``
when it is done; a rerun skips finished sub-runs, continues partial ones, and extends them when
``epochs`` grows.
Library code: nothing here prints; progress goes to the ``notify`` callback.
"""

from __future__ import annotations

from .schema import build_topology, FixedStudyConfig, range_drift, study_formats, validate_study
from .data import StudyData, hardware_inputs, load_study_data
from .run import load_trained_fixed, run_fixed_study
from .tables import clash_rows, plan_rows, sweep_rows

__all__ = [
    "build_topology", "clash_rows", "FixedStudyConfig", "hardware_inputs", "load_study_data",
    "load_trained_fixed", "plan_rows", "range_drift", "run_fixed_study", "study_formats", "StudyData",
    "sweep_rows", "validate_study"
]
