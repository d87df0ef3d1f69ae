"""Seeded fuzz of the public API over the whole contract.

Per example: conv against the scipy oracle (on the same rounded inputs), the
adjoint identities tying conv, conv_grad_input, conv_transpose and
conv_grad_weight together, dtypes, shapes, and no input modified.  300
examples run in CI; the ``slow`` variant runs 3000.
"""

import numpy as np
import pytest
from hypothesis import given, settings

import convops as co
from convops import tolerance

from helpers import assert_close, inner, scipy_conv
from strategies import conv_cases, make_operands


def _resolved_pads(case, x_shape):
    """(lo, hi) per dim for the oracle, from the public padding form."""
    kw = case["kw"]
    pad = kw["padding"]
    nd = case["nd"]
    if isinstance(pad, str):
        return tuple(co.arithmetic.resolve_padding(pad, i, k, s, d) for i, k, s, d in
                     zip(x_shape[2:], case["kernel"], kw["stride"], kw["dilation"]))
    if isinstance(pad, int):
        return ((pad, pad),) * nd
    return tuple(p if isinstance(p, tuple) else (p, p) for p in pad)


def check_case(case):
    x, w, b = make_operands(case)
    dtype, kw = case["dtype"], case["kw"]
    saved = [a.copy() for a in (x, w, b) if a is not None]
    xs = x[0] if case["unbatched"] else x
    y = co.conv(xs, w, b, **kw)
    if case["unbatched"]:
        y = y[None]
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    pads = _resolved_pads(case, x.shape)
    oracle = scipy_conv(x64, w64, kw["stride"], pads, kw["dilation"], kw["groups"], kw["padding_mode"])
    if b is not None:
        oracle = oracle + b.astype(np.float64).reshape((-1,) + (1,) * case["nd"])
    assert y.dtype == dtype and y.shape == oracle.shape, (y.shape, oracle.shape)
    assert_close(y, oracle, dtype, "conv vs scipy oracle")

    rng = np.random.default_rng(case["seed"] + 1)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = co.conv_grad_input(gy, w, x.shape, **kw)
    gw = co.conv_grad_weight(x, gy, w.shape, **kw)
    gt = co.conv_transpose(gy, w, output_size=x.shape[2:], **kw)
    assert gx.dtype == gw.dtype == gt.dtype == dtype
    assert gx.shape == x.shape and gw.shape == w.shape
    np.testing.assert_array_equal(gt, gx)
    # <conv(x, w), gy> == <x, gx> == <w, gw>, within the dtype's rounding of the results
    y_nobias = oracle - (0 if b is None else b.astype(np.float64).reshape((-1,) + (1,) * case["nd"]))
    lhs = inner(y_nobias, gy)
    tol = tolerance.TOLERANCE[dtype]
    norm = np.linalg.norm
    assert abs(lhs - inner(x, gx)) <= tol * (norm(x64) * norm(gx.astype(np.float64)) + abs(lhs)) + 1e-300
    assert abs(lhs - inner(w, gw)) <= tol * (norm(w64) * norm(gw.astype(np.float64)) + abs(lhs)) + 1e-300
    if kw["padding"] != "same":
        # output_padding selects the same size as output_size
        high = [co.arithmetic.conv_transpose_output_range(i, k, s, p, d)[1] for i, k, s, p, d in
                zip(gy.shape[2:], case["kernel"], kw["stride"], pads, kw["dilation"])]
        smallest = [h - max(s, d) + 1 for h, s, d in zip(high, kw["stride"], kw["dilation"])]
        out_pad = tuple(t - m if i else 0 for t, m, i in zip(x.shape[2:], smallest, gy.shape[2:]))
        np.testing.assert_array_equal(co.conv_transpose(gy, w, output_padding=out_pad, **kw), gx)
    for before, after in zip(saved, [a for a in (x, w, b) if a is not None]):
        np.testing.assert_array_equal(before, after)


@settings(max_examples=300)
@given(conv_cases())
def test_fuzz_public_api(case):
    check_case(case)


@pytest.mark.slow
@settings(max_examples=3000)
@given(conv_cases(max_spatial=12))
def test_fuzz_public_api_long(case):
    check_case(case)
