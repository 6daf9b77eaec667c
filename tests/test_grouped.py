"""Grouped patterns: shared index lists per group, fixed degrees, clear errors, kernel detection."""

import numpy as np
import pytest

from sparseforge.kernels import SparseLayout
from sparseforge.topology import FAMILIES, TopologyError, design, structured
from sparseforge.topology.grouped import grouped


@pytest.mark.parametrize("n_in,n_out,d_out,group", [(64, 32, 8, 4), (40, 24, 6, 2), (30, 48, 16, 8), (12, 12, 12, 4)])
def test_groups_share_inputs_and_degrees_are_fixed(n_in, n_out, d_out, group):
    p = grouped(n_in, n_out, d_out, group=group, seed=0)
    assert p.shape == (n_out, n_in)
    assert p.is_fixed_out_degree and p.d_out == d_out
    assert p.is_fixed_in_degree and p.d_in == n_in * d_out // n_out
    blocks = p.ell().reshape(n_out // group, group, -1)
    assert (blocks == blocks[:, :1]).all()


def test_deterministic_and_group_one_is_structured():
    a, b = grouped(64, 32, 8, group=4, seed=5), grouped(64, 32, 8, group=4, seed=5)
    assert a == b
    assert grouped(64, 32, 8, group=4, seed=6) != a
    assert grouped(64, 32, 8, group=1, seed=5) == structured(64, 32, 8, seed=5)


def test_groups_are_not_all_the_same():
    p = grouped(256, 64, 16, group=4, seed=0)
    heads = p.ell()[::4]
    assert len({tuple(r) for r in heads}) == len(heads)  # 16 distinct index lists


def test_errors_name_values_and_what_works():
    with pytest.raises(TopologyError, match=r"group=3 must divide n_out=32; nearby divisors: \[1, 2, 4\]"):
        grouped(64, 32, 6, group=3)
    with pytest.raises(TopologyError, match=r"d_out=6 must be a multiple of group=4; e\.g\. d_out = 4 or 8"):
        grouped(64, 32, 6, group=4)
    with pytest.raises(TopologyError, match="not an integer"):  # in-degree check of the structured core
        grouped(10, 8, 2, group=2)
    with pytest.raises(TopologyError, match="positive integer"):
        grouped(64, 32, 8, group=0)


def test_registered_family_and_design():
    assert FAMILIES["grouped"] is grouped
    net = design([64, 32, 16], density=0.25, family="grouped", group=4, seed=1)
    for p in net.patterns:
        blocks = p.ell().reshape(p.n_out // 4, 4, -1)
        assert (blocks == blocks[:, :1]).all()


def test_layout_detects_groups_for_the_kernels():
    p = grouped(64, 32, 8, group=4, seed=0)
    layout = SparseLayout.from_pattern(p)
    assert layout.group == 4
    ungrouped = SparseLayout.from_pattern(structured(64, 32, 8, seed=0))
    assert ungrouped.group == 1
    # same density and degrees as the ungrouped pattern
    assert np.array_equal(p.out_degrees, structured(64, 32, 8, seed=0).out_degrees)
