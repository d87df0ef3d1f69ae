"""The numba backend beyond the problem lists (its fuzz is test_fuzz.py's,
over every implementation): determinism across runs and thread counts,
concurrent calls, empty problems without a launch, and the auto choice."""

import dataclasses

import numba
import numpy as np
import pytest

import convops as co
from convops import config, dispatch, problems, reference, registry
from convops.cpu import im2col
from convops.cpu.common import kernel_problem

from helpers import assert_close


NUMBA = [i for i in co.implementations(backend="numba")]


DETERMINISM = problems.RIGOROUS[:6] + [problems.NETWORKS["mobilenetv2-dw-3x3-c144"],
                                       problems.NETWORKS["dcgan-transposed-4x4-s2"]]


def _det_cases():
    for impl in NUMBA:
        for base in DETERMINISM:
            p = base.with_op(impl.op)
            if not impl.reasons(p):
                yield pytest.param(impl, p, id=f"{impl.name}-{p}")


@pytest.mark.parametrize("impl, p", list(_det_cases()))
def test_bitwise_deterministic_across_runs_and_threads(impl, p):
    rng = np.random.default_rng(5)
    a, b = (rng.standard_normal(s).astype(p.dtype) for s in p.operand_shapes)
    threads = numba.get_num_threads()
    try:
        first = impl.run(p, a, b, None)
        again = impl.run(p, a, b, None)
        numba.set_num_threads(1)
        single = impl.run(p, a, b, None)
    finally:
        numba.set_num_threads(threads)
    assert threads >= 2 or numba.config.NUMBA_NUM_THREADS == 1
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, single)


def test_same_bits_from_any_python_thread():
    """Calls from several Python threads at once give the main thread's bits
    (the BLAS runs single-threaded per call whatever thread calls it)."""
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 12, 17, 15)).astype(np.float32)
    w = rng.standard_normal((12, 12, 3, 3)).astype(np.float32)
    wd = rng.standard_normal((12, 1, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((3, 12, 9, 8)).astype(np.float32)
    calls = [lambda: co.conv(x, w, padding=1, algorithm="im2col"),
             lambda: co.conv(x, w, padding=1, stride=2, algorithm="im2col"),
             lambda: co.conv_grad_input(gy, w, x.shape, padding=1, stride=2, algorithm="im2col"),
             lambda: co.conv_grad_weight(x, gy, w.shape, padding=1, stride=2, algorithm="im2col"),
             lambda: co.conv(x, wd, padding=1, groups=12, algorithm="depthwise")]
    expected = [c() for c in calls]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: [c() for c in calls], range(6)))
    for got in results:
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)


def test_empty_problems_launch_nothing(monkeypatch):
    """Dispatch answers empty problems itself: a kernel that would raise is never called."""
    registry.implementations()

    def boom(*args):
        raise AssertionError("kernel launched for an empty problem")

    patched = [dataclasses.replace(i, run=boom) if i.backend == "numba" else i for i in registry._implementations]
    monkeypatch.setattr(registry, "_implementations", patched)
    w = np.ones((4, 2, 3, 3), np.float32)
    b = np.arange(4, dtype=np.float32)
    for alg in ("im2col", "direct"):
        y = co.conv(np.ones((0, 2, 5, 5), np.float32), w, b, algorithm=alg)
        assert y.shape == (0, 4, 3, 3)
        y = co.conv(np.ones((2, 0, 5, 5), np.float32), np.ones((4, 0, 3, 3), np.float32), b, algorithm=alg)
        np.testing.assert_array_equal(y, np.broadcast_to(b.reshape(4, 1, 1), (2, 4, 3, 3)))
        gw = co.conv_grad_weight(np.ones((0, 2, 5, 5), np.float32), np.ones((0, 4, 3, 3), np.float32), w.shape,
                                 algorithm=alg)
        assert gw.shape == w.shape and not gw.any()
    with pytest.raises(AssertionError, match="kernel launched"):
        co.conv(np.ones((1, 2, 5, 5), np.float32), w, algorithm="im2col")


def test_float16_computes_in_float32():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 9, 9)).astype(np.float16)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float16)
    for alg in ("direct", "im2col"):
        y = co.conv(x, w, padding=1, algorithm=alg)
        assert y.dtype == np.float16
        exact = co.conv(x.astype(np.float64), w.astype(np.float64), padding=1, backend="numpy")
        # one rounding to float16 of a float32 result: well inside the float16 tolerance
        assert np.max(np.abs(y - exact)) <= 2 ** -10 * np.max(np.abs(exact))


@pytest.mark.parametrize("name, expected", [
    ("mobilenetv2-dw-3x3-c144", "depthwise"),
    ("resnet50-3x3-c64", "winograd"),
    ("resnet50-1x1-256to64", "im2col"),
    ("dcgan-transposed-4x4-s2", "im2col"),
])
def test_auto_choice(name, expected):
    p = problems.NETWORKS[name]
    impls, _ = dispatch.candidates(p, "numpy")
    assert dispatch.select(p, impls).chosen.algorithm == expected


@pytest.mark.parametrize("p", [problems.RIGOROUS[i] for i in (1, 2, 4, 5, 12, 14)], ids=str)
def test_adjoint_identities_per_algorithm(p):
    """<fwd(x,w), y> == <x, dgrad(y,w)> == <w, wgrad(x,y)> in float64 for every
    pair of numba algorithms that run the passes (the passes agree with each
    other, not only with the reference)."""
    p = dataclasses.replace(p.forward_pass(), dtype="float64")
    rng = np.random.default_rng(3)
    x, w, y = (rng.standard_normal(s) for s in (p.x_shape, p.w_shape, p.y_shape))
    scale = np.linalg.norm(x) * np.linalg.norm(w) * np.linalg.norm(y)
    ran = 0
    for f in co.implementations(op="fwd", backend="numba"):
        if f.reasons(p):
            continue
        lhs = np.vdot(f.run(p, x, w, None), y)
        for d in co.implementations(op="dgrad", backend="numba"):
            if not d.reasons(p.grad_input()):
                assert abs(lhs - np.vdot(x, d.run(p.grad_input(), y, w, None))) <= 1e-12 * scale, (f.name, d.name)
                ran += 1
        for g in co.implementations(op="wgrad", backend="numba"):
            if not g.reasons(p.grad_weight()):
                assert abs(lhs - np.vdot(w, g.run(p.grad_weight(), x, y, None))) <= 1e-12 * scale, (f.name, g.name)
                ran += 1
    assert ran >= 4


@pytest.mark.parametrize("op", ["fwd", "dgrad", "wgrad"])
def test_im2col_blocks_the_reduction_before_the_output_channels(op):
    """A 512 x 512 3x3 layer's columns exceed a chunk: im2col splits the
    channels (the GEMMs' reduction), not the output channels.  Splitting the
    output channels first cut them to blocks of one, each rebuilding the
    columns (1.6 s for a 4 x 512 x 28 x 28 forward, against 0.1 s), and its
    result is checked against the reference at a size that blocks the same way."""
    p = problems.NETWORKS["resnet50-3x3-c64"]
    p = type(p)(**{**p.__dict__, "n": 4, "c_in": 512, "c_out": 512}).with_op(op)
    t = im2col._tiling(kernel_problem(p))
    assert t.flat and t.kb == 512 and t.cb < 512


def test_im2col_channel_blocks_against_the_reference(monkeypatch):
    monkeypatch.setattr(config, "cpu_chunk_bytes", 40 * 1024)  # 40 KiB: channel blocks of 8 of the 24
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 24, 9, 10)).astype(np.float32)
    w = rng.standard_normal((20, 24, 3, 3)).astype(np.float32)
    q = kernel_problem(co.explain(x, w, padding=1).problem)
    t = im2col._tiling(q)
    assert t.cb < 24 and t.kb == 20
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    assert_close(co.conv(x, w, padding=1, algorithm="im2col"),
                 reference.forward(co.explain(x64, w64, padding=1).problem, x64, w64), "float32")
    dy = rng.standard_normal((2, 20, 9, 10)).astype(np.float32)
    pd = co.explain(x64, w64, padding=1).problem
    assert_close(co.conv_grad_input(dy, w, x.shape, padding=1, algorithm="im2col"),
                 reference.grad_input(pd.grad_input(), dy.astype(np.float64), w64), "float32")
    assert_close(co.conv_grad_weight(x, dy, w.shape, padding=1, algorithm="im2col"),
                 reference.grad_weight(pd.grad_weight(), x64, dy.astype(np.float64)), "float32")


def _column_phase_cases():
    """Widths around the column-phase split (W = 1..9: odd, even, shorter
    than the kernel), column strides 2 and 3, low/high padding from none to
    past the kernel, column dilation 1 and 2, and a 3x3 and a 2x3 kernel."""
    for W in (1, 2, 3, 4, 5, 8, 9):
        for st in (2, 3):
            for lo, hi in ((0, 0), (1, 1), (0, 2), (3, 1)):
                for d in (1, 2):
                    for kh in (3, 2):
                        yield W, st, lo, hi, d, kh


def _column_phase_problem(W, st, lo, hi, d, kh, groups, c):
    try:
        return co.ConvProblem.forward(n=2, c_in=c, c_out=c * (2 if groups > 1 else 1), in_size=(5, W),
                                      kernel=(kh, 3), stride=(2, st), padding=((1, 0), (lo, hi)),
                                      dilation=(1, d), groups=groups, dtype="float64")
    except ValueError:  # no output: the padded row is shorter than the kernel
        return None


@pytest.mark.parametrize("algorithm", ["depthwise", "im2col"])
def test_column_stride_phase_paths_against_the_reference(algorithm):
    """depthwise splits each row into column phases (stride 2: both phases in
    one loop, the 3x3 kernel's nine phase views) and im2col's strided dgrad
    adds into column-phase rows joined at the end: fwd, dgrad and wgrad of
    every edge width against the reference (float64, exact order-free
    tolerance), bias included."""
    impl = {(i.name, i.op): i for i in NUMBA}
    groups, c = (3, 3) if algorithm == "depthwise" else (1, 3)
    rng = np.random.default_rng(11)
    ran = 0
    for case in _column_phase_cases():
        p = _column_phase_problem(*case, groups, c)
        if p is None or p.is_empty:
            continue
        x = rng.standard_normal(p.x_shape)
        w = rng.standard_normal(p.w_shape)
        dy = rng.standard_normal(p.y_shape)
        bias = rng.standard_normal(p.c_out)
        dbias = rng.standard_normal(p.c_in)
        for op, a, b, bb, ref in (("fwd", x, w, bias, reference.forward),
                                  ("dgrad", dy, w, dbias, reference.grad_input),
                                  ("wgrad", x, dy, None, reference.grad_weight)):
            q = p.with_op(op)
            i = impl[(f"numba/{algorithm}", op)]
            assert not i.reasons(q), (case, i.reasons(q))
            got = i.run(q, a, b, bb)
            assert_close(got, ref(q, a, b, bb), "float64", f"{algorithm} {op} {case}")
            ran += 1
    assert ran > 300
