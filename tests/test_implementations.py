"""Every registered implementation on the named problem lists.

Parametrized over the registry, so a kernel is tested the moment it is
registered: each non-reference implementation against the NumPy reference
(dtype tolerance table), the reference itself through the adjoint identities
(it is the oracle; the scipy and torch checks are in test_reference.py).

Only pairs that can run are generated (a pair that cannot is not a passing
test), and ``test_every_implementation_runs_enough`` fails when an
implementation this machine can run gets fewer than MIN_PROBLEMS of them.
"""

import numpy as np
import pytest

import convops as co
from convops import problems, reference

from helpers import assert_close, inner
from strategies import stable_seed

PROBLEMS = problems.TINY + problems.RIGOROUS + list(problems.NETWORKS.values())
MIN_PROBLEMS = 5


def _runnable(impl, p):
    return impl.backend in co.available_backends() and not impl.reasons(p)


def _pairs():
    for impl in co.implementations():
        for base in PROBLEMS:
            p = base.with_op(impl.op)
            if _runnable(impl, p):
                yield impl, p


PAIRS = list(_pairs())


def test_every_implementation_runs_enough():
    """Each implementation this machine can run meets at least MIN_PROBLEMS problems
    of the lists; one that cannot run gives a real reason for every problem."""
    for impl in co.implementations():
        count = sum(1 for i, _ in PAIRS if i is impl)
        if impl.backend in co.available_backends():
            assert count >= MIN_PROBLEMS, f"{impl.op} {impl.name} runs only {count} listed problems"
        for base in PROBLEMS:
            p = base.with_op(impl.op)
            reasons = impl.reasons(p) or ([] if impl.backend in co.available_backends() else ["unavailable"])
            assert all(isinstance(r, str) and r for r in reasons), (impl, p, reasons)


@pytest.mark.parametrize("impl, p", [pytest.param(i, p, id=f"{i.op}-{i.name}-{p}") for i, p in PAIRS])
def test_against_reference(impl, p):
    rng = np.random.default_rng(stable_seed(impl.name, p))
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


def test_seeds_are_stable_across_processes():
    import subprocess
    import sys
    code = ("import sys; sys.path.insert(0, 'tests'); from strategies import stable_seed; "
            "from convops import problems; print(stable_seed('numba/im2col', problems.TINY[3]))")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(h), "PATH": ""}).stdout for h in (1, 2)}
    assert len(runs) == 1
