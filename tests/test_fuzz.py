"""Seeded fuzz over the whole contract, comfortable and extreme geometry,
with NaN/Inf operands.

- ``test_fuzz_public_api``: conv against the scipy oracle (on the same
  rounded inputs), the adjoint identities tying conv, conv_grad_input,
  conv_transpose and conv_grad_weight together, dtypes, shapes, and no input
  modified.  With NaN/Inf operands the identities are meaningless; every
  result must then have exactly the reference's NaN/Inf pattern instead.
- ``test_fuzz_every_implementation``: each drawn problem, all three passes,
  every registered implementation that can run it, against the reference
  (``..._dense_3x3``: the same over 2-D 3x3 stride-1 layers only).

The module-scoped ``coverage`` fixture counts what the fuzz reached and, when
the module's fuzz tests are done, fails unless every extreme class of
``strategies.EXTREME_CLASSES`` was reached and every implementation ran.
The counts are printed in the terminal summary (see conftest.py).
"""

import collections

import numpy as np
import pytest
from hypothesis import given, settings

import convops as co
from convops import reference, tolerance, validate

from helpers import FUZZ_COUNTS, assert_close, inner, scipy_conv
from strategies import EXTREME_CLASSES, conv_cases, make_operands, plant_specials


@pytest.fixture(scope="module")
def coverage(request):
    counts = collections.Counter()
    failures = request.session.testsfailed
    yield counts
    FUZZ_COUNTS.update(counts)
    if request.session.testsfailed > failures:  # a failing fuzz says enough
        return
    if counts["public api cases"]:
        missing = [c for c in EXTREME_CLASSES if not counts[f"class: {c}"]]
        assert not missing, f"the public-API fuzz never reached: {missing}"
    if counts["implementation cases"]:
        impls = [i for i in co.implementations() if i.backend in co.available_backends() and i.backend != "numpy"]
        idle = [f"{i.op} {i.name}" for i in impls if counts[f"ran: {i.op} {i.name}"] < 5]
        assert not idle, f"implementations the fuzz ran on fewer than 5 problems: {idle}"


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
    if case["specials"]:  # the oracle multiplies the zeros it inserts to dilate: 0 * inf where no tap is
        assert_close(y, co.conv(x, w, b, backend="numpy", **kw), dtype, "conv vs reference")
    else:
        assert_close(y, oracle, dtype, "conv vs scipy oracle")

    rng = np.random.default_rng(case["seed"] + 1)
    gy = rng.standard_normal(y.shape).astype(dtype)
    if case["specials"]:
        gy = plant_specials(gy, rng, count=1)
    gx = co.conv_grad_input(gy, w, x.shape, **kw)
    gw = co.conv_grad_weight(x, gy, w.shape, **kw)
    gt = co.conv_transpose(gy, w, output_size=x.shape[2:], **kw)
    assert gx.dtype == gw.dtype == gt.dtype == dtype
    assert gx.shape == x.shape and gw.shape == w.shape
    np.testing.assert_array_equal(gt, gx)
    if case["specials"]:
        # NaN/inf must reach exactly the elements they reach in the reference
        assert_close(gx, co.conv_grad_input(gy, w, x.shape, backend="numpy", **kw), dtype, "grad_input vs reference")
        assert_close(gw, co.conv_grad_weight(x, gy, w.shape, backend="numpy", **kw), dtype,
                     "grad_weight vs reference")
    else:
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


def _count_public(coverage, case):
    coverage["public api cases"] += 1
    for c in case["classes"]:
        coverage[f"class: {c}"] += 1


@settings(max_examples=300)
@given(conv_cases())
def test_fuzz_public_api(coverage, case):
    check_case(case)
    _count_public(coverage, case)


def check_every_implementation(case, coverage):
    """Each pass of the drawn problem on every implementation that can run
    it, against the reference on the same operands (NaN/inf included)."""
    x, w, b = make_operands(case)
    base = validate.conv_call(x, w, None, **case["kw"]).problem
    rng = np.random.default_rng(case["seed"] + 7)
    dy = rng.standard_normal(base.y_shape).astype(case["dtype"])
    if case["specials"]:
        dy = plant_specials(dy, rng, count=1)
    db = None if b is None else rng.standard_normal(base.c_in).astype(case["dtype"])
    operands = {"fwd": (x, w, b), "dgrad": (dy, w, db), "wgrad": (x, dy, None)}
    coverage["implementation cases"] += 1
    for op in ("fwd", "dgrad", "wgrad"):
        p = base.with_op(op)
        if p.is_empty:
            continue
        a, bb, bias = operands[op]
        saved = (a.copy(), bb.copy())
        ref = reference.run(p, a, bb, bias)
        for impl in co.implementations(op=op):
            if impl.backend == "numpy" or impl.backend not in co.available_backends() or impl.reasons(p):
                continue
            out = impl.run(p, a, bb, bias)
            assert out.shape == p.result_shape and out.dtype == p.dtype
            assert_close(out, ref, p.dtype, f"{impl.name} {p}")
            coverage[f"ran: {op} {impl.name}"] += 1
        np.testing.assert_array_equal(saved[0], a)
        np.testing.assert_array_equal(saved[1], bb)


@settings(max_examples=300)
@given(conv_cases())
def test_fuzz_every_implementation(coverage, case):
    check_every_implementation(case, coverage)


@settings(max_examples=60)
@given(conv_cases(dense3x3=True))
def test_fuzz_every_implementation_dense_3x3(coverage, case):
    """The common layer, extreme sizes and paddings included: the only
    geometry winograd runs, which the random draws almost never produce."""
    check_every_implementation(case, coverage)


@pytest.mark.slow
@settings(max_examples=3000)
@given(conv_cases(max_spatial=12))
def test_fuzz_public_api_long(coverage, case):
    check_case(case)
    _count_public(coverage, case)


@pytest.mark.slow
@settings(max_examples=2000)
@given(conv_cases(max_spatial=12, extreme=True))
def test_fuzz_every_implementation_extreme_long(coverage, case):
    check_every_implementation(case, coverage)
