"""Hardware model: junction cycles and clashes, pipeline timing, fixed point, export, resources."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from sparseforge.hardware import (
    ClockModel,
    FixedFormats,
    FixedPoint,
    FixedPointError,
    HardwareError,
    check_parallelism,
    estimate_resources,
    export_network,
    fixed_from_float,
    forward_fixed,
    forward_float,
    init_fixed_mlp,
    junction_model,
    layer_banks,
    load_export,
    pipeline_from_patterns,
    plan_pipeline,
    plot_z_sweep,
    predict_fixed,
    read_memh,
    sweep_z,
    to_float,
    train_step_fixed,
    train_step_float,
)
from sparseforge.topology import Pattern, random_uniform, structured
from sparseforge.topology.clash_free import design_clash_free

FPGA = dict(sizes=(1024, 64, 32), fan_out=(4, 16), z=(128, 32))


@pytest.fixture(scope="module")
def fpga_net():
    return design_clash_free(FPGA["sizes"], fan_out=FPGA["fan_out"], z=FPGA["z"], seed=0)


# ------------------------------------------------------------------------------------------ junction
def occupancy_bruteforce(p: Pattern, z: int) -> list[Counter]:
    """Reads per left bank per cycle, from the CSR arrays in stored order with plain Python."""
    nodes = p.indices.tolist()
    return [Counter(u % z for u in nodes[c : c + z]) for c in range(0, len(nodes), z)]


def test_clash_free_junction_has_no_clashes_and_the_memory_map_is_consistent(fpga_net):
    p = fpga_net.patterns[0]
    m = junction_model(p, 128, right_banks=32)
    assert (m.cycles, m.left_depth, m.weight_depth) == (32, 8, 32)
    assert m.stall_cycles == 0 and m.clashes == [] and m.is_clash_free and m.total_cycles == 32
    assert [max(c.values()) for c in occupancy_bruteforce(p, 128)] == [1] * 32  # z = 2 d_in: order-free
    for c in (0, 17, 31):
        acc = m.accesses(c)
        by = Counter((a.process, a.memory, a.bank) for a in acc)
        assert max(by.values()) == 1  # no memory is asked twice in one cycle by one process
        w = [a for a in acc if a.memory == "weight" and a.process == "FF"]
        assert sorted(a.bank for a in w) == list(range(128)) and {a.row for a in w} == {c}  # natural order
        ff = sorted(a.node for a in acc if a.memory == "act_left_ff")
        assert ff == sorted(p.ell()[2 * c : 2 * c + 2].reshape(-1).tolist())  # the cycle's two right nodes
        assert {a.node for a in acc if a.memory == "act_right"} == {2 * c, 2 * c + 1}  # both complete
    address, lane = m.bank_address_table()
    assert (np.sort(lane, axis=1) == np.arange(128)).all()  # every memory feeds one lane per cycle
    mem, row = m.weight_slot()
    assert np.array_equal(np.sort(mem * 32 + row), np.arange(p.edges))  # every weight has its own word


@pytest.mark.parametrize(
    "pattern,z",
    [
        (structured(1024, 64, 4, seed=0), 128),
        (random_uniform(1024, 64, d_out=4, seed=1), 128),
        (random_uniform(256, 64, d_out=4, seed=2), 32),
    ],
)
def test_random_patterns_show_their_clashes_and_stalls(pattern, z):
    m = junction_model(pattern, z, right_banks=z, within_row="stored")
    occ = occupancy_bruteforce(pattern, z)
    assert len(occ) == m.cycles
    stalls = sum(max(c.values()) - 1 for c in occ)
    assert stalls > 0 and m.stall_cycles == stalls
    for c, counter in enumerate(occ):
        assert all(m.left_occupancy[c, b] == n for b, n in counter.items())
    clashes = [x for x in m.clashes if x.side == "left"]
    expect = sorted((c, b, n) for c, counter in enumerate(occ) for b, n in counter.items() if n > 1)
    assert sorted((x.cycle, x.bank, len(x.nodes)) for x in clashes) == expect
    x = clashes[0]
    assert all(u % z == x.bank for u in x.nodes) and x.processes == ("FF", "BP", "UP")
    acc = m.accesses(x.cycle)
    assert sum(a.memory == "act_left_ff" and a.bank == x.bank for a in acc) == len(x.nodes)
    with pytest.raises(HardwareError, match="clash"):
        m.bank_address_table()


def test_stall_figures_random_versus_clash_free(fpga_net):
    """The measured figure for the report: FPGA junction 1 (32 cycles) with z = 128."""
    cf = junction_model(fpga_net.patterns[0], 128, right_banks=32)
    st = junction_model(structured(1024, 64, 4, seed=0), 128, right_banks=32)
    assert cf.stall_cycles == 0
    assert st.stall_cycles > 2 * st.cycles  # measured: 101 stall cycles on top of 32 (x4.2 slower)


def test_junction_errors():
    p = structured(64, 32, 16, seed=0)
    with pytest.raises(HardwareError, match=r"z=5 must divide the left layer width N=64.*divisors near z: 1, 2, 4, 8"):
        junction_model(p, 5)
    with pytest.raises(HardwareError, match=r"z=8 must divide the edge count W=100"):
        check_parallelism(64, 100, 8)
    m = junction_model(p, 32)
    with pytest.raises(HardwareError, match="cycle=32"):
        m.accesses(32)


# ------------------------------------------------------------------------------------------ pipeline
def test_block_cycle_reproduces_the_reference_rtl():
    rep = plan_pipeline(**FPGA)
    N, fo, z = FPGA["sizes"], FPGA["fan_out"], FPGA["z"]
    PROCTIME = 2
    rtl = [N[i] * fo[i] // z[i] + 2 + PROCTIME for i in range(2)]  # p*fo/z + 2 + PROCTIME
    assert [j.cycles for j in rep.junctions] == [32, 32]
    assert [j.clocks for j in rep.junctions] == rtl == [36, 36]
    assert rep.block_clocks == rep.clocks_per_input == 36 and rep.balanced and rep.advice == ()
    assert plan_pipeline(**FPGA, clock=ClockModel(fill_clocks=2, proc_time=1)).block_clocks == 35
    J = 2
    assert rep.latency_blocks == 2 * J and rep.latency_clocks == 4 * 36
    assert rep.speedup_vs_sequential == pytest.approx(3 * J)
    assert rep.edge_serial_clocks_per_input == 3 * (4096 + 4 + 1024 + 4)
    assert rep.speedup_vs_edge_serial == pytest.approx(3 * 5128 / 36)
    assert rep.throughput(100e6) == pytest.approx(100e6 / 36)
    assert rep.latency_seconds(100e6) == pytest.approx(144 / 100e6)
    inf = plan_pipeline(**FPGA, mode="infer")
    assert inf.speedup_vs_sequential == pytest.approx(J) and inf.latency_blocks == J and inf.multipliers == 160
    assert json.loads(json.dumps(rep.summary()))["block_clocks"] == 36


def test_unbalanced_pipeline_reports_and_advises():
    rep = plan_pipeline((1024, 64, 32), (4, 16), (128, 16))  # 32 vs 64 cycles
    assert not rep.balanced and rep.block_cycles == 64 and rep.block_clocks == 68
    text = " ".join(rep.advice)
    assert "junction 1" in text and "z=64" in text  # same throughput with fewer multipliers
    assert "junction 2 sets the block cycle" in text and "z=32" in text
    with pytest.raises(HardwareError, match=r"unbalanced.*\[32, 64\]"):
        plan_pipeline((1024, 64, 32), (4, 16), (128, 16), require_balanced=True)
    with pytest.raises(HardwareError, match=r"junction 1 .*z=100 must divide the left layer width N=1024"):
        plan_pipeline((1024, 64, 32), (4, 16), (100, 32))
    with pytest.raises(HardwareError, match="2 junctions, got 1"):
        plan_pipeline((1024, 64, 32), (4, 16), (128,))


def test_pipeline_from_patterns_counts_stalls(fpga_net):
    ok = pipeline_from_patterns(fpga_net, (128, 32))
    assert ok.block_clocks == 36 and ok.balanced
    bad = pipeline_from_patterns([structured(1024, 64, 4, seed=0), structured(64, 32, 16, seed=0)], (128, 32))
    assert not bad.balanced and bad.block_clocks > 36 and any("clash" in a for a in bad.advice)
    stalls = [j.stall_cycles for j in bad.junctions]
    assert all(s > 0 for s in stalls) and bad.block_cycles == max(32 + s for s in stalls)


def test_layer_banks_for_inputs_in_flight():
    b = layer_banks((1024, 64, 32))
    assert [(x.activation, x.derivative, x.delta) for x in b] == [(5, 0, 0), (3, 3, 2), (1, 0, 2)]
    b3 = layer_banks((8, 8, 8, 8))  # 2(J - i) + 1 with J = 3
    assert [x.activation for x in b3] == [7, 5, 3, 1]


# ----------------------------------------------------------------------------------------- fixed point
def test_fixed_point_format_range_rounding_and_saturation():
    f = FixedPoint(10, 2)
    assert (f.frac_bits, f.min_int, f.max_int, f.lsb) == (7, -512, 511, 2**-7)
    assert f.to_int(np.array([100.0, -100.0, 0.5 / 128, -0.5 / 128, 1.3])).tolist() == [511, -512, 1, 0, 166]
    assert f.quantize(3.999) == 511 / 128 and f.quantize(-4.5) == -4.0
    u = FixedPoint(8, 0, signed=False)
    assert u.quantize(1.0) == 255 / 256 and u.quantize(-0.3) == 0.0
    assert f.requantize(np.array([1 << 20, 3, -3]), 8).tolist() == [511, 2, -1]  # saturate; 1.5 -> 2; -1.5 -> -1
    assert np.array_equal(f.from_bits(f.to_bits(np.arange(-512, 512))), np.arange(-512, 512))
    t = torch.tensor([0.1, 7.0], dtype=torch.float32)
    q = f.quantize(t)
    assert q.dtype == torch.float32 and q.tolist() == [13 / 128, 511 / 128]
    assert f.to_int(t).dtype == torch.int64


def test_fixed_point_errors():
    with pytest.raises(FixedPointError, match=r"word_bits=4 cannot hold int_bits=5 .*need word_bits >= 6"):
        FixedPoint(4, 5)
    with pytest.raises(FixedPointError, match="need word_bits >= 9"):
        FixedPoint(8, 8)
    assert FixedPoint(8, 8, signed=False).frac_bits == 0
    with pytest.raises(FixedPointError, match="delta format must be signed"):
        FixedFormats(delta=FixedPoint(10, 2, signed=False))
    with pytest.raises(FixedPointError, match="ReLU derivative"):
        FixedFormats(hidden="relu", act=FixedPoint(10, 0))
    with pytest.raises(FixedPointError, match="rng"):
        FixedPoint(8, 2, rounding="stochastic").to_int(0.3)
    wide = FixedPoint(40, 4)
    pats = [structured(8, 4, 2, seed=0)]
    with pytest.raises(FixedPointError, match=r"needs \d+ bits .*weight=40"):
        init_fixed_mlp(pats, FixedFormats(weight=wide, act=wide, preact=wide, delta=wide))
    net = init_fixed_mlp(pats)
    with pytest.raises(FixedPointError, match="lr_shift"):
        train_step_fixed(net, np.zeros((1, 8)), [0], lr_shift=-1)


def test_stochastic_rounding_is_unbiased_and_seeded():
    f = FixedPoint(8, 0, rounding="stochastic")
    x = np.full(20000, 0.3 / 128)  # 0.3 LSB
    a = f.to_int(x, np.random.default_rng(0))
    assert set(np.unique(a)) == {0, 1} and abs(a.mean() - 0.3) < 0.02
    assert np.array_equal(a, f.to_int(x, np.random.default_rng(0)))
    k = f.requantize(np.full(20000, 3), f.frac_bits + 2, np.random.default_rng(1))  # 3/4 LSB
    assert abs(k.mean() - 0.75) < 0.02


def _wide_formats():
    w = FixedPoint(24, 4)
    return FixedFormats(weight=w, act=w, preact=w, delta=w, input=FixedPoint(16, 0, signed=False))


def test_wide_fixed_step_equals_float_math():
    fmts = _wide_formats()
    pats = design_clash_free((16, 8, 4), fan_out=(4, 4), z=(4, 4), seed=1).patterns
    rng = np.random.default_rng(3)
    for hidden in ("sigmoid", "relu"):
        f = FixedFormats(**{**fmts.__dict__, "hidden": hidden})
        net = init_fixed_mlp(pats, f, seed=2)
        x = f.input.quantize(rng.random((4, 16)))
        y = np.array([0, 1, 3, 2])
        out_fx = predict_fixed(net, x)
        acts, _ = forward_float(to_float(net), x)
        assert np.abs(out_fx - acts[-1]).max() <= 2 * f.act.lsb
        new_fx, st_fx = train_step_fixed(net, x, y, lr_shift=3)
        new_fl, st_fl = train_step_float(to_float(net), x, y, lr=2**-3)
        got = to_float(new_fx)
        for a, b in zip(got.weights + got.biases, new_fl.weights + new_fl.biases):
            assert np.abs(a - b).max() <= f.weight.lsb  # within 2**-frac of float math
        assert st_fx.loss == pytest.approx(st_fl.loss, abs=1e-4) and st_fx.correct == st_fl.correct


# an independent, pure-Python big-integer reference of the documented datapath
def _rnd(k: int, s: int) -> int:
    return (k + (1 << (s - 1))) >> s if s > 0 else k << (-s)


def _sat(k: int, f: FixedPoint) -> int:
    return min(max(k, f.min_int), f.max_int)


def _ref_step(pats, W, b, x, labels, f: FixedFormats, s: int):
    fi, fa, fp, fd, fw = f.input.frac_bits, f.act.frac_bits, f.preact.frac_bits, f.delta.frac_bits, f.weight.frac_bits
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    q = lambda v, fmt: _sat(math.floor(v * 2**fmt.frac_bits + 0.5), fmt)  # noqa: E731
    L = len(pats)
    grads_w = [[[0] * len(W[j][r]) for r in range(pats[j].n_out)] for j in range(L)]
    grads_b = [[0] * pats[j].n_out for j in range(L)]
    for xn, lab in zip(x, labels):
        acts, ders = [[q(v, f.input) for v in xn]], []
        for j, p in enumerate(pats):
            ell = p.ell().tolist()
            fx = fi if j == 0 else fa
            a_new, d_new = [], []
            for r in range(p.n_out):
                acc = sum(W[j][r][t] * acts[-1][ell[r][t]] for t in range(len(ell[r]))) + (b[j][r] << fx)
                h = _sat(_rnd(acc, fw + fx - fp), f.preact)
                sv = sig(h / 2**fp)
                a_new.append(q(sv, f.act))
                d_new.append(q(sv * (1 - sv), f.act))
            acts.append(a_new)
            ders.append(d_new)
        F = max(fa, fd)
        deltas = [None] * (L + 1)
        deltas[L] = [_sat(_rnd((a << (F - fa)) - ((1 << F) if i == lab else 0), F - fd), f.delta) for i, a in enumerate(acts[L])]
        for j in range(L - 1, 0, -1):
            ell = pats[j].ell().tolist()
            e = [0] * pats[j].n_in
            for r, row in enumerate(ell):
                for t, u in enumerate(row):
                    e[u] += W[j][r][t] * deltas[j + 1][r]
            e = [_sat(_rnd(v, fw), f.delta) for v in e]
            deltas[j] = [_sat(_rnd(v * d, fa), f.delta) for v, d in zip(e, ders[j - 1])]
        for j, p in enumerate(pats):
            for r, row in enumerate(p.ell().tolist()):
                grads_b[j][r] += deltas[j + 1][r]
                for t, u in enumerate(row):
                    grads_w[j][r][t] += deltas[j + 1][r] * acts[j][u]
    newW, newb = [], []
    for j in range(L):
        fx = fi if j == 0 else fa
        G = max(fw, fd + fx + s)
        newW.append([[_sat(_rnd((w << (G - fw)) - (g << (G - fd - fx - s)), G - fw), f.weight) for w, g in zip(wr, gr)] for wr, gr in zip(W[j], grads_w[j])])
        Gb = max(fw, fd + s)
        newb.append([_sat(_rnd((bb << (Gb - fw)) - (g << (Gb - fd - s)), Gb - fw), f.weight) for bb, g in zip(b[j], grads_b[j])])
    return newW, newb


@pytest.mark.parametrize("scale", [1.0, 6.0])  # 6.0 drives pre-activations, deltas and weights into saturation
def test_fixed_step_is_bit_exact_against_a_python_integer_reference(scale):
    f = FixedFormats()  # 10-bit words, 2 integer bits; 8-bit inputs
    pats = design_clash_free((8, 4, 4), fan_out=(2, 4), z=(4, 4), seed=5).patterns
    rng = np.random.default_rng(7)
    ws = [rng.normal(0, scale, size=(p.n_out, p.d_in)) for p in pats]
    bs = [rng.normal(0, scale, size=p.n_out) for p in pats]
    net = fixed_from_float(pats, ws, bs, f)
    x = rng.random((3, 8))
    labels = [0, 3, 1]
    new, stats = train_step_fixed(net, x, labels, lr_shift=2)
    W = [w.tolist() for w in net.weights]
    b = [v.tolist() for v in net.biases]
    refW, refb = _ref_step(pats, W, b, x, labels, f, 2)
    assert [w.tolist() for w in new.weights] == refW
    assert [v.tolist() for v in new.biases] == refb
    if scale > 1:
        assert stats.saturated > 0
        assert max(int(np.abs(w).max()) for w in new.weights) == 512  # clipped at -512 (or 511), no wrap
        for w in new.weights:
            assert w.min() >= -512 and w.max() <= 511
    tr = forward_fixed(net, x)
    assert all(a.dtype == np.int64 for a in tr.acts) and tr.acts[0].max() <= 255


def test_fixed_training_learns_a_tiny_task():
    """A few hundred online steps on a separable toy problem lower the loss (no MNIST here)."""
    pats = design_clash_free((16, 8, 4), fan_out=(4, 4), z=(4, 4), seed=0).patterns
    net = init_fixed_mlp(pats, seed=0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 256)
    x = np.clip(0.1 + 0.8 * (np.arange(16)[None, :] // 4 == labels[:, None]) + 0.05 * rng.random((256, 16)), 0, 0.99)
    first, last = [], []
    for epoch in range(4):
        for i in range(0, 256, 4):
            net, st = train_step_fixed(net, x[i : i + 4], labels[i : i + 4], lr_shift=2)
            (first if epoch == 0 else last).append(st.correct / st.batch)
    assert np.mean(last[-32:]) > np.mean(first[:16]) and np.mean(last[-32:]) > 0.9


# --------------------------------------------------------------------------------------------- export
def test_export_round_trips_patterns_and_weights(tmp_path, fpga_net):
    net = init_fixed_mlp(fpga_net, seed=3)
    path = export_network(tmp_path, net, FPGA["z"], extra=dict(seed=3))
    cfg = json.loads(path.read_text())
    assert cfg["sizes"] == [1024, 64, 32] and [j["z"] for j in cfg["junctions"]] == [128, 32]
    assert cfg["pipeline"]["block_clocks"] == 36 and cfg["extra"] == {"seed": 3}
    assert cfg["resources"]["multipliers"] == 480
    j1 = tmp_path / "junction1"
    assert len(list(j1.glob("weight_*.hex"))) == 128 and len(list(j1.glob("addr_*.hex"))) == 128
    lines = (j1 / "weight_5.hex").read_text().splitlines()
    assert len(lines) == 32 and all(len(s) == 3 and int(s, 16) < 1024 for s in lines)  # 10-bit words
    addr = (j1 / "addr_0.hex").read_text().splitlines()
    assert len(addr) == 32 and all(int(s, 16) < 8 for s in addr)  # depth N/z = 8
    back = load_export(tmp_path)
    assert back.patterns == tuple(fpga_net.patterns) and back.z == (128, 32)
    for a, b in zip(back.weights, net.weights_csr()):
        assert np.array_equal(a, b)
    for a, b in zip(back.biases, net.biases):
        assert np.array_equal(a, b)
    # the tables alone rebuild cycle 0 of junction 1: memory b row addr[b] goes to lane lane[b]
    address = np.array([read_memh(j1 / f"addr_{b}.hex")[0] for b in range(128)])
    lanes = np.array([read_memh(j1 / f"lane_{b}.hex")[0] for b in range(128)])
    nodes = np.empty(128, dtype=np.int64)
    nodes[lanes] = address * 128 + np.arange(128)
    assert sorted(nodes.tolist()) == sorted(fpga_net.patterns[0].ell()[:2].reshape(-1).tolist())


def test_export_variable_in_degree_and_float_weights(tmp_path):
    p = Pattern.from_edges(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 3]), 4, 2)  # rows [0,1,2], [3]; z = 2
    w = np.array([0.5, -1.25, 3.0, -4.0])
    export_network(tmp_path, [p], (2,), weights=[w], biases=[np.array([0.25, -0.5])])
    back = load_export(tmp_path)
    assert back.patterns[0] == p
    assert np.array_equal(back.weight_format.from_int(back.weights[0]), w)
    assert np.array_equal(back.weight_format.from_int(back.biases[0]), [0.25, -0.5])


def test_export_refuses_clashing_patterns_and_bad_z(tmp_path):
    with pytest.raises(HardwareError, match="clash"):
        export_network(tmp_path, [structured(64, 32, 16, seed=0)], (32,))
    with pytest.raises(HardwareError, match="must divide the edge count W=10"):
        export_network(tmp_path, [random_uniform(8, 4, edges=10, seed=0)], (4,))


# ------------------------------------------------------------------------------------------ resources
def test_resource_estimate_and_sweep(tmp_path):
    r = estimate_resources(**FPGA)
    j1, j2 = r.junctions
    assert r.multipliers == 3 * (128 + 32) and (j1.multipliers, j2.multipliers) == (384, 96)
    assert j1.weight_bits == 4096 * 10 and j2.weight_bits == 1024 * 10
    assert j1.address_bits == 32 * 128 * 3 and j1.lane_bits == 32 * 128 * 7  # log2(8), log2(128)
    assert j1.activation_bits == 5 * 1024 * 10 and j2.derivative_bits == 3 * 64 * 10
    assert j2.output_bits == 32 * 10 and j1.delta_bits == 2 * 64 * 10
    assert r.memory_bits == sum(j.memory_bits for j in r.junctions)
    assert estimate_resources(**FPGA, interleaver=3).memory_bits < r.memory_bits  # counters, no tables
    pts = sweep_z((1024, 64, 32), (4, 16))
    assert [p.z for p in pts][:3] == [(256, 64), (128, 32), (64, 16)]
    assert all(p.balanced for p in pts)
    assert [p.clocks_per_input for p in pts] == sorted(p.clocks_per_input for p in pts)
    assert [p.multipliers for p in pts] == sorted((p.multipliers for p in pts), reverse=True)
    assert [p.blocks for p in pts] == sorted((p.blocks for p in pts), reverse=True)  # more z: more memories
    assert next(p for p in pts if p.z == (128, 32)).clocks_per_input == 36
    all_pts = sweep_z((1024, 64, 32), (4, 16), balanced_only=False)
    assert len(all_pts) > len(pts) and any(not p.balanced for p in all_pts)
    png = plot_z_sweep(pts + [p for p in all_pts if not p.balanced][:5], tmp_path / "sweep.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
