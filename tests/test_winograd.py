"""Winograd F(2x2,3x3) (numba backend): the geometry where tiles and edges
go wrong, its error at the largest channel counts it is chosen for, NaN and
infinity, determinism, the chunking under small caps, and selection.  (The
registry-wide suites run it on every listed problem it supports as well.)"""

import numba
import numpy as np
import pytest

import convops as co
from convops import config, dispatch, problems, reference
from convops.cpu import winograd

from helpers import assert_close


def _ref(op, a, b, **kw):
    """The float64 reference of one pass (fwd: a=x, b=w; dgrad: a=dy, b=w, kw x_shape)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if op == "fwd":
        return reference.forward(co.explain(a64, b64, **kw).problem, a64, b64)
    if op == "wgrad":  # a=x, b=dy, kw w_shape
        w_shape = kw.pop("w_shape")
        p = co.explain(a64, np.zeros(w_shape), **kw).problem.grad_weight()
        return reference.grad_weight(p, a64, b64)
    x_shape = kw.pop("x_shape")
    p = co.explain(np.zeros(x_shape), b64, **kw).problem.grad_input()
    return reference.grad_input(p, a64, b64)


GEOMETRIES = [  # (N, C, K, H, W, padding): odd/even outputs, one tile, all padding, pads past the kernel
    (2, 16, 16, 9, 7, 1), (1, 16, 24, 5, 6, 0), (2, 16, 20, 1, 1, 2), (1, 16, 16, 2, 3, ((2, 0), (0, 2))),
    (1, 17, 16, 3, 3, 0), (3, 16, 19, 8, 8, 3), (1, 16, 16, 1, 40, 1), (1, 16, 16, 31, 2, ((0, 1), (1, 0))),
]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("g", GEOMETRIES, ids=str)
def test_fwd_and_dgrad_against_the_reference(g, dtype):
    n, c, k, h, w_, pad = g
    rng = np.random.default_rng(abs(hash(g)) % 2**32)
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = rng.standard_normal((k, c, 3, 3)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype)
    y = co.conv(x, w, bias, padding=pad, algorithm="winograd")
    assert y.dtype == dtype
    assert_close(y, _ref("fwd", x, w, padding=pad) + bias.reshape(-1, 1, 1), dtype, f"fwd {g}")
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = co.conv_grad_input(dy, w, x.shape, padding=pad, algorithm="winograd")
    assert_close(dx, _ref("dgrad", dy, w, padding=pad, x_shape=x.shape), dtype, f"dgrad {g}")
    dw = co.conv_grad_weight(x, dy, w.shape, padding=pad, algorithm="winograd")
    assert dw.dtype == dtype
    assert_close(dw, _ref("wgrad", x, dy, padding=pad, w_shape=w.shape), dtype, f"wgrad {g}")


DILATED_AND_3D = [  # (N, C, K, in_size, kernel depth, stride, dilation, padding)
    (2, 16, 18, (9, 11), 1, 1, 2, 2),  # phases of different sizes in both dims
    (1, 16, 16, (13, 7), 1, 1, (3, 2), ((1, 4), (0, 3))),  # uneven padding, dilation per dim
    (1, 16, 16, (5, 6), 1, 1, 4, 4),  # the dilated kernel spans more than the input
    (1, 17, 16, (12, 40), 1, 1, (2, 5), 7),  # padding past dil*(k-1): dgrad crops
    (2, 16, 20, (4, 7, 9), 3, 1, 1, 1),  # conv3d 3x3x3
    (1, 16, 16, (5, 6, 6), 3, (2, 1, 1), (2, 1, 1), ((2, 0), (1, 1), (0, 2))),  # depth stride, dilation
    (1, 16, 16, (2, 5, 5), 4, 1, (1, 2, 1), ((3, 3), (2, 2), (1, 1))),  # 4 depth taps, most in padding
    (1, 16, 16, (3, 4, 4), 2, (3, 1, 1), 1, ((5, 0), (1, 1), (1, 1))),  # planes that read only padding
]


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("g", DILATED_AND_3D, ids=str)
def test_dilated_and_3d_against_the_reference(g, dtype):
    """Dilation runs as one Winograd convolution per phase of the output
    (rows and columns dil apart), depth taps join the GEMMs' reduction;
    wgrad sums over the same tiles."""
    n, c, k, size, depth, stride, dilation, pad = g
    rng = np.random.default_rng(abs(hash(g)) % 2**32)
    x = rng.standard_normal((n, c) + size).astype(dtype)
    w = rng.standard_normal((k, c) + ((depth,) if len(size) == 3 else ()) + (3, 3)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype)
    kw = dict(padding=pad, stride=stride, dilation=dilation)
    y = co.conv(x, w, bias, algorithm="winograd", **kw)
    ref = _ref("fwd", x, w, **kw) + bias.reshape((-1,) + (1,) * len(size))
    assert y.shape == ref.shape
    assert_close(y, ref, dtype, f"fwd {g}")
    dy = rng.standard_normal(y.shape).astype(dtype)
    if stride == 1:  # (a depth stride makes dgrad a transposed convolution in depth: not supported)
        dx = co.conv_grad_input(dy, w, x.shape, algorithm="winograd", **kw)
        assert_close(dx, _ref("dgrad", dy, w, x_shape=x.shape, **kw), dtype, f"dgrad {g}")
    dw = co.conv_grad_weight(x, dy, w.shape, algorithm="winograd", **kw)
    assert dw.dtype == dtype
    assert_close(dw, _ref("wgrad", x, dy, w_shape=w.shape, **kw), dtype, f"wgrad {g}")


@pytest.mark.parametrize("chunk_bytes", [1, 200 * 1024])
def test_dilated_and_3d_chunkings(chunk_bytes, monkeypatch):
    """Chunks of one tile column block, or of tile rows from several planes,
    phases and images."""
    monkeypatch.setattr(config, "cpu_winograd_chunk_bytes", chunk_bytes)
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 16, 3, 9, 70)).astype(np.float32)
    w = rng.standard_normal((20, 16, 2, 3, 3)).astype(np.float32)
    for kw in (dict(padding=1), dict(padding=(0, 3, 2), dilation=(1, 3, 2))):
        y = co.conv(x, w, algorithm="winograd", **kw)
        assert_close(y, _ref("fwd", x, w, **kw), "float32", f"fwd {kw}")
        dy = rng.standard_normal(y.shape).astype(np.float32)
        assert_close(co.conv_grad_input(dy, w, x.shape, algorithm="winograd", **kw),
                     _ref("dgrad", dy, w, x_shape=x.shape, **kw), "float32", f"dgrad {kw}")
        assert_close(co.conv_grad_weight(x, dy, w.shape, algorithm="winograd", **kw),
                     _ref("wgrad", x, dy, w_shape=w.shape, **kw), "float32", f"wgrad {kw}")


@pytest.mark.parametrize("op", ["fwd", "dgrad", "wgrad"])
def test_float32_error_at_the_largest_channel_counts_it_is_chosen_for(op):
    """At the largest channels auto gives it (the filter-cache limit: 16*C*K*4
    bytes <= 4 MiB, so 256 x 256; a 3-D layer's reduction over T*C is shorter
    under the same limit), and with forced 512 x 512, the float32 error stays
    inside the tolerance table (1e-5, relative to the output's scale)."""
    rng = np.random.default_rng(7)
    for c in (256, 512):
        x = rng.standard_normal((1, c, 12, 12)).astype(np.float32)
        w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
        if c == 256:
            assert co.explain(x, w, padding=1).chosen.algorithm == "winograd"
        if op == "fwd":
            got, ref = co.conv(x, w, padding=1, algorithm="winograd"), _ref("fwd", x, w, padding=1)
        elif op == "dgrad":
            got = co.conv_grad_input(x, w, x.shape, padding=1, algorithm="winograd")
            ref = _ref("dgrad", x, w, padding=1, x_shape=x.shape)
        else:  # a long reduction: 4 images of 32x32 (1024 tiles)
            xs = rng.standard_normal((4, c, 32, 32)).astype(np.float32)
            dy = rng.standard_normal((4, c, 32, 32)).astype(np.float32)
            got = co.conv_grad_weight(xs, dy, w.shape, padding=1, algorithm="winograd")
            ref = _ref("wgrad", xs, dy, padding=1, w_shape=w.shape)
        assert_close(got, ref, "float32", f"{op} {c} channels")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["x", "w"])
def test_nan_and_inf_propagate_as_in_direct_summation(bad, where):
    """The transforms would spread one non-finite input over whole tiles
    (inf - inf); such operands take the exact path: the same NaN/inf pattern
    as the reference."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    (x if where == "x" else w)[0, 3, 1, 2] = bad
    y = co.conv(x, w, padding=1, algorithm="winograd")
    ref = _ref("fwd", x, w, padding=1)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    assert_close(y, ref, "float32", "non-finite fwd")
    dx = co.conv_grad_input(x, w, x.shape, padding=1, algorithm="winograd")
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(_ref("dgrad", x, w, padding=1, x_shape=x.shape)))
    dy = rng.standard_normal((1, 16, 8, 8)).astype(np.float32)
    if where == "w":  # wgrad's operands are x and dy: put the bad value in dy instead
        dy[0, 3, 1, 2] = bad
    dw = co.conv_grad_weight(x, dy, w.shape, padding=1, algorithm="winograd")
    ref = _ref("wgrad", x, dy, padding=1, w_shape=w.shape)
    np.testing.assert_array_equal(np.isnan(dw), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(dw), np.isinf(ref))


def test_huge_finite_values_that_overflow_the_check_still_agree():
    x = np.full((1, 16, 6, 6), 3e37, np.float32)  # their sum overflows: the exact path runs
    w = np.full((16, 16, 3, 3), 1e-3, np.float32)
    assert_close(co.conv(x, w, padding=1, algorithm="winograd"), _ref("fwd", x, w, padding=1), "float32")


def test_bitwise_deterministic_across_threads_and_chunkings_of_the_pool(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 24, 21, 19)).astype(np.float32)
    w = rng.standard_normal((20, 24, 3, 3)).astype(np.float32)
    threads = numba.get_num_threads()
    dy = rng.standard_normal((3, 20, 21, 19)).astype(np.float32)
    calls = (lambda: co.conv(x, w, padding=1, algorithm="winograd"),
             lambda: co.conv_grad_input(dy, w, x.shape, padding=1, algorithm="winograd"),
             lambda: co.conv_grad_weight(x, dy, w.shape, padding=1, algorithm="winograd"))
    monkeypatch.setattr(config, "cpu_winograd_chunk_bytes", 64 * 1024)  # many chunks, several wgrad slots
    try:
        first = [f() for f in calls]
        numba.set_num_threads(1)
        single = [f() for f in calls]
    finally:
        numba.set_num_threads(threads)
    for a, b, f in zip(first, single, calls):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, f())


@pytest.mark.parametrize("chunk_bytes", [1, 16 * 1024, 200 * 1024])
def test_small_chunks_block_output_channels(chunk_bytes, monkeypatch):
    """The smallest chunks (16 tiles, output channels blocked down to one),
    blocked channels, and in between: results within the tolerance."""
    monkeypatch.setattr(config, "cpu_winograd_chunk_bytes", chunk_bytes)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 40, 11, 13)).astype(np.float32)
    w = rng.standard_normal((70, 40, 3, 3)).astype(np.float32)
    b = rng.standard_normal(70).astype(np.float32)
    assert_close(co.conv(x, w, b, padding=1, algorithm="winograd"),
                 _ref("fwd", x, w, padding=1) + b.reshape(-1, 1, 1), "float32")
    dy = rng.standard_normal((2, 70, 11, 13)).astype(np.float32)
    assert_close(co.conv_grad_input(dy, w, x.shape, padding=1, algorithm="winograd"),
                 _ref("dgrad", dy, w, padding=1, x_shape=x.shape), "float32")
    assert_close(co.conv_grad_weight(x, dy, w.shape, padding=1, algorithm="winograd"),
                 _ref("wgrad", x, dy, padding=1, w_shape=w.shape), "float32")


def test_chunking_keeps_at_least_16_tiles_and_blocks_channels():
    def chunking(c_in, c_out, out_hw=(56, 56)):
        q = problems.NETWORKS["resnet50-3x3-c64"]
        q = type(q)(**{**q.__dict__, "c_in": c_in, "c_out": c_out, "in_size": out_hw, "out_size": out_hw})
        q = winograd.kernel_problem(q)
        return winograd._chunking(q, winograd._conv(q))
    rb, cb, kb, per_thread = chunking(64, 64)  # whole rows of 28 tiles (+ 1 junk)
    assert cb == 28 and rb >= 1 and kb == 64
    assert per_thread * 4 <= config.cpu_winograd_chunk_bytes
    rb, cb, kb, _ = chunking(512, 2048)
    assert rb * (cb + 1) >= 16 and kb == 1
    rb, cb, kb, _ = chunking(64, 2048)
    assert rb * (cb + 1) >= 16 and 1 < kb < 2048
    rb, cb, kb, _ = chunking(16, 16, (2, 4000))  # a row of 2000 tiles: split into column blocks of at most 512
    assert rb == 1 and cb + 1 <= 512


@pytest.mark.parametrize("threads", [2, 24])
def test_wgrad_chunks_reduce_over_at_least_the_channel_count_within_the_cap(threads, monkeypatch):
    """wgrad's chunks have at least max(C, K) tiles (its accumulators are
    read and written once per chunk): 256 for ResNet's c256 14x14 layer,
    where the 1.5 MiB budget gave 32 (4x slower); never past the workspace
    cap, which with 24 threads leaves room for fewer."""
    monkeypatch.setattr(winograd, "_threads", lambda: threads)

    def layer(c, hw):
        return co.ConvProblem.forward(n=8, c_in=c, c_out=c, in_size=(hw, hw), kernel=(3, 3), stride=(1, 1),
                                      padding=((1, 1), (1, 1)), dilation=(1, 1), op="wgrad")
    p = layer(256, 14)
    q = winograd.kernel_problem(p)
    rb, cb, per_thread, _ = winograd._wgrad_plan(q)
    impl = next(i for i in co.implementations(op="wgrad", backend="numba") if i.algorithm == "winograd")
    assert impl.workspace_bytes(p) <= config.cpu_workspace_bytes
    if threads == 2:
        assert rb * (cb + 1) >= 256 and not impl.reasons(p)
    else:
        assert 16 <= rb * (cb + 1) < 256
    rb64, cb64, _, _ = winograd._wgrad_plan(winograd.kernel_problem(layer(64, 56)))
    assert cb64 == 28 and rb64 * (cb64 + 1) >= 64


@pytest.mark.parametrize("threads", [16, 64])
@pytest.mark.parametrize("c, hw", [(64, 56), (128, 28)])
def test_wgrad_chunks_leave_room_for_a_slot_per_thread(c, hw, threads, monkeypatch):
    """Found by review: at 16 threads the 4 MiB wgrad chunks took the whole
    cap, leaving one partial-sum slot (the parallel iterations): the pass
    ran on one thread.  The chunks now fit in what the slots leave."""
    monkeypatch.setattr(winograd, "_threads", lambda: threads)
    p = co.ConvProblem.forward(n=8, c_in=c, c_out=c, in_size=(hw, hw), kernel=(3, 3), stride=(1, 1),
                               padding=((1, 1), (1, 1)), dilation=(1, 1), op="wgrad")
    q = winograd.kernel_problem(p)
    rb, cb, _, slots = winograd._wgrad_plan(q)
    chunks = winograd._chunk_count(q, winograd._conv(q), rb, cb)
    assert slots == min(chunks, threads, config.cpu_wgrad_max_slots) and slots > 1
    impl = next(i for i in co.implementations(op="wgrad", backend="numba") if i.algorithm == "winograd")
    assert not impl.reasons(p) and impl.workspace_bytes(p) <= config.cpu_workspace_bytes


@pytest.mark.parametrize("chunk_bytes", [1, 200 * 1024])
@pytest.mark.parametrize("shape", [(3, 16, 5, 69), (2, 16, 40, 33)], ids=str)
def test_column_blocks_and_chunks_across_images(shape, chunk_bytes, monkeypatch):
    """Rows wider than a chunk (column blocks, the last one partial, odd
    widths) and chunks of tile rows from several images, with padding that
    crops (dgrad's 2 - 3 < 0) and pads."""
    monkeypatch.setattr(config, "cpu_winograd_chunk_bytes", chunk_bytes)
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((18, shape[1], 3, 3)).astype(np.float32)
    for pad in (1, 3, ((0, 2), (2, 1))):
        y = co.conv(x, w, padding=pad, algorithm="winograd")
        assert_close(y, _ref("fwd", x, w, padding=pad), "float32", f"fwd {pad}")
        dy = rng.standard_normal(y.shape).astype(np.float32)
        assert_close(co.conv_grad_input(dy, w, x.shape, padding=pad, algorithm="winograd"),
                     _ref("dgrad", dy, w, padding=pad, x_shape=x.shape), "float32", f"dgrad {pad}")


def test_reasons_and_heuristic_declines():
    x = np.zeros((1, 64, 16, 16), np.float32)
    w3 = np.zeros((64, 64, 3, 3), np.float32)
    assert co.explain(x, w3, padding=1).chosen.algorithm == "winograd"
    text = str(co.explain(x, w3, padding=1, stride=2))
    assert "stride (2, 2) is not 1" in text
    assert co.explain(np.zeros((1, 64, 32, 32), np.float32), w3, padding=2, dilation=2).chosen.algorithm == "winograd"
    assert "is not 3x3" in str(co.explain(x, np.zeros((64, 64, 5, 5), np.float32)))
    x3, w33 = np.zeros((1, 64, 4, 16, 16), np.float32), np.zeros((64, 64, 3, 3, 3), np.float32)
    assert co.explain(x3, w33, padding=1).chosen.algorithm == "winograd"
    assert co.explain(x3, w33, padding=1, stride=(2, 1, 1)).chosen.algorithm == "winograd"
    dgrad = co.explain(np.zeros((1, 64, 2, 16, 16), np.float32), w33, "conv_grad_input", input_shape=x3.shape,
                       padding=1, stride=(2, 1, 1))
    assert "dgrad with depth stride 2" in str(dgrad)
    assert "groups=2" in str(co.explain(x, np.zeros((64, 32, 3, 3), np.float32), groups=2))
    small = str(co.explain(np.zeros((1, 8, 16, 16), np.float32), np.zeros((8, 8, 3, 3), np.float32)))
    assert "heuristic: 8 channels" in small
    assert co.explain(np.zeros((1, 256, 16, 16), np.float32),
                      np.zeros((256, 256, 3, 3), np.float32)).chosen.algorithm == "winograd"
    big = co.explain(np.zeros((1, 512, 16, 16), np.float32), np.zeros((512, 512, 3, 3), np.float32))
    assert big.chosen.algorithm == "im2col" and "cpu_winograd_max_filter_bytes" in str(big)
    with pytest.raises(co.UnsupportedError, match="stride"):
        co.conv(x, w3, stride=2, algorithm="winograd")


def test_auto_gives_it_resnets_3x3_layers_and_their_gradients_unless_turned_off(monkeypatch):
    base = problems.NETWORKS["resnet50-3x3-c64"]
    for op in ("fwd", "dgrad", "wgrad"):
        p = base.with_op(op)
        impls, _ = dispatch.candidates(p, "numpy")
        assert dispatch.select(p, impls).chosen.algorithm == "winograd"
    monkeypatch.setattr(config, "cpu_winograd_wgrad", False)
    impls, _ = dispatch.candidates(base.with_op("wgrad"), "numpy")
    plan = dispatch.select(base.with_op("wgrad"), impls)
    assert plan.chosen.algorithm == "im2col" and "config.cpu_winograd_wgrad" in str(plan)


def test_short_tile_rows_are_left_to_im2col():
    """Rows of few tiles (small images, or the phases of a large dilation)
    carry a junk tile each: declined, with the reason."""
    w = np.zeros((64, 64, 3, 3), np.float32)
    assert co.explain(np.zeros((8, 64, 14, 14), np.float32), w, padding=1).chosen.algorithm == "winograd"
    for shape, kw in (((8, 64, 8, 8), dict(padding=1)), ((8, 64, 28, 28), dict(padding=4, dilation=4))):
        plan = co.explain(np.zeros(shape, np.float32), w, **kw)
        assert plan.chosen.algorithm == "im2col" and "cpu_winograd_min_tile_columns" in str(plan)


@pytest.mark.parametrize("op", ["fwd", "dgrad", "wgrad"])
def test_finite_values_that_overflow_inside_the_transforms(op):
    """Found by review: values whose sum cancels pass the operand check, then
    overflow in B^T d B (3e38 - (-3e38)) or G g G^T (0.5 * (a - b + c)); the
    non-finite result sends the call to the exact path."""
    x = np.zeros((1, 16, 4, 4), np.float32)
    x[0, 0, 0, 0], x[0, 0, 0, 2] = 3e38, -3e38
    w_small = np.full((16, 16, 3, 3), 1e-3, np.float32)
    w_big = np.zeros((16, 16, 3, 3), np.float32)
    w_big[0, 0, 0] = [3e38, -3e38, 3e38]
    for a, w in ((x, w_small), (np.full((1, 16, 4, 4), 1e-3, np.float32), w_big)):
        if op == "fwd":
            got, ref = co.conv(a, w, padding=1, algorithm="winograd"), _ref("fwd", a, w, padding=1)
        elif op == "dgrad":
            got = co.conv_grad_input(a, w, a.shape, padding=1, algorithm="winograd")
            ref = _ref("dgrad", a, w, padding=1, x_shape=a.shape)
        else:  # x near the limit, dy = the output gradient of ones
            dy = np.ones((1, 16, 4, 4), np.float32)
            got = co.conv_grad_weight(a, dy, w.shape, padding=1, algorithm="winograd")
            ref = _ref("wgrad", a, dy, padding=1, w_shape=w.shape)
        assert np.isfinite(got).all()
        assert_close(got, ref, "float32", f"{op} near the float32 limit")


def test_depth_padding_of_a_one_plane_3d_problem_reads_zeros():
    """Found by review (when only one-plane 3-D problems ran): the one output
    plane of a strided 3-D problem with depth padding reads zeros, not the
    input plane."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 16, 1, 6, 6)).astype(np.float32)
    w = rng.standard_normal((16, 16, 1, 3, 3)).astype(np.float32)
    kw = dict(padding=((1, 0), (1, 1), (1, 1)), stride=(2, 1, 1))
    np.testing.assert_array_equal(co.conv(x, w, algorithm="winograd", **kw), 0)
    ok = dict(padding=((0, 0), (1, 1), (1, 1)))
    assert_close(co.conv(x, w, algorithm="winograd", **ok), _ref("fwd", x, w, **ok), "float32")


@pytest.mark.parametrize("threads", [2, 96, 128])
def test_the_workspace_it_reports_fits_the_cap_it_was_sized_for(threads, monkeypatch):
    """Found by review: the plane gaps were added after sizing the chunk to
    the cap's share, so 128 threads at the default cap were declined."""
    monkeypatch.setattr(winograd, "_threads", lambda: threads)
    for op in ("fwd", "dgrad", "wgrad"):
        p = problems.NETWORKS["resnet50-3x3-c64"].with_op(op)
        impl = next(i for i in co.implementations(op=op, backend="numba") if i.algorithm == "winograd")
        assert impl.workspace_bytes(p) <= config.cpu_workspace_bytes
        assert not impl.reasons(p)


@pytest.mark.parametrize("op, width, cap", [("fwd", 1200, 80_000), ("wgrad", 1800, 120_000)])
def test_exact_path_where_im2col_does_not_fit_the_cap(op, width, cap, monkeypatch):
    """Found by review: a depth-strided 3-D layer with wide rows fits the cap
    through winograd's column blocks but not through im2col's strided path;
    its exact path (a non-finite operand) then runs direct's kernels instead
    of failing im2col's tiling."""
    monkeypatch.setattr(config, "cpu_workspace_bytes", cap)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 16, 5, 3, width)).astype(np.float32)
    w = rng.standard_normal((16, 16, 1, 3, 3)).astype(np.float32)
    kw = dict(stride=(2, 1, 1), padding=(0, 1, 1))
    if op == "fwd":
        plan = co.explain(x, w, **kw)
        assert plan.chosen.algorithm == "winograd" and "workspace" in str(plan)  # im2col's reason
        x[0, 0, 0, 1, 5] = np.nan
        got, ref = co.conv(x, w, **kw), _ref("fwd", x, w, **kw)
    else:
        dy = rng.standard_normal((1, 16, 3, 3, width)).astype(np.float32)
        plan = co.explain(x, dy, "conv_grad_weight", weight_shape=w.shape, **kw)
        assert plan.chosen.algorithm == "winograd" and "workspace" in str(plan)
        dy[0, 0, 0, 0, 0] = np.inf
        got, ref = co.conv_grad_weight(x, dy, w.shape, **kw), _ref("wgrad", x, dy, w_shape=w.shape, **kw)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    assert_close(got, ref, "float32")


@pytest.mark.parametrize("value, on", [("", True), ("1", True), ("yes", True), ("0", False), ("off", False)])
def test_the_wgrad_switch(value, on):
    """Found by review: an empty CONVOPS_CPU_WINOGRAD_WGRAD turned it off."""
    import subprocess
    import sys
    code = "from convops import config; print(config.cpu_winograd_wgrad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "CONVOPS_CPU_WINOGRAD_WGRAD": value}).stdout
    assert out.strip() == str(on)
