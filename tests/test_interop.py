"""Arrays in, the same arrays out: torch tensors, JAX arrays and DLPack
objects through the core API (convops.interop), and torch.nn.functional's
positional order on conv1d/2d/3d and conv_transpose1d/2d/3d."""

import inspect
import threading

import numpy as np
import pytest

import convops as co
from convops import api, interop

torch = pytest.importorskip("torch")


def _operands(rng, dtype=np.float32):
    x = rng.standard_normal((2, 3, 9, 7)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    return x, w, b


def test_torch_cpu_tensors_in_torch_tensors_out_bitwise_as_numpy(rng):
    x, w, b = _operands(rng)
    expect = co.conv(x, w, b, stride=2, padding=1)
    got = co.conv(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=2, padding=1)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32 and got.device.type == "cpu"
    np.testing.assert_array_equal(got.numpy(), expect)


def test_contiguous_cpu_tensor_is_not_copied_in_or_out(rng, monkeypatch):
    x, w, b = _operands(rng)
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    seen = {}
    real = api.dispatch.execute

    def spy(call, a, bb, bias=None, **kw):
        seen["a"], seen["b"] = a.ctypes.data, bb.ctypes.data
        seen["out"] = out = real(call, a, bb, bias, **kw)
        return out

    monkeypatch.setattr(api.dispatch, "execute", spy)
    y = co.conv(tx, tw)
    assert seen["a"] == tx.data_ptr() and seen["b"] == tw.data_ptr()  # the kernels read the tensors' own memory
    assert y.data_ptr() == seen["out"].ctypes.data  # and the result tensor is the kernel's array


def test_strided_and_grad_requiring_tensors(rng):
    x, w, b = _operands(rng, np.float64)
    tx = torch.from_numpy(x).transpose(2, 3).requires_grad_()  # a non-contiguous view that requires grad
    got = co.conv(tx, torch.from_numpy(w).transpose(2, 3), padding=(1, 0))
    expect = co.conv(np.ascontiguousarray(x.transpose(0, 1, 3, 2)), np.ascontiguousarray(w.transpose(0, 1, 3, 2)),
                     padding=(1, 0))
    assert not got.requires_grad  # the core API is not differentiable by torch: convops.torch is
    np.testing.assert_array_equal(got.numpy(), expect)


def test_input_tensors_are_not_modified(rng):
    x, w, b = _operands(rng)
    tx, tw, tb = torch.from_numpy(x.copy()), torch.from_numpy(w.copy()), torch.from_numpy(b.copy())
    gy = torch.ones(2, 4, 9, 7)  # padding 'same' below
    co.conv(tx, tw, tb, padding="same")
    co.conv_grad_input(gy[:, :, :, :], tw, (2, 3, 9, 7), padding=((1, 1), (0, 1)))
    co.conv_grad_weight(tx, gy, (4, 3, 3, 2), padding=((1, 1), (0, 1)))
    assert np.array_equal(tx.numpy(), x) and np.array_equal(tw.numpy(), w) and np.array_equal(tb.numpy(), b)


def test_every_public_function_returns_the_callers_kind(rng):
    x, w, b = _operands(rng, np.float64)
    tx, tw, tb = map(torch.from_numpy, (x, w, b))
    y = co.conv(tx, tw, tb)
    gy = torch.ones_like(y)
    assert isinstance(co.conv_grad_input(gy, tw, tuple(tx.shape)), torch.Tensor)
    assert isinstance(co.conv_grad_weight(tx, gy, tuple(tw.shape)), torch.Tensor)
    assert isinstance(co.conv_transpose(y, tw, None), torch.Tensor)
    y2, pullback = co.conv_vjp(tx, tw, tb)
    grads = pullback(gy)
    assert all(isinstance(g, torch.Tensor) for g in (y2, *grads))
    expect = co.conv_vjp(x, w, b)[1](np.ones(y.shape))
    for g, e in zip(grads, expect):
        np.testing.assert_array_equal(g.numpy(), e)
    yt, pull_t = co.conv_transpose_vjp(y, tw, None)
    assert isinstance(yt, torch.Tensor) and all(isinstance(g, torch.Tensor) for g in pull_t(yt)[:2])
    assert "chosen" in str(co.explain(tx, tw))


def test_unbatched_tensor(rng):
    x, w, _ = _operands(rng)
    got = co.conv(torch.from_numpy(x[0]), torch.from_numpy(w))
    assert tuple(got.shape) == (4, 7, 6)
    np.testing.assert_array_equal(got.numpy(), co.conv(x[0], w))


@pytest.mark.parametrize("dtype", ["bfloat16", "int64", "complex64", "bool"])
def test_unsupported_tensor_dtypes_are_type_errors(dtype):
    x = torch.zeros(1, 1, 4, 4, dtype=getattr(torch, dtype))
    with pytest.raises(TypeError, match=rf"x must be a floating-point tensor .*got x of dtype torch.{dtype}"):
        co.conv(x, torch.zeros(1, 1, 3, 3))


def test_sparse_tensors_are_type_errors():
    with pytest.raises(TypeError, match=r"x is a torch tensor with layout torch.sparse_coo; pass a dense tensor"):
        co.conv(torch.zeros(1, 1, 4, 4).to_sparse(), torch.zeros(1, 1, 3, 3))


def test_jax_bfloat16_is_a_type_error_naming_the_argument():
    jax = pytest.importorskip("jax")
    x = jax.numpy.ones((1, 1, 4, 4), jax.numpy.bfloat16)
    with pytest.raises(TypeError, match=r"^x \(.*bfloat16.*\) cannot be read through DLPack"):
        co.conv(x, np.zeros((1, 1, 3, 3), np.float32))


def test_tensor_on_an_unsupported_device_is_a_type_error():
    with pytest.raises(TypeError, match=r"weight is a torch tensor on device meta"):
        co.conv(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3, device="meta"))


def test_mixed_kinds_follow_x_and_share_a_device(rng):
    x, w, b = _operands(rng)
    got = co.conv(torch.from_numpy(x), w, b)  # a NumPy weight with a torch input: both on the CPU
    assert isinstance(got, torch.Tensor)
    got = co.conv(x, torch.from_numpy(w))
    assert isinstance(got, np.ndarray)
    with pytest.raises(TypeError, match="dtype float64 does not match x dtype float32"):
        co.conv(torch.from_numpy(x), torch.from_numpy(w.astype(np.float64)))


@pytest.mark.parametrize("bad", [[[1.0]], 3.0, "x", object()])
def test_non_arrays_get_a_type_error_that_says_what_to_pass(bad):
    with pytest.raises(TypeError, match=r"must be a numpy.ndarray, cupy.ndarray, torch.Tensor or jax.Array"):
        co.conv(bad, np.zeros((1, 1, 3, 3)))
    with pytest.raises(TypeError, match=r"weight must be a numpy.ndarray"):
        co.conv2d(np.zeros((1, 1, 3, 3)), bad)


class _DLPackOnly:
    """A foreign array that speaks only DLPack."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


class _ForeignDevice(_DLPackOnly):
    def __dlpack_device__(self):
        return (14, 0)  # kDLOneAPI


def test_dlpack_objects_are_read_as_views(rng):
    x, w, b = _operands(rng)
    got = co.conv(_DLPackOnly(x), _DLPackOnly(w), b)
    assert type(got) is np.ndarray  # a foreign kind comes back as NumPy (documented)
    np.testing.assert_array_equal(got, co.conv(x, w, b))
    assert interop.native("x", _DLPackOnly(x)).ctypes.data == x.ctypes.data
    with pytest.raises(TypeError, match="DLPack device type 14"):
        co.conv(_ForeignDevice(x), w)


def test_jax_arrays_in_jax_arrays_out(rng):
    jax = pytest.importorskip("jax")
    x, w, b = _operands(rng)
    got = co.conv(jax.numpy.asarray(x), jax.numpy.asarray(w), jax.numpy.asarray(b), stride=(1, 2))
    assert isinstance(got, jax.Array)
    np.testing.assert_array_equal(np.asarray(got), co.conv(x, w, b, stride=(1, 2)))
    with pytest.raises(TypeError, match="convops.jax"):
        jax.jit(lambda a: co.conv(a, w))(x)


def test_threads_share_the_adapter(rng):
    x, w, b = _operands(rng, np.float64)
    expect = co.conv(x, w, b, padding=1)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(co.conv(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 80
    assert all(np.array_equal(r.numpy(), expect) for r in results)


# --- torch.nn.functional's positional order -------------------------------

def test_positional_order_matches_torch_functional(rng):
    F = torch.nn.functional
    x = rng.standard_normal((2, 4, 11)).astype(np.float64)
    w = rng.standard_normal((6, 2, 3)).astype(np.float64)
    b = rng.standard_normal(6)
    tx, tw, tb = map(torch.from_numpy, (x, w, b))
    np.testing.assert_allclose(co.conv1d(x, w, b, 2, 1, 2, 2), F.conv1d(tx, tw, tb, 2, 1, 2, 2).numpy(),
                               rtol=1e-12, atol=1e-12)
    wt = rng.standard_normal((4, 3, 3))
    bt = rng.standard_normal(6)
    np.testing.assert_allclose(co.conv_transpose1d(x, wt, bt, 2, 1, 1, 2, 2),
                               F.conv_transpose1d(tx, torch.from_numpy(wt), torch.from_numpy(bt), 2, 1, 1, 2,
                                                  2).numpy(), rtol=1e-12, atol=1e-12)
    x2, w2 = x[:, :2, None], w[:, :, None]  # (2, 2, 1, 11), (6, 2, 1, 3)
    np.testing.assert_array_equal(co.conv2d(x2, w2, None, 2), co.conv(x2, w2, stride=2))  # the call


def test_fixed_rank_functions_have_real_signatures():
    for name in ("conv1d", "conv2d", "conv3d"):
        params = list(inspect.signature(getattr(co, name)).parameters)
        assert params[:7] == ["input", "weight", "bias", "stride", "padding", "dilation", "groups"], name
    for name in ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
        params = list(inspect.signature(getattr(co, name)).parameters)
        assert params[:8] == ["input", "weight", "bias", "stride", "padding", "output_padding", "groups",
                              "dilation"], name
    sig = inspect.signature(co.conv2d)
    assert sig.parameters["padding_mode"].kind is inspect.Parameter.KEYWORD_ONLY


def test_fixed_rank_still_checks_the_weight_rank():
    with pytest.raises(ValueError, match="conv3d expects a 5-dim weight"):
        co.conv3d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="conv_transpose1d expects a 3-dim weight"):
        co.conv_transpose1d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3))
