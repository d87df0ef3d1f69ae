"""Every registered implementation on the named problem lists.

Parametrized over the registry, so a kernel is tested the moment it is
registered: each non-reference implementation against the NumPy reference
(dtype tolerance table), the reference itself through the adjoint identities
(it is the oracle; the scipy and torch checks are in test_reference.py).
"""

import numpy as np
import pytest

import convops as co
from convops import problems, reference

from helpers import assert_close, inner

PROBLEMS = problems.TINY + problems.RIGOROUS + list(problems.NETWORKS.values())


def _cases():
    for impl in co.implementations():
        for base in PROBLEMS:
            p = base.with_op(impl.op)
            yield pytest.param(impl, p, id=f"{impl.op}-{impl.name}-{p}")


def _runnable(impl, p):
    return impl.backend in co.available_backends() and not impl.reasons(p)


@pytest.mark.parametrize("impl, p", list(_cases()))
def test_against_reference(impl, p):
    if not _runnable(impl, p):
        # not a skip: the reasons must be real, non-empty sentences
        assert all(isinstance(r, str) and r for r in impl.reasons(p)) or impl.backend not in co.available_backends()
        return
    rng = np.random.default_rng(abs(hash(p)) % 2**32)
    if impl.backend == "numpy":
        p64 = type(p)(**{**p.__dict__, "dtype": "float64"}).forward_pass()
        x, w, y = (rng.standard_normal(s) for s in (p64.x_shape, p64.w_shape, p64.y_shape))
        lhs = inner(impl.run(p64, x, w) if impl.op == "fwd" else reference.run(p64, x, w), y)
        other = {"fwd": lambda: inner(x, reference.run(p64.grad_input(), y, w)),
                 "dgrad": lambda: inner(x, impl.run(p64.grad_input(), y, w)),
                 "wgrad": lambda: inner(w, impl.run(p64.grad_weight(), x, y))}[impl.op]()
        scale = np.sqrt(inner(x, x) * inner(w, w) * inner(y, y))
        assert abs(lhs - other) <= 1e-12 * scale
        return
    a_shape, b_shape = p.operand_shapes
    a = rng.standard_normal(a_shape).astype(p.dtype)
    b = rng.standard_normal(b_shape).astype(p.dtype)
    bias = rng.standard_normal(p.c_out if p.op == "fwd" else p.c_in).astype(p.dtype) if p.op != "wgrad" else None
    saved = (a.copy(), b.copy())
    out = impl.run(p, a, b, bias)
    assert out.shape == p.result_shape and out.dtype == p.dtype
    assert_close(out, reference.run(p, a, b, bias), p.dtype, f"{impl.name} {p}")
    np.testing.assert_array_equal(saved[0], a)
    np.testing.assert_array_equal(saved[1], b)
