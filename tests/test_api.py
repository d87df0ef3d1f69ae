"""The public contract beyond values: dtypes, unbatched inputs, empty problems,
input strides, no mutation, vjp plumbing, fixed-rank entry points."""

import numpy as np
import pytest

import convops as co

from helpers import assert_close, scipy_conv


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_result_keeps_dtype_and_matches_float64(dtype, rng):
    x, w, b = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)
    kw = dict(stride=2, padding=1, groups=2)
    cast = [a.astype(dtype) for a in (x, w, b)]
    y = co.conv(*cast, **kw)
    assert y.dtype == dtype and isinstance(y, np.ndarray)
    exact = co.conv(*[a.astype(np.float64) for a in cast], **kw)  # same rounded inputs, float64 math
    assert_close(y, exact, dtype, "dtype round trip")
    gx = co.conv_grad_input(y, cast[1], x.shape, **kw)
    gw = co.conv_grad_weight(cast[0], y, w.shape, **kw)
    yt = co.conv_transpose(y, cast[1], cast[2][:4], output_size=(7, 6), **kw)
    assert gx.dtype == gw.dtype == yt.dtype == dtype


def test_unbatched_matches_batched(rng):
    x, w, b = rng.standard_normal((3, 9)), rng.standard_normal((4, 3, 3)), rng.standard_normal(4)
    y = co.conv(x, w, b, padding=1)
    assert y.shape == (4, 9)
    np.testing.assert_array_equal(y, co.conv(x[None], w, b, padding=1)[0])
    gx = co.conv_grad_input(y, w, (3, 9), padding=1)
    np.testing.assert_array_equal(gx, co.conv_grad_input(y[None], w, (1, 3, 9), padding=1)[0])
    gw = co.conv_grad_weight(x, y, w.shape, padding=1)
    np.testing.assert_array_equal(gw, co.conv_grad_weight(x[None], y[None], w.shape, padding=1))
    yt = co.conv_transpose(y, w, padding=1)  # a conv weight is the adjoint's transposed weight
    assert yt.shape == (3, 9)
    _, pullback = co.conv_vjp(x, w, b, padding=1)
    gx2, gw2, gb = pullback(y)
    np.testing.assert_array_equal(gx2, gx)
    np.testing.assert_array_equal(gw2, gw)
    np.testing.assert_allclose(gb, y.sum(axis=1))


@pytest.mark.parametrize("shape_x, shape_w, expect", [
    ((0, 3, 8, 8), (6, 3, 3, 3), (0, 6, 6, 6)),    # N = 0
    ((2, 0, 8, 8), (6, 0, 3, 3), (2, 6, 6, 6)),    # C = 0: zeros plus bias
    ((2, 3, 8, 8), (0, 3, 3, 3), (2, 0, 6, 6)),    # K = 0
    ((2, 3, 0, 8), (6, 3, 1, 3), (2, 6, 0, 6)),    # empty spatial input and output
])
def test_empty_problems(shape_x, shape_w, expect, rng):
    x, w = rng.standard_normal(shape_x), rng.standard_normal(shape_w)
    b = rng.standard_normal(shape_w[0])
    y = co.conv(x, w, b)
    assert y.shape == expect and y.dtype == x.dtype
    np.testing.assert_array_equal(y, np.broadcast_to(b.reshape(-1, 1, 1), expect))
    _, pullback = co.conv_vjp(x, w, b)
    gx, gw, gb = pullback(np.ones(expect))
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape
    np.testing.assert_array_equal(gb, np.ones(expect).sum(axis=(0, 2, 3)))
    if shape_w[0] == 0:  # no output channel reaches the input
        assert not gx.any()
    if expect[0] == 0 or expect[2] == 0:  # no output position reaches the weight
        assert not gw.any()
    yt = co.conv_transpose(np.ones(expect), w, output_size=shape_x[2:])
    assert yt.shape == x.shape


def test_empty_transposed(rng):
    w = rng.standard_normal((3, 2, 3))
    assert co.conv_transpose(np.ones((0, 3, 5)), w).shape == (0, 2, 7)
    assert co.conv_transpose(np.ones((2, 3, 0)), w).shape == (2, 2, 0)


def test_any_input_strides(rng):
    """Sliced, transposed and broadcast operands give the contiguous answer."""
    base = rng.standard_normal((2, 8, 20, 14))
    x = base[:, ::2, 3:17, ::-2]                        # sliced, negative stride
    xt = np.ascontiguousarray(base.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)[:, 1::2, :14, :7]
    w0 = rng.standard_normal((1, 4, 3, 3))
    w = np.broadcast_to(w0, (6, 4, 3, 3))              # zero stride on C_out
    assert not w.flags.writeable and w.strides[0] == 0
    for xs in (x, xt):
        y = co.conv(xs, w, padding=1)
        np.testing.assert_array_equal(y, co.conv(np.ascontiguousarray(xs), np.ascontiguousarray(w), padding=1))
        assert_close(y, scipy_conv(xs, w, (1, 1), ((1, 1), (1, 1)), (1, 1), 1, "zeros"), "float64")
    gy = np.broadcast_to(rng.standard_normal((1, 6, 1, 1)), (2, 6, 14, 7))
    gw = co.conv_grad_weight(x, gy, w.shape, padding=1)
    np.testing.assert_array_equal(gw, co.conv_grad_weight(np.ascontiguousarray(x), np.ascontiguousarray(gy),
                                                          w.shape, padding=1))


def test_no_input_modified(rng):
    x, w, b = rng.standard_normal((2, 4, 7, 7)), rng.standard_normal((4, 4, 3, 3)), rng.standard_normal(4)
    saved = [a.copy() for a in (x, w, b)]
    y, pullback = co.conv_vjp(x, w, b, padding=1, padding_mode="reflect")
    gy = rng.standard_normal(y.shape)
    gsaved = gy.copy()
    pullback(gy)
    co.conv_transpose(x, w, b, stride=2, padding=1)
    _, tpull = co.conv_transpose_vjp(x, w, b, stride=2)
    tpull(rng.standard_normal((2, 4, 15, 15)))
    for before, after in zip(saved + [gsaved], (x, w, b, gy)):
        np.testing.assert_array_equal(before, after)


def test_vjp_without_bias(rng):
    x, w = rng.standard_normal((1, 2, 5)), rng.standard_normal((3, 2, 2))
    y, pullback = co.conv_vjp(x, w)
    gx, gw, gb = pullback(np.ones_like(y))
    assert gb is None and gx.shape == x.shape and gw.shape == w.shape
    _, tpull = co.conv_transpose_vjp(y, w)
    assert tpull(np.ones((1, 2, 5)))[2] is None


def test_transposed_vjp_is_consistent(rng):
    """conv_transpose_vjp's gradients are conv and conv_grad_weight of the
    forward problem; check them through inner-product identities."""
    x, w, b = rng.standard_normal((2, 4, 5, 4)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(6)
    kw = dict(stride=2, padding=(1, 0), output_padding=(1, 0), groups=2)
    y, pullback = co.conv_transpose_vjp(x, w, b, **kw)
    gy = rng.standard_normal(y.shape)
    gx, gw, gb = pullback(gy)
    h = 1e-6
    dx, dw = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    # the map is affine in (x, w) separately: directional derivatives are exact
    fx = (np.vdot(co.conv_transpose(x + h * dx, w, b, **kw), gy) - np.vdot(co.conv_transpose(x - h * dx, w, b, **kw), gy)) / (2 * h)
    fw = (np.vdot(co.conv_transpose(x, w + h * dw, b, **kw), gy) - np.vdot(co.conv_transpose(x, w - h * dw, b, **kw), gy)) / (2 * h)
    assert abs(fx - np.vdot(gx, dx)) <= 1e-6 * abs(fx)
    assert abs(fw - np.vdot(gw, dw)) <= 1e-6 * abs(fw)
    np.testing.assert_allclose(gb, gy.sum(axis=(0, 2, 3)))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_fixed_rank_entry_points(nd, rng):
    x, w = rng.standard_normal((1, 2) + (5,) * nd), rng.standard_normal((3, 2) + (2,) * nd)
    conv_nd = getattr(co, f"conv{nd}d")
    np.testing.assert_array_equal(conv_nd(x, w, padding=1), co.conv(x, w, padding=1))
    wt = rng.standard_normal((2, 3) + (2,) * nd)
    np.testing.assert_array_equal(getattr(co, f"conv_transpose{nd}d")(x, wt, stride=2),
                                  co.conv_transpose(x, wt, stride=2))


def test_padding_forms_agree(rng):
    x, w = rng.standard_normal((1, 2, 9, 8)), rng.standard_normal((2, 2, 3, 4))
    a = co.conv(x, w, padding=1)
    np.testing.assert_array_equal(a, co.conv(x, w, padding=(1, 1)))
    np.testing.assert_array_equal(a, co.conv(x, w, padding=((1, 1), (1, 1))))
    np.testing.assert_array_equal(a, co.conv(x, w, padding=[(1, 1), 1]))
    same = co.conv(x, w, padding="same")
    np.testing.assert_array_equal(same, co.conv(x, w, padding=((1, 1), (1, 2))))
    assert co.conv(x, w, padding="same", stride=2).shape == (1, 2, 5, 4)
    assert co.conv(x, w, padding="full").shape == (1, 2, 11, 11)
    assert co.conv(x, w, padding="valid").shape == (1, 2, 7, 5)


def test_transposed_same_is_adjoint_of_same(rng):
    x, w = rng.standard_normal((1, 2, 10, 9)), rng.standard_normal((3, 2, 3, 4))
    y = co.conv(x, w, stride=2, padding="same")
    gy = rng.standard_normal(y.shape)
    gt = co.conv_transpose(gy, w, stride=2, padding="same", output_size=x.shape[2:])
    assert gt.shape == x.shape
    assert abs(np.vdot(y, gy) - np.vdot(x, gt)) <= 1e-12 * abs(np.vdot(y, gy))
    assert co.conv_transpose(gy, w, stride=2, padding="same").shape == (1, 2, 10, 10)
