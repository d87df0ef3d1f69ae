"""The CUDA backend on a real GPU (marked ``gpu``; skipped without a CUDA
device).  ci/gpu.sh runs these on a machine with an NVIDIA GPU."""

import warnings

import numpy as np
import pytest

import convops as co
from convops import reference

pytestmark = pytest.mark.gpu


def _cupy():
    cp = pytest.importorskip("cupy")
    try:
        if cp.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("needs a CUDA device")
    except Exception:  # noqa: BLE001
        pytest.skip("needs a CUDA device")
    return cp


ALGORITHMS = ("direct", "im2col", "implicit_gemm")


def _has_tensor_cores(cp):
    return int(cp.cuda.Device().compute_capability) >= 80


@pytest.mark.parametrize("dtype, mode", [("float16", "exact"), ("float32", "exact"), ("float32", "3xtf32"),
                                         ("float32", "tf32")])
def test_tensor_cores_every_pass(dtype, mode, monkeypatch):
    """implicit_gemm_tc on the device: float32's default (six TF32 products)
    meets float32's tolerance, the opt-ins theirs (3xTF32 1e-4, TF32
    float16's); multi-tile M and N, more stages than the pipeline holds."""
    cp = _cupy()
    if not _has_tensor_cores(cp):
        pytest.skip("needs sm_80 or newer")
    from convops import config
    from convops.cuda.implicit_gemm_tc import TF32X3_TOLERANCE
    from convops.tolerance import TOLERANCE, relative_error
    monkeypatch.setattr(config, "tf32x3", mode == "3xtf32")
    monkeypatch.setattr(config, "allow_tf32", mode == "tf32")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 40, 15, 13)).astype(dtype)
    w = rng.standard_normal((136, 40, 3, 3)).astype(dtype)
    b = rng.standard_normal(136).astype(dtype)
    tol = {"exact": TOLERANCE[dtype], "3xtf32": TF32X3_TOLERANCE, "tf32": TOLERANCE["float16"]}[mode]
    for kw in (dict(padding=1), dict(stride=2, padding=(0, 2), dilation=(2, 1)), dict(padding=2, padding_mode="reflect")):
        y = co.conv(cp.asarray(x), cp.asarray(w), cp.asarray(b), backend="cuda", algorithm="implicit_gemm_tc", **kw)
        assert relative_error(cp.asnumpy(y), co.conv(x, w, b, backend="numpy", **kw)) <= tol
        gy = rng.standard_normal(y.shape).astype(dtype)
        gx = co.conv_grad_input(cp.asarray(gy), cp.asarray(w), x.shape, backend="cuda", algorithm="implicit_gemm_tc",
                                **kw)
        assert relative_error(cp.asnumpy(gx), co.conv_grad_input(gy, w, x.shape, backend="numpy", **kw)) <= tol
        gw = co.conv_grad_weight(cp.asarray(x), cp.asarray(gy), w.shape, backend="cuda", algorithm="implicit_gemm_tc",
                                 **kw)
        assert relative_error(cp.asnumpy(gw), co.conv_grad_weight(x, gy, w.shape, backend="numpy", **kw)) <= tol
        again = co.conv_grad_weight(cp.asarray(x), cp.asarray(gy), w.shape, backend="cuda",
                                    algorithm="implicit_gemm_tc", **kw)
        np.testing.assert_array_equal(cp.asnumpy(gw), cp.asnumpy(again))


def test_tensor_cores_agree_with_the_simulator():
    """The same kernels on the device and on cuda-sim: float16 results equal to
    within float16 rounding of float32 sums taken in different orders."""
    cp = _cupy()
    if not _has_tensor_cores(cp):
        pytest.skip("needs sm_80 or newer")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 24, 9, 11)).astype("float16")
    w = rng.standard_normal((40, 24, 3, 3)).astype("float16")
    dev = cp.asnumpy(co.conv(cp.asarray(x), cp.asarray(w), padding=1, backend="cuda", algorithm="implicit_gemm_tc"))
    sim = co.conv(x, w, padding=1, backend="cuda-sim", algorithm="implicit_gemm_tc")
    np.testing.assert_allclose(dev.astype(float), sim.astype(float), atol=2e-3 * np.abs(sim).max())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_cupy_arrays_every_pass(algorithm, dtype):
    cp = _cupy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 9, 8)).astype(dtype)
    w = rng.standard_normal((8, 3, 3, 3)).astype(dtype)
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    y = co.conv(cp.asarray(x), cp.asarray(w), backend="cuda", algorithm=algorithm, **kw)
    assert isinstance(y, cp.ndarray)
    ref = co.conv(x, w, backend="numpy", **kw)
    tol = {"float16": 1e-2, "float32": 1e-4, "float64": 1e-10}[dtype]
    np.testing.assert_allclose(cp.asnumpy(y).astype(float), ref.astype(float), atol=tol * np.abs(ref).max())
    gy = rng.standard_normal(ref.shape).astype(dtype)
    gx = co.conv_grad_input(cp.asarray(gy), cp.asarray(w), x.shape, backend="cuda", algorithm=algorithm, **kw)
    gxr = co.conv_grad_input(gy, w, x.shape, backend="numpy", **kw)
    np.testing.assert_allclose(cp.asnumpy(gx).astype(float), gxr.astype(float), atol=tol * np.abs(gxr).max())
    gw = co.conv_grad_weight(cp.asarray(x), cp.asarray(gy), w.shape, backend="cuda", algorithm=algorithm, **kw)
    gwr = co.conv_grad_weight(x, gy, w.shape, backend="numpy", **kw)
    np.testing.assert_allclose(cp.asnumpy(gw).astype(float), gwr.astype(float), atol=tol * np.abs(gwr).max())


def test_non_contiguous_input_non_default_stream_and_determinism():
    cp = _cupy()
    rng = np.random.default_rng(1)
    x = cp.asarray(rng.standard_normal((3, 4, 12, 10)).astype("float32"))[:, :, ::2, 1:]
    w = cp.asarray(rng.standard_normal((5, 4, 3, 3)).astype("float32"))
    with cp.cuda.Stream(non_blocking=True):
        a = co.conv(x, w, padding=1)
        b = co.conv(x, w, padding=1)
    np.testing.assert_array_equal(cp.asnumpy(a), cp.asnumpy(b))
    ref = reference.forward(co.explain(cp.asnumpy(x), cp.asnumpy(w), padding=1).problem, cp.asnumpy(x), cp.asnumpy(w))
    np.testing.assert_allclose(cp.asnumpy(a), ref, atol=1e-4 * np.abs(ref).max())


def test_no_device_memory_growth_over_100_calls():
    cp = _cupy()
    x = cp.ones((4, 8, 16, 16), "float32")
    w = cp.ones((8, 8, 3, 3), "float32")
    co.conv(x, w, padding=1)
    cp.cuda.Device().synchronize()
    pool = cp.get_default_memory_pool()
    before = pool.total_bytes()
    for _ in range(100):
        co.conv(x, w, padding=1)
    cp.cuda.Device().synchronize()
    assert pool.total_bytes() <= before


def test_agrees_with_torch_cudnn():
    cp = _cupy()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    x = torch.randn(4, 16, 20, 20, device="cuda")
    w = torch.randn(32, 16, 3, 3, device="cuda")
    ref = torch.nn.functional.conv2d(x, w, stride=2, padding=1)
    y = co.conv(cp.asarray(x), cp.asarray(w), stride=2, padding=1)
    np.testing.assert_allclose(cp.asnumpy(y), ref.cpu().numpy(), atol=1e-4 * float(ref.abs().max()))


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
def test_activation_past_2_31_elements(algorithm):
    """The 64-bit offset path: an input of 2.2e9 elements (4.4 GB of float16)
    whose strided outputs read its far end; implicit_gemm declines it."""
    cp = _cupy()
    x = cp.random.standard_normal((1, 3, 1024, 716800), dtype=cp.float32).astype(cp.float16)
    assert x.size > 2**31
    w = cp.asarray(np.arange(1, 7, dtype=np.float16).reshape(2, 3, 1, 1))
    kw = dict(stride=(1023, 358399))
    plan = co.explain(x, w, backend="cuda", algorithm="auto", **kw)
    assert plan.chosen.algorithm not in ("implicit_gemm", "implicit_gemm_tc")
    y = co.conv(x, w, backend="cuda", algorithm=algorithm, **kw)
    xs = cp.asnumpy(x[0][:, ::1023, ::358399]).astype(np.float64)
    ref = np.einsum("kc,chw->khw", cp.asnumpy(w)[:, :, 0, 0].astype(np.float64), xs)
    np.testing.assert_allclose(cp.asnumpy(y[0]).astype(np.float64), ref, rtol=2e-3, atol=2e-2)


def _torch_cuda():
    """torch, where it and CuPy both see a CUDA device."""
    _cupy()
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    return torch


def test_torch_cuda_tensors_run_on_torchs_stream_and_come_back_as_tensors():
    """CUDA tensors go to the cuda backend through views and come back as
    CUDA tensors; the kernels run on torch's current stream, so work queued
    on a side stream before the call is seen (no race) without a sync; the
    convops.torch ops differentiate on the device."""
    torch = _torch_cuda()
    import convops.torch as ct
    F = torch.nn.functional
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(8, 16, 64, 64, device="cuda", dtype=torch.float64, generator=gen)
    w = torch.randn(32, 16, 3, 3, device="cuda", dtype=torch.float64, generator=gen)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), warnings.catch_warnings():
        warnings.filterwarnings("error", "ExternalStream is deprecated")  # CuPy 14: the stream protocol instead
        x2 = x.mul(2).add(1)  # queued on the side stream just before convops reads it
        y = co.conv(x2, w, padding=1)
        xg = x2.clone().requires_grad_()
        yt = ct.conv2d(xg, w, None, 1, 1)
        yt.square().sum().backward()
    torch.cuda.synchronize()
    assert isinstance(y, torch.Tensor) and y.device == x.device and y.dtype == torch.float64
    expect = F.conv2d(x2, w, None, 1, 1)
    torch.testing.assert_close(y, expect, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(yt, expect, rtol=1e-10, atol=1e-10)
    xr = x2.clone().requires_grad_()
    F.conv2d(xr, w, None, 1, 1).square().sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-9, atol=1e-9)


def test_torch_compile_with_cuda_tensors():
    """convops.torch under torch.compile(fullgraph=True) on CUDA tensors: the
    fake implementations give CUDA outputs, and the compiled forward and
    backward match cuDNN's in float64."""
    torch = _torch_cuda()
    import convops.torch as ct
    F = torch.nn.functional
    gen = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(4, 8, 20, 20, device="cuda", dtype=torch.float64, generator=gen)
    w = torch.randn(12, 8, 3, 3, device="cuda", dtype=torch.float64, generator=gen)
    b = torch.randn(12, device="cuda", dtype=torch.float64, generator=gen)

    def step(conv, x, w, b):
        return conv(x, w, b, 2, 1, 1).relu().sum()

    compiled = torch.compile(lambda x, w, b: step(ct.conv2d, x, w, b), fullgraph=True)
    xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
    xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
    ours, theirs = compiled(xs, ws, bs), step(F.conv2d, xr, wr, br)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    for a, r in ((xs, xr), (ws, wr), (bs, br)):
        assert a.grad.device == r.grad.device
        torch.testing.assert_close(a.grad, r.grad, rtol=1e-9, atol=1e-9)


def _jax_gpu():
    jax = pytest.importorskip("jax")
    try:
        return jax, jax.devices("gpu")[0]
    except RuntimeError:
        pytest.skip("jax has no GPU here")


def test_jax_cuda_arrays_through_the_core_api_and_convops_jax():
    """A JAX array on the GPU goes to the cuda backend through DLPack and
    comes back as a JAX array on the same device; convops.jax (a host
    callback) takes GPU arrays too."""
    _cupy()
    jax, gpu = _jax_gpu()
    import convops.jax as cj
    rng = np.random.default_rng(2)
    xn = rng.standard_normal((2, 6, 17, 15), dtype=np.float32)
    wn = rng.standard_normal((4, 3, 3, 2), dtype=np.float32)
    x, w = jax.device_put(xn, gpu), jax.device_put(wn, gpu)
    kw = dict(stride=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2)
    x64, w64 = xn.astype(np.float64), wn.astype(np.float64)
    problem = co.explain(x64, w64, **kw).problem
    expect = reference.forward(problem, x64, w64)
    y = co.conv(x, w, **kw)
    assert isinstance(y, jax.Array) and y.devices() == {gpu} and y.dtype == np.float32
    np.testing.assert_allclose(np.asarray(y), expect, rtol=1e-4, atol=1e-4)
    yj = jax.jit(lambda x, w: cj.conv(x, w, **kw))(x, w)
    np.testing.assert_allclose(np.asarray(yj), expect, rtol=1e-4, atol=1e-4)
    gx = jax.grad(lambda x: cj.conv(x, w, **kw).sum())(x)
    gx_ref = reference.grad_input(problem, np.ones(expect.shape), w64)
    np.testing.assert_allclose(np.asarray(gx), gx_ref, rtol=1e-4, atol=1e-4)
