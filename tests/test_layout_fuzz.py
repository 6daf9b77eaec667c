"""Corrupted layouts never crash the process or return garbage (the fuzz runs in a child process)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseforge.kernels import SparseLayout
from sparseforge.topology import structured


def test_fuzzed_corrupt_layouts_are_refused_or_correct_and_never_crash():
    script = Path(__file__).with_name("layout_fuzz.py")
    proc = subprocess.run([sys.executable, str(script), "400"], capture_output=True, text=True, timeout=600)
    assert proc.returncode >= 0, f"the fuzz process crashed (signal {-proc.returncode}):\n{proc.stderr[-2000:]}"
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["failures"] == [], counts["failures"][:5]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert counts["tried"] == 400 and counts["refused"] + counts["accepted_and_correct"] == 400
    assert counts["refused"] > 300  # almost every corruption must be caught at the door


@pytest.mark.parametrize("field, value, message", [
    ("indices", lambda l: l.indices.clone().index_fill_(0, torch.tensor([3]), 48), r"indices: must lie in \[0, 48\)"),
    ("indptr", lambda l: l.indptr.clone().index_fill_(0, torch.tensor([2]), 0), "indptr: must be non-decreasing"),
    ("indptr", lambda l: l.indptr[:-1], "indptr: must be 1-D with 41 entries"),
    ("group", lambda l: 4, "group: claims every 4 consecutive rows share one index list"),
    ("t_perm", lambda l: l.t_perm.flip(0), "t_perm: the transposed pattern"),
    ("indices", lambda l: l.indices.int(), "indices: must be int64"),
])
def test_layout_names_what_is_wrong(field, value, message):
    layout = SparseLayout.from_pattern(structured(48, 40, 5, seed=1))
    import dataclasses

    with pytest.raises(ValueError, match=message):
        dataclasses.replace(layout, **{field: value(layout)})


def test_valid_layouts_survive_validation_unchanged():
    p = structured(48, 40, 5, seed=1)
    layout = SparseLayout.from_pattern(p)
    assert np.array_equal(layout.indices.numpy(), p.indices) and layout.group == 1
