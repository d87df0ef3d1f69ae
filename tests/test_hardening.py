"""Regression tests for the hardening issue's CPU and core classes, one
section per class, each reproducing the report that was filed (the fuzz in
test_fuzz.py covers the space around them).  Every test runs every
implementation that can run the problem, so a new kernel meets them too."""

import gc
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import convops as co
from convops import arithmetic, config, reference, registry, validate

from helpers import assert_close

PASSES = ("fwd", "dgrad", "wgrad")
DEFAULTS = dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros")


def _problem(xs, ws, dtype="float64", **kw):
    """The forward problem of conv(x of shape xs, w of shape ws, **kw)."""
    x, w = np.empty(0, dtype), np.empty(0, dtype)
    x, w = np.lib.stride_tricks.as_strided(x, xs, (0,) * len(xs)), np.lib.stride_tricks.as_strided(w, ws, (0,) * len(ws))
    return validate.conv_call(x, w, None, **{**DEFAULTS, **kw}).problem


def _impls(p):
    """Every non-reference implementation of p's pass that can run p here."""
    return [i for i in co.implementations(op=p.op)
            if i.backend != "numpy" and i.backend in co.available_backends() and not i.reasons(p)]


def _operands(p, rng, dtype=None):
    a, b = (rng.standard_normal(s).astype(dtype or p.dtype) for s in p.operand_shapes)
    return a, b


def _check_all(base, rng, min_impls=2):
    """Every pass of ``base`` on every implementation against the reference."""
    for op in PASSES:
        p = base.with_op(op)
        a, b = _operands(p, rng)
        ref = reference.run(p, a, b)
        impls = _impls(p)
        assert len(impls) >= min_impls, (p, impls)
        for impl in impls:
            assert_close(impl.run(p, a, b, None), ref, p.dtype, f"{impl.name} {p}")


# ---- 1. empty tap ranges (valid_range reversed, slices wrapped) ----------------------------------
EMPTY_TAP_CASES = [
    # (x shape, w shape, keywords): each was silently wrong or a SystemError before the fix
    ((1, 1, 1, 8), (1, 1, 1, 7), dict(stride=(2, 1), dilation=(1, 3), padding=(0, 9))),
    ((1, 1, 8), (3, 1, 18), dict(stride=2, padding=5)),
    ((1, 2, 10), (3, 2, 3), dict(stride=3, dilation=4, padding="same")),
    ((2, 3, 5, 4), (2, 3, 4, 6), dict(stride=(3, 5), dilation=(2, 3), padding=((7, 1), (0, 13)))),
]


@pytest.mark.parametrize("xs, ws, kw", EMPTY_TAP_CASES)
def test_empty_tap_ranges_every_pass(xs, ws, kw, rng):
    base = _problem(xs, ws, **kw)
    _check_all(base, rng)


def test_empty_tap_range_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x, w = rng.standard_normal((1, 1, 8)), rng.standard_normal((3, 1, 18))
    y = co.conv(x, w, stride=2, padding=5)
    yt = torch.nn.functional.conv1d(torch.tensor(x), torch.tensor(w), stride=2, padding=5).numpy()
    assert y.shape == yt.shape == (1, 3, 1)
    assert_close(y, yt, "float64", "conv1d vs torch")
    gy = rng.standard_normal(y.shape)
    _, pullback = co.conv_transpose_vjp(gy, w, stride=2, padding=5)
    gx_t, gw_t, _ = pullback(x)  # the transposed conv of (1, 3, 1) is (1, 1, 8)
    assert gx_t.shape == gy.shape and gw_t.shape == w.shape


def test_valid_range_is_never_reversed():
    from convops.cpu.rows import valid_range
    for offset in range(-30, 30):
        for stride in (1, 2, 3, 7):
            for size in (0, 1, 5, 8):
                for count in (0, 1, 2, 9):
                    lo, hi = valid_range(offset, stride, size, count)
                    assert 0 <= lo <= hi <= count
                    expect = [q for q in range(count) if 0 <= q * stride + offset < size]
                    assert list(range(lo, hi)) == expect, (offset, stride, size, count)


# ---- 3. read-only operands ----------------------------------------------------------------------------
READONLY = [_problem(xs, ws, **kw) for xs, ws, kw in [
    ((2, 4, 9, 8), (6, 2, 3, 3), dict(padding=1, groups=2)),
    ((2, 4, 9, 8), (8, 1, 3, 3), dict(padding=1, stride=2, groups=4)),
    ((1, 3, 11), (4, 3, 3), dict(dilation=2, padding=2)),
    ((1, 2, 10, 10), (2, 2, 1, 1), dict()),
    ((1, 2, 6, 7), (3, 2, 3, 2), dict(padding=1, padding_mode="reflect")),
]]


def _every_runnable(problems):
    for base in problems:
        for op in PASSES:
            p = base.with_op(op)
            for impl in _impls(p):
                yield pytest.param(impl, p, id=f"{impl.op}-{impl.name}-{p}")


@pytest.mark.parametrize("impl, p", list(_every_runnable(READONLY)))
def test_read_only_operands(impl, p, tmp_path, rng):
    a, b = _operands(p, rng)
    expect = impl.run(p, a, b, None)
    np.save(tmp_path / "a.npy", a)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    frozen = b.copy()
    frozen.setflags(write=False)
    np.testing.assert_array_equal(impl.run(p, mapped, frozen, None), expect)


def test_read_only_through_the_public_api(rng):
    x, w = rng.standard_normal((1, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    y = co.conv(x, w, padding=1)
    for a in (x, w):
        a.setflags(write=False)
    np.testing.assert_array_equal(co.conv(x, w, padding=1), y)
    _, pullback = co.conv_vjp(x, w, padding=1)
    gy = rng.standard_normal(y.shape)
    gy.setflags(write=False)
    pullback(gy)


# ---- 4. NaN and inf reach exactly what they reach in the reference --------------------------------------
def _nan_inf_case(xs, ws, kw, plant, ops=PASSES):
    rng = np.random.default_rng(7)
    base = _problem(xs, ws, **kw)
    for op in ops:
        p = base.with_op(op)
        a, b = _operands(p, rng, "float64")
        a, b = plant(op, a, b)
        ref = reference.run(p, a, b)
        assert np.isnan(ref).any() or np.isinf(ref).any()
        for impl in _impls(p):
            assert_close(impl.run(p, a, b, None), ref, p.dtype, f"{impl.name} {p}")


def test_inf_in_x_times_padding_in_wgrad():
    """im2col's flat wgrad multiplied zero-extended dy by padding columns (0 * inf)."""
    def plant(op, a, b):
        a[0, 0, 0, 0] = np.inf
        return a, b
    _nan_inf_case((1, 2, 6, 6), (3, 2, 3, 3), dict(padding=1), plant, ops=("wgrad",))


def test_nan_weight_in_depthwise_dgrad():
    """Depthwise dgrad's gather form spread a NaN weight to inputs it does not reach."""
    def plant(op, a, b):
        if op != "wgrad":
            b[1, 0, 0, 2] = np.nan
        else:
            a[0, 1, 0, 0] = np.nan
        return a, b
    _nan_inf_case((2, 4, 7, 9), (4, 1, 3, 3), dict(padding=1, groups=4), plant)
    _nan_inf_case((2, 4, 7, 9), (8, 1, 3, 4), dict(padding=((1, 2), (0, 3)), groups=4), plant)


def test_inf_weight_on_zero_padding_in_fwd():
    """direct skipped taps in zero padding, so inf * 0 was not NaN where the reference has it."""
    def plant(op, a, b):
        b[0, 0, 0, 0] = np.inf if op == "fwd" else -np.inf  # wgrad: dy times the padding
        return a, b
    _nan_inf_case((1, 2, 5, 5), (2, 2, 3, 3), dict(padding=2), plant, ops=("fwd", "wgrad"))


# ---- 5. huge strides do not scale work or memory -----------------------------------------------------
def test_huge_strides_are_equivalent_to_small_ones(rng):
    assert len(arithmetic.stride_phases(3, 2**30, 1)) <= 3
    base = _problem((1, 2, 8, 8), (3, 2, 3, 3), stride=(2**30, 2**31 - 1), padding=1)
    assert base.out_size == (1, 1)
    from convops.cpu.common import kernel_problem
    assert kernel_problem(base).stride == (1, 1, 1)
    _check_all(base, rng)  # compile or load every kernel first: loading a module is not the problem's memory
    tracemalloc.start()
    try:
        _check_all(base, rng)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes for a problem of a few hundred elements"


# ---- 6. the workspace cap ------------------------------------------------------------------------------
WORKSPACE = [_problem(xs, ws, "float32", **kw)
             for xs, ws, kw in [
                 ((1, 2, 8, 8), (16384, 2, 3, 3), dict(padding=1)),           # K >> C: 7 GiB before
                 ((1, 2, 8, 8), (16384, 2, 3, 3), dict(padding=1, stride=2)),
                 ((1, 4096, 6, 6), (2, 4096, 3, 3), dict(padding=1)),         # C >> K
                 ((1, 1, 1 << 20), (2, 1, 5), dict(stride=2, padding=2)),     # very long rows
                 ((1, 8, 300, 300), (8, 1, 3, 3), dict(padding=1, groups=8)),
             ]]


@pytest.mark.parametrize("p", [b.with_op(op) for b in WORKSPACE for op in PASSES], ids=str)
def test_workspace_within_the_cap(p, monkeypatch, rng):
    """Every implementation that accepts the problem says how much scratch it
    needs, stays under the cap, and allocates no more than that beyond its
    result and copies of its operands (NumPy allocations, by tracemalloc)."""
    monkeypatch.setattr(config, "cpu_workspace_bytes", 16 * 2**20)
    monkeypatch.setattr(config, "cuda_workspace_bytes", 16 * 2**20)
    a, b = _operands(p, rng)
    operands = a.nbytes + b.nbytes
    ran = 0
    for impl in _impls(p):
        need = impl.workspace_bytes(p)
        cap = config.cpu_workspace_bytes if impl.backend == "numba" else config.cuda_workspace_bytes
        assert 0 <= need <= cap, (impl.name, need)
        impl.run(p, a, b, None)  # compile (or load) first: the compiler's own allocations are not the kernel's
        gc.collect()
        tracemalloc.start()
        try:
            out = impl.run(p, a, b, None)
            current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # result, padded/converted operand copies (at most two of each), the workspace
        bound = 2 * out.nbytes + 3 * operands + need + 2**20
        assert peak <= bound, f"{impl.name}: peak {peak} > {bound} (workspace_bytes {need})"
        assert current <= out.nbytes + 2**20, f"{impl.name} keeps {current - out.nbytes} bytes after the call"
        del out
        ran += 1
    assert ran >= 1


def test_k_much_larger_than_c_runs(rng):
    x, w = rng.standard_normal((1, 2, 8, 8)).astype(np.float32), rng.standard_normal((65536, 2, 3, 3)).astype(np.float32)
    y = co.conv(x, w, padding=1, algorithm="im2col")
    assert y.shape == (1, 65536, 8, 8)
    assert_close(y[:, :64], co.conv(x, w[:64], padding=1, backend="numpy"), "float32", "K = 65536")


# ---- 7. concurrent calls under every threading layer ---------------------------------------------------
CONCURRENT = textwrap.dedent("""
    import sys, numpy as np, numba, convops as co
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 17, 15)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    wd = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    calls = [lambda: co.conv(x, w, padding=1, algorithm="im2col"),
             lambda: co.conv(x, w, padding=1, stride=2, algorithm="direct"),
             lambda: co.conv(x, wd, padding=1, groups=8, algorithm="depthwise"),
             lambda: co.conv(x, w, padding=1, stride=2, algorithm="polyphase")]
    warm = sys.argv[1] == "warm"
    expected = [c() for c in calls] if warm else None   # cold: the first calls race to load the registry
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: [c() for c in calls], range(8)))
    expected = expected or [c() for c in calls]
    assert all(np.array_equal(a, b) for got in results for a, b in zip(got, expected))
    print(numba.threading_layer())
""")


def _layers():
    out = ["workqueue"]
    for layer in ("omp", "tbb"):
        probe = subprocess.run([sys.executable, "-c", "import numba, numpy as np\n"
                                "@numba.njit(parallel=True)\ndef f(a):\n    for i in numba.prange(a.size): a[i] = i\n"
                                "f(np.zeros(4)); print(numba.threading_layer())"],
                               env={**os.environ, "NUMBA_THREADING_LAYER": layer}, capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == layer:
            out.append(layer)
    return out


@pytest.mark.parametrize("start", ["warm", "cold"])
@pytest.mark.parametrize("layer", _layers())
def test_concurrent_calls_under_threading_layer(layer, start):
    """warm: workqueue aborted the process ("Concurrent access has been
    detected"); cold: first calls from several threads found the registry
    half loaded ("unknown algorithm='im2col'")."""
    done = subprocess.run([sys.executable, "-c", CONCURRENT, start], env={**os.environ, "NUMBA_THREADING_LAYER": layer},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == layer


# ---- 8. validation mode --------------------------------------------------------------------------------
def _fake(monkeypatch, run):
    registry.implementations()
    monkeypatch.setitem(registry.BACKENDS, "fake", registry.Backend("fake", "convops.reference", "numpy"))
    monkeypatch.setitem(config.auto_backends, "numpy", ("fake", "numpy"))
    monkeypatch.setitem(config.selection_order, "fake", ("bad",))
    impl = registry.Implementation("fwd", "fake", "bad", run)
    monkeypatch.setattr(registry, "_implementations", registry._implementations + [impl])
    monkeypatch.setattr(config, "validation", True)


def test_validation_catches_a_kernel_that_clobbers_its_input(monkeypatch):
    def clobber(p, x, w, bias=None):
        x[...] = 0  # then computes a result that is right for the clobbered input
        return reference.run(p, x, w, bias)
    _fake(monkeypatch, clobber)
    x, w = np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3))
    with pytest.raises(co.ValidationError, match=r"fake/bad modified its first operand"):
        co.conv(x, w)


@pytest.mark.parametrize("wrong", ["dtype", "shape"])
def test_validation_checks_dtype_and_shape(monkeypatch, wrong):
    def bad(p, x, w, bias=None):
        y = reference.run(p, x, w, bias)
        return y.astype(np.float32) if wrong == "dtype" else y[..., :-1]
    _fake(monkeypatch, bad)
    with pytest.raises(co.ValidationError, match=r"fake/bad result for .* has shape .* and dtype .*, expected"):
        co.conv(np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3)))


# ---- 10. environment variables --------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [("67108864", 2**26), ("64MiB", 2**26), ("64M", 2**26), ("1e6", 10**6),
                                         ("1GB", 10**9), ("512k", 2**19), (" 2 GiB ", 2**31)])
def test_sizes_with_units(text, value):
    assert config.parse_bytes(text, "X") == value


@pytest.mark.parametrize("text", ["-5", "64 furlongs", "", "1.5", "0x10"])
def test_bad_sizes_name_the_variable(text):
    with pytest.raises(ValueError, match=r"CONVOPS_CPU_WORKSPACE_BYTES="):
        config.parse_bytes(text, "CONVOPS_CPU_WORKSPACE_BYTES")


@pytest.mark.parametrize("value, ok", [("64MiB", True), ("1e6", True), ("-1", False), ("lots", False)])
def test_workspace_variable_at_import(value, ok):
    done = subprocess.run([sys.executable, "-c", "import convops; print(convops.config.cpu_workspace_bytes)"],
                          env={**os.environ, "CONVOPS_CPU_WORKSPACE_BYTES": value}, capture_output=True, text=True)
    if ok:
        assert done.returncode == 0 and int(done.stdout) == config.parse_bytes(value), done.stderr
    else:
        assert done.returncode != 0 and f"CONVOPS_CPU_WORKSPACE_BYTES={value!r}" in done.stderr


# ---- 12. transposed arithmetic is validated like the forward one -----------------------------------------
@pytest.mark.parametrize("args, match", [
    ((4, 3, 2, 1, 1, 2), r"output_padding < max\(stride, dilation\)"),
    ((4, 3, 2, 1, 3, 3), r"output_padding=3"),
    ((4, 3, 2, 1, 1, -1), r"output_padding=-1"),
    ((4, 3, 0, 1, 1, 0), r"stride=0"),
    ((4, 3, 1, -1, 1, 0), r"padding=\(-1, -1\)"),
    ((4, 0, 1, 0, 1, 0), r"k=0"),
])
def test_transposed_arithmetic_rejects_bad_parameters(args, match):
    with pytest.raises(ValueError, match=match):
        arithmetic.conv_transpose_output_size(*args)


def test_transposed_arithmetic_accepts_output_padding_below_dilation():
    assert arithmetic.conv_transpose_output_size(4, 3, 1, 1, 3, 2) == 3 + 2 + 7 - 2


def test_shape_command_rejects_bad_transposed_parameters():
    from convops import cli
    assert cli.main(["shape", "--input", "4", "--kernel", "3", "--stride", "2", "--transposed",
                     "--output-padding", "2"]) == 2
    with pytest.raises(SystemExit) as exit_info:  # the parser's own check
        cli.main(["shape", "--input", "4", "--kernel", "3", "--stride", "0", "--transposed"])
    assert exit_info.value.code == 2
