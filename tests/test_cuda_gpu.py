"""The CUDA backend on a real GPU (marked ``gpu``; skipped without a CUDA
device).  ci/gpu.sh runs these on a machine with an NVIDIA GPU."""

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
    assert plan.chosen.algorithm != "implicit_gemm"
    y = co.conv(x, w, backend="cuda", algorithm=algorithm, **kw)
    xs = cp.asnumpy(x[0][:, ::1023, ::358399]).astype(np.float64)
    ref = np.einsum("kc,chw->khw", cp.asnumpy(w)[:, :, 0, 0].astype(np.float64), xs)
    np.testing.assert_allclose(cp.asnumpy(y[0]).astype(np.float64), ref, rtol=2e-3, atol=2e-2)
