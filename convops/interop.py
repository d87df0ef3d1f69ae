"""Arrays in, the same arrays out (design §1, "Arrays").

The kernels take NumPy arrays (CPU) and CuPy arrays or anything with
``__cuda_array_interface__`` (CUDA).  Every public function first turns its
array arguments into one of those with :func:`native` and turns its result
back into the caller's kind with :func:`restore`:

=============================  ==============================  ==================================
caller passes                  the kernels see                 the caller gets back
=============================  ==============================  ==================================
numpy.ndarray                  itself                          numpy.ndarray
cupy.ndarray / CUDA interface  itself                          cupy.ndarray
torch.Tensor on the CPU        ``tensor.numpy()`` (a view)     ``torch.from_numpy(out)`` (a view)
torch.Tensor on CUDA           ``cupy.from_dlpack`` (a view)   ``torch.from_dlpack(out)`` (a view)
jax.Array on the CPU           ``numpy.from_dlpack`` (a view)  ``jax.numpy.asarray(out)`` (a copy)
jax.Array on CUDA              ``cupy.from_dlpack`` (a view)   ``jax.dlpack.from_dlpack(out)``
other ``__dlpack__`` objects   NumPy / CuPy view by device     numpy.ndarray / cupy.ndarray
=============================  ==============================  ==================================

Views keep the caller's strides (the kernels accept any strides, and copy
privately when they need contiguous data), so this module copies nothing on
the way in.  JAX's CPU buffers are read-only, and the CPU kernels, compiled
for writeable arrays, take a private copy of read-only operands.  JAX's CPU arrays cannot adopt a NumPy buffer, so a JAX result is one
copy.  Kernels on torch CUDA tensors run on torch's current stream of the
tensor's device (:func:`stream_of`), so they are ordered with the caller's
torch work without a synchronization.  A torch tensor that requires grad is read through ``detach()``: these
functions are not differentiable by torch's autograd; ``convops.torch`` is.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable

import numpy as np

_KDL_CPU, _KDL_CUDA, _KDL_CUDA_HOST, _KDL_CUDA_MANAGED = 1, 2, 3, 13
_ACCEPTED = ("a numpy.ndarray, cupy.ndarray, torch.Tensor or jax.Array, or an object with __dlpack__ "
             "or __cuda_array_interface__")
_TORCH_DTYPES = ("float16", "float32", "float64")


def _identity(out):
    return out


def _describe(a) -> str:
    return f"{type(a).__module__}.{type(a).__qualname__}"


def _torch_tensor(a):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(a, torch.Tensor)


def _jax_array(a):
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(a, jax.Array)


def _check_not_traced(name: str, a):
    tracer = getattr(sys.modules.get("jax.core"), "Tracer", None)
    if tracer is not None and isinstance(a, tracer):
        raise TypeError(f"{name} is a JAX tracer (convops.conv was called inside jax.jit, jax.grad or jax.vmap); "
                        f"use convops.jax.conv there")


def _cupy_from_dlpack(name: str, a):
    try:
        import cupy
    except ImportError:
        raise TypeError(f"{name} is a CUDA {_describe(a)}; CUDA arrays need CuPy (pip install "
                        f"'convops[cuda]')") from None
    return cupy.from_dlpack(a)


def _from_torch(name: str, t):
    dtype = str(t.dtype).removeprefix("torch.")
    if dtype not in _TORCH_DTYPES:
        raise TypeError(f"{name} must be a floating-point tensor (float16, float32 or float64), "
                        f"got {name} of dtype {t.dtype}")
    if t.layout != sys.modules["torch"].strided:
        raise TypeError(f"{name} is a torch tensor with layout {t.layout}; pass a dense tensor "
                        f"({name}.to_dense())")
    t = t.detach()
    if t.is_conj() or t.is_neg():  # lazily negated/conjugated views have no plain buffer
        t = t.resolve_conj().resolve_neg()
    if t.device.type == "cpu":
        return t.numpy()
    if t.device.type == "cuda":
        return _cupy_from_dlpack(name, t)
    raise TypeError(f"{name} is a torch tensor on device {t.device}; convops runs on 'cpu' and 'cuda' tensors")


def _from_dlpack(name: str, a):
    if _jax_array(a):
        _check_not_traced(name, a)
    try:
        device_type = int(a.__dlpack_device__()[0])
    except Exception as e:  # a tracer, a deleted buffer, a broken exporter
        hint = "; inside jax.jit, jax.grad or jax.vmap use convops.jax" if _jax_array(a) else ""
        raise TypeError(f"{name} ({_describe(a)}) cannot be read through DLPack: {e}{hint}") from None
    try:
        if device_type == _KDL_CPU:
            return np.from_dlpack(a)
        if device_type in (_KDL_CUDA, _KDL_CUDA_HOST, _KDL_CUDA_MANAGED):
            return _cupy_from_dlpack(name, a)
    except (RuntimeError, BufferError, ValueError) as e:  # e.g. a dtype NumPy/CuPy cannot hold (bfloat16)
        dtype = getattr(a, "dtype", "unknown")
        raise TypeError(f"{name} ({_describe(a)} of dtype {dtype}) cannot be read through DLPack: {e}; convops "
                        f"takes float16, float32 and float64 arrays") from None
    raise TypeError(f"{name} ({_describe(a)}) is on DLPack device type {device_type}; convops runs on CPU "
                    f"and CUDA arrays")


def native(name: str, a):
    """``a`` as an array the kernels take (a view where the layout allows);
    None stays None.  TypeError naming ``name`` for anything else."""
    if a is None or type(a) is np.ndarray:
        return a
    if _torch_tensor(a):  # first: a CUDA tensor that requires grad raises on __cuda_array_interface__
        return _from_torch(name, a)
    if isinstance(a, np.ndarray) or hasattr(a, "__cuda_array_interface__"):
        return a  # a NumPy subclass (memmap, matrix, masked; validation decides), CuPy, Numba, ...
    if hasattr(a, "__dlpack__"):
        return _from_dlpack(name, a)
    hint = f"; wrap it with numpy.asarray({name})" if isinstance(a, (list, tuple, int, float)) else ""
    raise TypeError(f"{name} must be {_ACCEPTED}, got {_describe(a)}{hint}")


def restorer(like, name: str = "x") -> Callable:
    """The function that turns a result into ``like``'s kind of array
    (``like`` is the argument called ``name``)."""
    if type(like) is np.ndarray or like is None:
        return _identity
    if _torch_tensor(like):
        import torch
        return torch.from_numpy if like.device.type == "cpu" else torch.from_dlpack
    if _jax_array(like):
        _check_not_traced(name, like)
        import jax
        import jax.numpy as jnp
        if int(like.__dlpack_device__()[0]) == _KDL_CPU:
            return jnp.asarray
        return jax.dlpack.from_dlpack
    return _identity


_NO_STREAM = contextlib.nullcontext()


@contextlib.contextmanager
def _torch_cuda_stream(device):
    import cupy
    import torch
    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(device.index):
        # CuPy 14 wraps a stream through the CUDA stream protocol (__cuda_stream__,
        # which torch's streams have) and deprecates ExternalStream, which older
        # CuPy and torch still need
        if hasattr(cupy.cuda.Stream, "from_external") and hasattr(stream, "__cuda_stream__"):
            ours = cupy.cuda.Stream.from_external(stream)
        else:
            ours = cupy.cuda.ExternalStream(stream.cuda_stream, device.index)
        with ours:
            yield


def stream_of(like):
    """Where the kernels for ``like`` run: torch's current stream for a torch
    CUDA tensor, CuPy's current stream otherwise (a context manager)."""
    if _torch_tensor(like) and like.device.type == "cuda":
        return _torch_cuda_stream(like.device)
    return _NO_STREAM
