"""The reference checked on its own: against scipy.signal.correlate, PyTorch,
the adjoint identities, finite differences and the grouped decomposition."""

import numpy as np
import pytest

import convops as co

from helpers import assert_close, inner, scipy_conv

MODES = ["zeros", "reflect", "replicate", "circular", "symmetric"]
GEOMETRIES = [  # (x shape, w shape, stride, padding pairs, dilation, groups)
    ((2, 3, 11), (4, 3, 3), (2,), ((1, 2),), (1,), 1),
    ((1, 4, 9), (4, 2, 2), (1,), ((2, 2),), (3,), 2),
    ((2, 2, 7, 6), (3, 2, 3, 2), (1, 2), ((1, 1), (0, 2)), (1, 1), 1),
    ((1, 4, 8, 7), (6, 2, 2, 3), (2, 1), ((2, 0), (1, 1)), (2, 2), 2),
    ((1, 3, 6, 6), (6, 1, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 3),
    ((1, 2, 5, 4, 6), (2, 2, 2, 3, 2), (1, 1, 2), ((1, 0), (1, 1), (0, 1)), (1, 1, 2), 1),
    ((1, 4, 5, 5, 4), (4, 2, 3, 1, 2), (2, 1, 1), ((1, 1), (0, 0), (1, 0)), (1, 2, 1), 2),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geom", GEOMETRIES, ids=lambda g: f"x{g[0]}-w{g[1]}")
def test_forward_matches_scipy(geom, mode, rng):
    xs, ws, s, pads, d, g = geom
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    y = co.conv(x, w, stride=s, padding=pads, dilation=d, groups=g, padding_mode=mode, backend="numpy")
    assert_close(y, scipy_conv(x, w, s, pads, d, g, mode), "float64", "reference vs scipy")


@pytest.mark.parametrize("mode", MODES)
def test_adjoint_identities_public_api(mode, rng):
    """The same identities through the public functions, conv_transpose included."""
    x, w = rng.standard_normal((2, 4, 9, 8)), rng.standard_normal((6, 2, 3, 2))
    kw = dict(stride=(2, 1), padding=((2, 1), (1, 0)), dilation=(1, 2), groups=2, padding_mode=mode)
    y = co.conv(x, w, **kw)
    gy = rng.standard_normal(y.shape)
    lhs = inner(y, gy)
    gx = co.conv_grad_input(gy, w, x.shape, **kw)
    gt = co.conv_transpose(gy, w, output_size=x.shape[2:], **kw)
    gw = co.conv_grad_weight(x, gy, w.shape, **kw)
    for other in (inner(x, gx), inner(x, gt), inner(w, gw)):
        assert abs(lhs - other) <= 1e-12 * abs(lhs)
    np.testing.assert_array_equal(gx, gt)


def test_truncated_transposed_is_adjoint(rng):
    """output_padding >= stride (allowed below the dilation) is the adjoint of
    the forward convolution with the extra outputs discarded."""
    x, w = rng.standard_normal((1, 2, 5)), rng.standard_normal((2, 3, 3))  # transposed weight
    y = co.conv_transpose(x, w, stride=1, padding=1, output_padding=1, dilation=2)
    assert y.shape == (1, 3, 8)
    z = rng.standard_normal(y.shape)
    full = co.conv(z, w, stride=1, padding=1, dilation=2)  # (1, 2, 6): one more than x
    assert full.shape == (1, 2, 6)
    assert abs(inner(full[..., :5], x) - inner(z, y)) <= 1e-12 * abs(inner(z, y))


def test_finite_differences(rng):
    """Central differences of the reference match its gradients (float64)."""
    x, w, b = rng.standard_normal((1, 2, 6, 5)), rng.standard_normal((3, 2, 3, 2)), rng.standard_normal(3)
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), padding_mode="reflect")
    gy = rng.standard_normal(co.conv(x, w, b, **kw).shape)
    _, pullback = co.conv_vjp(x, w, b, **kw)
    gx, gw, gb = pullback(gy)

    def loss(x_, w_, b_):
        return inner(co.conv(x_, w_, b_, **kw), gy)

    h = 1e-6
    for arr, grad, idx in [(x, gx, (0, 1, 2, 3)), (x, gx, (0, 0, 0, 0)), (w, gw, (2, 1, 2, 1)), (b, gb, (1,))]:
        plus, minus = arr.copy(), arr.copy()
        plus[idx] += h
        minus[idx] -= h
        args_p = [plus if arr is a else a for a in (x, w, b)]
        args_m = [minus if arr is a else a for a in (x, w, b)]
        fd = (loss(*args_p) - loss(*args_m)) / (2 * h)
        assert abs(fd - grad[idx]) <= 1e-6 * max(1.0, abs(fd))


@pytest.mark.parametrize("op", ["conv", "conv_transpose"])
def test_grouped_equals_per_group_concat(op, rng):
    g = 3
    if op == "conv":
        x, w = rng.standard_normal((2, 6, 7, 7)), rng.standard_normal((9, 2, 3, 3))
        full = co.conv(x, w, padding=1, stride=2, groups=g)
        parts = [co.conv(x[:, 2 * i:2 * i + 2], w[3 * i:3 * i + 3], padding=1, stride=2) for i in range(g)]
    else:
        x, w = rng.standard_normal((2, 6, 4, 4)), rng.standard_normal((6, 2, 3, 3))
        full = co.conv_transpose(x, w, padding=1, stride=2, output_padding=1, groups=g)
        parts = [co.conv_transpose(x[:, 2 * i:2 * i + 2], w[2 * i:2 * i + 2], padding=1, stride=2,
                                   output_padding=1) for i in range(g)]
    np.testing.assert_allclose(full, np.concatenate(parts, axis=1), rtol=1e-13, atol=1e-13)


def _torch():
    """torch is a test extra (installed by ci/test.sh); only the tests below need it."""
    return pytest.importorskip("torch")


@pytest.mark.parametrize("case", [
    dict(stride=2, padding=1, output_padding=1, dilation=1, groups=1),
    dict(stride=(3, 2), padding=(0, 2), output_padding=(2, 1), dilation=(1, 2), groups=2),
    dict(stride=1, padding=1, output_padding=1, dilation=2, groups=2),
    dict(stride=2, padding=0, output_padding=0, dilation=3, groups=1),
])
def test_transposed_matches_torch(case, rng):
    x, w = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((4, 3, 3, 4))
    b = rng.standard_normal(3 * case["groups"])
    torch = _torch()
    y = co.conv_transpose(x, w, b, **case)
    yt = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), **case).numpy()
    assert y.shape == yt.shape
    assert_close(y, yt, "float64", "conv_transpose vs torch")


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_vjp_matches_torch_autograd(nd, rng):
    sp = {1: (13,), 2: (9, 8), 3: (5, 6, 5)}[nd]
    x, w, b = rng.standard_normal((2, 4) + sp), rng.standard_normal((6, 2) + (3,) * nd), rng.standard_normal(6)
    kw = dict(stride=2, padding=1, dilation=1, groups=2)
    torch = _torch()
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = getattr(torch.nn.functional, f"conv{nd}d")(xt, wt, bt, **kw)
    gy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    y, pullback = co.conv_vjp(x, w, b, **kw)
    for ours, theirs in zip((y, *pullback(gy)), (yt, xt.grad, wt.grad, bt.grad)):
        assert_close(ours, theirs.detach().numpy(), "float64", "vjp vs torch autograd")


def test_grad_weight_of_an_empty_batch_is_zero():
    """Found by review: the reshape to (N, groups, K, -1) was ambiguous for N = 0."""
    from convops import reference
    p = co.explain(np.zeros((0, 4, 5, 5)), np.zeros((6, 2, 3, 3)), padding=1, groups=2).problem.grad_weight()
    dw = reference.grad_weight(p, np.zeros((0, 4, 5, 5)), np.zeros((0, 6, 5, 5)))
    assert dw.shape == (6, 2, 3, 3) and not dw.any()
