"""The CUDA backend's own behaviour on the simulator (``cuda-sim``): the
registry-wide tests and the fuzz already run every cuda-sim implementation
against the reference; these pin what is specific to the CUDA launchers --
chunking, split-K, grid-stride loops, the finite-weight fallback, phase
crops, float16 accumulation, determinism, selection."""

import numpy as np
import pytest

import convops as co
from convops import config, reference, registry
from convops.cuda import common
from convops.problem import ConvProblem

from helpers import assert_close

pytestmark = pytest.mark.skipif("cuda-sim" not in co.available_backends(), reason="needs a C++ compiler")

ALGORITHMS = ("direct", "im2col", "implicit_gemm")


def _all_passes(x, w, algorithm, **kw):
    """(result, reference) of fwd, dgrad and wgrad on cuda-sim."""
    rng = np.random.default_rng(5)
    y = co.conv(x, w, backend="cuda-sim", algorithm=algorithm, **kw)
    gy = rng.standard_normal(y.shape).astype(x.dtype)
    return [
        (y, co.conv(x, w, backend="numpy", **kw)),
        (co.conv_grad_input(gy, w, x.shape, backend="cuda-sim", algorithm=algorithm, **kw),
         co.conv_grad_input(gy, w, x.shape, backend="numpy", **kw)),
        (co.conv_grad_weight(x, gy, w.shape, backend="cuda-sim", algorithm=algorithm, **kw),
         co.conv_grad_weight(x, gy, w.shape, backend="numpy", **kw)),
    ]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_input_extent_ending_inside_the_low_padding(algorithm):
    # stride 4, padding (6, 0): both outputs read padding only; the phase
    # decomposition's crop of the padded gradient is empty (it was a
    # broadcasting error in implicit_gemm's strided dgrad)
    x = np.ones((1, 1, 2), np.float32)
    w = np.ones((1, 1, 1), np.float32)
    for out, ref in _all_passes(x, w, algorithm, stride=4, padding=((6, 0),)):
        assert_close(out, ref, "float32")


def test_im2col_chunks_and_split_k(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 9, 7)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    kw = dict(stride=(2, 1), padding=1)
    whole = [out for out, _ in _all_passes(x, w, "im2col", **kw)]
    from convops.cuda import im2col, implicit_gemm
    q = common.kernel_problem(co.explain(x, w, backend="cuda-sim", algorithm="im2col", **kw).problem)
    per_image = 3 * 6 * 5 * 8 * 4  # one image's column buffer: C*T*R*S x P*Q float32
    assert im2col.workspace_bytes(q) == 5 * per_image
    monkeypatch.setattr(config, "cuda_workspace_bytes", 2 * per_image)  # 3 chunks: 2 + 2 + 1 images
    assert im2col.images_per_chunk(q) == 2
    for (out, ref), first in zip(_all_passes(x, w, "im2col", **kw), whole):
        assert_close(out, ref, "float32")
        assert_close(out, first, "float32")
    monkeypatch.setattr(config, "cuda_min_split", 8)  # split-K: several slices per GEMM
    assert implicit_gemm.wgrad_splits(q.with_op("wgrad"))[0] > 1
    assert im2col.wgrad_plan(q.with_op("wgrad"))[0] > 1
    for algorithm in ("implicit_gemm", "im2col"):  # (im2col: 3 image chunks x several slices each)
        for out, ref in _all_passes(x, w, algorithm, **kw):
            assert_close(out, ref, "float32")


def test_grid_stride_loops_cover_everything(monkeypatch):
    monkeypatch.setattr(config, "cuda_max_grid_blocks", 1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float64)
    w = rng.standard_normal((8, 1, 3, 3)).astype(np.float64)
    for algorithm in ("direct", "depthwise"):
        for out, ref in _all_passes(x, w, algorithm, padding=1, groups=4):
            assert_close(out, ref, "float64")


@pytest.mark.parametrize("algorithm", ALGORITHMS + ("depthwise",))
def test_nan_weight_reaches_only_the_inputs_it_touches(algorithm):
    # stride 2 with a kernel of 1: the dgrad taps never reach odd inputs, so a
    # NaN weight must leave them finite (implicit_gemm's zero-filled borders
    # would multiply it: it falls back to the exact gather)
    x = np.ones((1, 2, 7), np.float32)
    w = np.ones((2, 1, 1), np.float32)
    w[1, 0, 0] = np.nan
    gy = np.ones((1, 2, 4), np.float32)
    kw = dict(stride=2, groups=2)
    gx = co.conv_grad_input(gy, w, x.shape, backend="cuda-sim", algorithm=algorithm, **kw)
    ref = co.conv_grad_input(gy, w, x.shape, backend="numpy", **kw)
    assert np.isfinite(ref[0, 1, 1::2]).all() and np.isnan(ref[0, 1, ::2]).all()
    assert_close(gx, ref, "float32")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_float16_accumulates_in_float32(algorithm):
    # 4096 products of ones: a float16 sum stalls at 2048 (2048 + 1 rounds back
    # to 2048); float32 accumulation reaches 4096, which float16 holds exactly
    x = np.ones((1, 4096, 1), np.float16)
    w = np.ones((1, 4096, 1), np.float16)
    y = co.conv(x, w, backend="cuda-sim", algorithm=algorithm)
    assert y.dtype == np.float16
    assert float(y[0, 0, 0]) == 4096.0


@pytest.mark.parametrize("algorithm", ALGORITHMS + ("depthwise",))
def test_bitwise_deterministic(algorithm):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    first = [out for out, _ in _all_passes(x, w, algorithm, padding=1, groups=4, stride=2)]
    second = [out for out, _ in _all_passes(x, w, algorithm, padding=1, groups=4, stride=2)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_selection_and_explain():
    x = np.zeros((1, 4, 8, 8), np.float32)
    w = np.zeros((6, 2, 3, 3), np.float32)
    assert co.explain(x, w, groups=2).chosen.backend == "numba"  # auto never picks the simulator
    plan = co.explain(x, w, groups=2, backend="cuda-sim")
    assert plan.chosen.name == "cuda-sim/implicit_gemm"
    reasons = dict((impl.name, r) for impl, r in plan.considered)
    assert any("not depthwise" in r for r in reasons["cuda-sim/depthwise"])


def test_big_activations_go_to_64_bit_kernels():
    # 2 x 1024 x 1024 x 1024 elements: past 2^31, every extent 32-bit
    p = ConvProblem.forward(n=2, c_in=1024, c_out=1024, in_size=(1024, 1024), kernel=(1, 1), stride=(1, 1),
                            padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, dtype="float16")
    impls = {i.algorithm: i for i in registry.implementations(op="fwd", backend="cuda-sim")}
    assert any("2^31" in r for r in impls["implicit_gemm"].reasons(p))
    assert not impls["direct"].reasons(p)
    wide = ConvProblem.forward(n=1, c_in=1, c_out=1, in_size=(2**31 + 5,), kernel=(3,), stride=(1,),
                               padding=((1, 1),), dilation=(1,), groups=1, dtype="float16")
    assert all(any("32-bit extents" in r for r in i.reasons(wide)) for i in impls.values())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_float16_dgrad_sums_are_not_rounded_to_float16(algorithm, mode):
    # per-tap (im2col's columns) or per-padded-position (the fold) partial sums
    # of +-60000 would overflow float16 (inf - inf = NaN) if stored as float16
    w = np.full((2, 1, 2), 300, np.float16)
    w[:, :, 1] = -300
    kw = dict(padding=1, padding_mode=mode)
    shape = (1, 1, 4)
    for pattern in ([200] * 5, [200, 0, -200, 0, 0]):
        dy = np.broadcast_to(np.array(pattern, np.float16), (1, 2, 5)).copy()
        gx = co.conv_grad_input(dy, w, shape, backend="cuda-sim", algorithm=algorithm, **kw)
        ref = co.conv_grad_input(dy, w, shape, backend="numpy", **kw)
        assert not np.isnan(ref).any()
        assert_close(gx, ref, "float16")


def test_bias_in_strided_dgrad_is_rounded_once():
    rng = np.random.default_rng(3)
    dy = rng.standard_normal((1, 3, 5, 5)).astype(np.float16)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float16)
    b = rng.standard_normal(2).astype(np.float16)
    kw = dict(stride=3, padding=1, output_padding=1)
    outs = [co.conv_transpose(dy, w, b, backend="cuda-sim", algorithm=a, **kw) for a in ("implicit_gemm", "direct")]
    ref = co.conv_transpose(dy, w, b, backend="numpy", **kw)
    for out in outs:
        assert_close(out, ref, "float16")


def test_wgrad_of_an_empty_reduction_has_a_plan():
    from convops.cuda import implicit_gemm
    p = ConvProblem.forward(n=0, c_in=2, c_out=3, in_size=(5,), kernel=(3,), stride=(1,), padding=((0, 0),),
                            dilation=(1,), groups=1, op="wgrad")
    assert implicit_gemm.wgrad_splits(p.expand(3))[0] == 1
    assert implicit_gemm.workspace_bytes(p) >= 0


def test_supports_refuses_what_the_kernels_cannot_launch():
    impls = {(i.op, i.algorithm): i for i in registry.implementations(backend="cuda-sim")}
    # im2col's GEMM columns (C/g*T*R*S) past 65535 tiles: grid y would exceed its limit
    wide = ConvProblem.forward(n=1, c_in=1, c_out=1, in_size=(8388609,), kernel=(8388609,), stride=(1,),
                               padding=((0, 0),), dilation=(1,), groups=1, op="wgrad")
    assert any("grid y" in r for r in impls[("wgrad", "im2col")].reasons(wide))
    assert any("grid y" in r for r in impls[("wgrad", "implicit_gemm")].reasons(wide))
    # depthwise dgrad in reflect mode runs on the padded input: 64 x 8190^2 elements, past 2^31
    padded = ConvProblem.forward(n=1, c_in=64, c_out=64, in_size=(4096, 4096), kernel=(3, 3), stride=(4, 4),
                                 padding=((2047, 2047), (2047, 2047)), dilation=(1, 1), groups=64,
                                 padding_mode="reflect", op="dgrad")
    assert any("2^31" in r for r in impls[("dgrad", "depthwise")].reasons(padded))


@pytest.mark.parametrize("shape, kw, rpt", [
    ((2, 3, 37, 33), dict(padding=1, padding_mode="reflect"), 4),           # 2 row tiles (32 + 5), 2 column tiles
    ((1, 2, 20, 9), dict(padding=(2, 0), stride=(1, 2), dilation=2), 3),   # 3 rows per thread: 24 > 20 rows
    ((1, 2, 100, 110), dict(stride=(4, 1), dilation=(1, 49)), 2),          # the patch limit halves 4 -> 2
    ((1, 2, 100, 230), dict(stride=(4, 1), dilation=(1, 109)), 1),         # ... and 2 -> 1
])
def test_depthwise_fwd_rows_per_thread(shape, kw, rpt):
    """fwd's tiles of 8*rpt rows: every choice of rpt, partial tiles, and the
    patch limit that lowers it, against the reference."""
    from convops.cuda import depthwise
    rng = np.random.default_rng(9)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((shape[1] * 2, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(shape[1] * 2).astype(np.float32)
    kw = dict(kw, groups=shape[1])
    q = common.kernel_problem(co.explain(x, w, backend="cuda-sim", algorithm="depthwise", **kw).problem)
    assert depthwise.rows_per_thread(q) == rpt
    out = co.conv(x, w, b, backend="cuda-sim", algorithm="depthwise", **kw)
    assert_close(out, co.conv(x, w, b, backend="numpy", **kw), "float32")


@pytest.mark.parametrize("target_blocks", [1, 64, 10**6])
def test_depthwise_wgrad_tap_groups_and_slices(monkeypatch, target_blocks):
    """wgrad's blocks: taps in groups of 16 (a 5x5 kernel: two groups, the
    second partial), depth taps, a channel multiplier, and the tile list in one
    slice, several, or one per tile (slices past the end add zeros)."""
    from convops.cuda import depthwise
    monkeypatch.setattr(config, "cuda_depthwise_wgrad_blocks", target_blocks)
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3, 3, 11, 37)).astype(np.float64)
    w_shape = (6, 1, 2, 5, 5)
    kw = dict(padding=(1, 2, 3), stride=(1, 2, 1), groups=3, padding_mode="reflect")
    gy = rng.standard_normal(co.conv(x, np.ones(w_shape), backend="numpy", **kw).shape)
    q = common.kernel_problem(co.explain(x, gy, op="conv_grad_weight", weight_shape=w_shape, backend="cuda-sim",
                                         algorithm="depthwise", **kw).problem)
    splits = depthwise.wgrad_plan(q)[1]
    assert (splits == 1) if target_blocks == 1 else (splits > 1)
    out = co.conv_grad_weight(x, gy, w_shape, backend="cuda-sim", algorithm="depthwise", **kw)
    assert_close(out, co.conv_grad_weight(x, gy, w_shape, backend="numpy", **kw), "float64")


@pytest.mark.parametrize("shape, wshape, kw, as_fwd", [
    ((2, 3, 20, 37), (3, 1, 3, 3), dict(padding=1), True),
    ((1, 2, 9, 11), (2, 1, 3, 5), dict(padding=((4, 0), (4, 1)), dilation=(2, 1)), True),  # pads up to d*(k-1)
    ((1, 2, 9, 11), (2, 1, 3, 5), dict(padding=((4, 0), (5, 1)), dilation=(2, 1)), False),  # past it: gather
    ((1, 2, 4, 5, 6), (2, 1, 2, 3, 2), dict(padding=(1, 0, 1), dilation=(2, 1, 1)), True),   # 3-D
    ((1, 2, 9, 11), (4, 1, 3, 3), dict(padding=1), False),                                  # multiplier 2: gather
    ((1, 2, 9, 11), (2, 1, 3, 3), dict(padding=1, stride=2), False),                        # strided: gather
    ((1, 1, 1, 6), (1, 1, 2, 3), dict(padding=1, stride=(2, 1)), False),  # one output row: canonical stride 1, no fwd
])
def test_depthwise_dgrad_as_flipped_fwd(shape, wshape, kw, as_fwd):
    """Stride-1 depthwise dgrad with one output per channel runs fwd's tiles on
    dy with the flipped weight (else the gather); a non-finite weight always
    takes the gather, whose terms are only the reference's."""
    from convops.cuda import depthwise
    rng = np.random.default_rng(17)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(wshape).astype(np.float32)
    kw = dict(kw, groups=shape[1])
    gy = rng.standard_normal(co.conv(x, w, backend="numpy", **kw).shape).astype(np.float32)
    q = common.kernel_problem(co.explain(gy, w, op="conv_grad_input", input_shape=shape, backend="cuda-sim",
                                         algorithm="depthwise", **kw).problem)
    assert (depthwise.dgrad_as_fwd(q) is not None) == as_fwd
    for weight in (w, np.where(np.arange(w.size).reshape(w.shape) == 1, np.inf, w).astype(np.float32)):
        out = co.conv_grad_input(gy, weight, shape, backend="cuda-sim", algorithm="depthwise", **kw)
        assert_close(out, co.conv_grad_input(gy, weight, shape, backend="numpy", **kw), "float32")
    if isinstance(kw["padding"], int):  # conv_transpose: dgrad with a bias
        b = rng.standard_normal(shape[1]).astype(np.float32)
        tkw = dict(kw, output_size=shape[2:])
        out = co.conv_transpose(gy, w, b, backend="cuda-sim", algorithm="depthwise", **tkw)
        assert_close(out, co.conv_transpose(gy, w, b, backend="numpy", **tkw), "float32")


def test_depthwise_wgrad_leaves_room_for_its_partial_sums():
    """wgrad's blocks hold 256 partial sums in static shared memory beside the
    patch: a patch of exactly 48 KiB fits fwd but not wgrad, which declines
    (another algorithm runs it) instead of failing at launch."""
    rng = np.random.default_rng(19)
    x = rng.standard_normal((1, 1, 89, 97)).astype(np.float32)
    w_shape = (1, 1, 3, 3)
    kw = dict(dilation=(44, 48), groups=1)
    gy = rng.standard_normal((1, 1, 1, 1)).astype(np.float32)
    assert co.explain(x, np.ones(w_shape, np.float32), backend="cuda-sim", **kw).chosen.algorithm == "depthwise"
    plan = co.explain(x, gy, op="conv_grad_weight", weight_shape=w_shape, backend="cuda-sim", **kw)
    reasons = dict((impl.algorithm, r) for impl, r in plan.considered)
    assert any("over 48128" in r for r in reasons["depthwise"]) and plan.chosen.algorithm != "depthwise"
    out = co.conv_grad_weight(x, gy, w_shape, backend="cuda-sim", **kw)
    assert_close(out, co.conv_grad_weight(x, gy, w_shape, backend="numpy", **kw), "float32")
