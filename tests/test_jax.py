"""convops.jax: values and gradients (first and second order) against
jax.lax.conv_general_dilated, under jit and vmap."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy
cj = pytest.importorskip("convops.jax")


def enable_x64():
    """float64 inside the block (jax.enable_x64 in new JAX, jax.experimental's before)."""
    if callable(getattr(jax, "enable_x64", None)):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64 as legacy
    return legacy()


_SPEC = {1: ("NCH", "OIH", "NCH"), 2: ("NCHW", "OIHW", "NCHW"), 3: ("NCDHW", "OIDHW", "NCDHW")}
_NP_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap",
             "symmetric": "symmetric"}

CASES = [  # (input, weight, stride, padding pairs, dilation, groups, padding_mode)
    ((2, 3, 11), (4, 3, 3), (2,), ((1, 2),), (1,), 1, "zeros"),
    ((2, 4, 9, 8), (6, 2, 3, 2), (2, 1), ((1, 1), (0, 2)), (1, 2), 2, "zeros"),
    ((1, 3, 7, 7), (3, 1, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 3, "reflect"),
    ((2, 2, 5, 6), (2, 2, 2, 3), (1, 2), ((2, 0), (1, 1)), (2, 1), 1, "circular"),
    ((1, 2, 4, 5, 6), (2, 2, 2, 3, 2), (1, 2, 1), ((0, 1), (1, 1), (1, 0)), (1, 1, 2), 1, "replicate"),
    ((3, 8, 8), (2, 3, 3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), 1, "symmetric"),  # unbatched
]


def _lax(x, w, stride, pads, dilation, groups, mode):
    nd = w.ndim - 2
    batched = x.ndim == nd + 2
    if not batched:
        x = x[None]
    if mode != "zeros":
        x = jnp.pad(x, [(0, 0), (0, 0)] + list(pads), mode=_NP_MODES[mode])
        pads = ((0, 0),) * nd
    y = jax.lax.conv_general_dilated(x, w, stride, pads, rhs_dilation=dilation, feature_group_count=groups,
                                     dimension_numbers=_SPEC[nd], precision=jax.lax.Precision.HIGHEST)
    return y if batched else y[0]


def _mine(x, w, stride, pads, dilation, groups, mode):
    return cj.conv(x, w, stride=stride, padding=pads, dilation=dilation, groups=groups, padding_mode=mode)


def _operands(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    xs, ws = case[:2]
    return jnp.asarray(rng.standard_normal(xs), dtype), jnp.asarray(rng.standard_normal(ws), dtype)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_values_and_gradients_agree_with_lax_under_jit(case):
    with enable_x64():
        x, w = _operands(CASES[case], jnp.float64)
        args = CASES[case][2:]
        y_ref = _lax(x, w, *args)
        np.testing.assert_allclose(jax.jit(lambda x, w: _mine(x, w, *args))(x, w), y_ref, rtol=1e-11, atol=1e-11)

        def loss(fn):
            return lambda x, w: jnp.sum(jnp.sin(fn(x, w, *args)))

        expect = jax.grad(loss(_lax), argnums=(0, 1))(x, w)
        got = jax.jit(jax.grad(loss(_mine), argnums=(0, 1)))(x, w)
        for g, e in zip(got, expect):
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", [1, 4])
def test_second_order_gradients(case):
    with enable_x64():
        x, w = _operands(CASES[case], jnp.float64, seed=1)
        args = CASES[case][2:]

        def curvature(fn):  # d/dx of |d loss / d w|^2: every primitive's VJP is differentiated
            inner = jax.grad(lambda x, w: jnp.sum(jnp.tanh(fn(x, w, *args))), argnums=1)
            return jax.grad(lambda x: jnp.sum(inner(x, w) ** 2))(x)

        np.testing.assert_allclose(curvature(_mine), curvature(_lax), rtol=1e-9, atol=1e-9)


def test_float32_and_bias():
    x, w = _operands(CASES[1], jnp.float32)
    b = jnp.arange(6, dtype=jnp.float32)
    got = cj.conv(x, w, b, stride=(2, 1), padding=((1, 1), (0, 2)), dilation=(1, 2), groups=2)
    expect = _lax(x, w, *CASES[1][2:]) + b[:, None, None]
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4)
    gb = jax.grad(lambda b: jnp.sum(cj.conv(x, w, b, stride=(2, 1), padding=((1, 1), (0, 2)), dilation=(1, 2),
                                            groups=2) ** 2))(b)
    np.testing.assert_allclose(gb, 2 * jnp.sum(expect, axis=(0, 2, 3)), rtol=1e-4)


def test_vmap_over_inputs_and_weights():
    with enable_x64():
        x, w = _operands(CASES[0], jnp.float64)
        args = CASES[0][2:]
        xs, ws = jnp.stack([x, -2 * x, x + 1]), jnp.stack([w, w * 0.5, -w])
        expect = jax.vmap(lambda a, b: _lax(a, b, *args))(xs, ws)
        got = jax.jit(jax.vmap(lambda a, b: _mine(a, b, *args)))(xs, ws)
        np.testing.assert_allclose(got, expect, rtol=1e-11, atol=1e-11)
        g_expect = jax.vmap(jax.grad(lambda a: jnp.sum(_lax(a, w, *args) ** 2)))(xs)
        g_got = jax.vmap(jax.grad(lambda a: jnp.sum(_mine(a, w, *args) ** 2)))(xs)
        np.testing.assert_allclose(g_got, g_expect, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kw", [dict(stride=2, padding=1, output_padding=1),
                                dict(stride=(1, 2), padding=((0, 1), (1, 0)), dilation=(2, 1), groups=2),
                                dict(stride=1, padding=1, dilation=2, output_padding=1)])  # output_padding >= stride
def test_conv_transpose_is_the_adjoint_of_lax_conv(kw):
    with enable_x64():
        rng = np.random.default_rng(3)
        groups = kw.get("groups", 1)
        x = jnp.asarray(rng.standard_normal((2, 4, 5, 4)))
        wt = jnp.asarray(rng.standard_normal((4, 6 // groups, 3, 2)))
        y = cj.conv_transpose(x, wt, **kw)
        # the transposed conv is the input gradient of the forward conv of y's size
        nd = 2
        stride = kw["stride"] if isinstance(kw["stride"], tuple) else (kw["stride"],) * nd
        pad = kw["padding"] if isinstance(kw["padding"], tuple) else ((kw["padding"],) * 2,) * nd
        dil = kw.get("dilation", 1)
        dil = dil if isinstance(dil, tuple) else (dil,) * nd
        fwd = lambda z: _lax(z, wt, stride, pad, dil, groups, "zeros")  # noqa: E731
        natural = fwd(jnp.zeros(y.shape)).shape
        cot = jnp.pad(x, [(0, 0), (0, 0)] + [(0, n - i) for n, i in zip(natural[2:], x.shape[2:])])
        expect = jax.vjp(fwd, jnp.zeros(y.shape))[1](cot)[0]
        np.testing.assert_allclose(y, expect, rtol=1e-11, atol=1e-11)
        gx = jax.grad(lambda x: jnp.sum(cj.conv_transpose(x, wt, **kw) ** 2))(x)
        gx_ref = jax.grad(lambda x: jnp.sum(jax.vjp(fwd, jnp.zeros(y.shape))[1](
            jnp.pad(x, [(0, 0), (0, 0)] + [(0, n - i) for n, i in zip(natural[2:], x.shape[2:])]))[0] ** 2))(x)
        np.testing.assert_allclose(gx, gx_ref, rtol=1e-10, atol=1e-10)


def test_errors_at_trace_time():
    x, w = jnp.zeros((1, 3, 8, 8)), jnp.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"stride must be >= 1"):
        jax.jit(lambda x: cj.conv(x, w, stride=0))(x)
    with pytest.raises(ValueError, match=r"expected input with 3 channels"):
        cj.conv(jnp.zeros((1, 2, 8, 8)), w)
    with pytest.raises(TypeError, match=r"must be a floating-point array"):
        cj.conv(x.astype(jnp.int32), w.astype(jnp.int32))
    with pytest.raises(TypeError, match=r"x must be a JAX or NumPy array"):
        cj.conv([[1.0]], w)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"x must be a JAX or NumPy array, got torch.Tensor"):
        cj.conv(torch.zeros(1, 3, 8, 8), w)
