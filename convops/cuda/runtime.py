"""The runtime seam, GPU side: CuPy.  Same interface as
``convops.sim.runtime.SimRuntime`` so the CUDA launchers are written once:
empty / zeros / to_device / to_host / module / get_function / launch /
synchronize.  Modules are memoized per device (CuPy also caches cubins on
disk)."""

from __future__ import annotations

import collections
import functools
import threading
from typing import Callable, Sequence

import numpy as np


def _cupy():
    import cupy  # imported on first use: the package imports without CuPy or a GPU
    return cupy


class CupyRuntime:
    name = "cuda"

    def empty(self, shape, dtype):
        return _cupy().empty(shape, dtype)

    def zeros(self, shape, dtype):
        return _cupy().zeros(shape, dtype)

    def to_device(self, a):
        """A C-contiguous CuPy array on the current device (zero-copy when ``a``
        already is one; ``__cuda_array_interface__`` objects are wrapped)."""
        cp = _cupy()
        a = cp.asarray(a)
        if a.device.id != cp.cuda.runtime.getDevice():
            a = cp.array(a, copy=True)  # a peer copy onto the current device
        return cp.ascontiguousarray(a)

    def to_host(self, a):
        return _cupy().asnumpy(a)

    def module(self, source: str, options: Sequence[str] = (), name_expressions: Sequence[str] = ()):
        return _module(_cupy().cuda.runtime.getDevice(), source, tuple(options), tuple(name_expressions))

    def get_function(self, module, name: str):
        return _function(module, name)

    def launch(self, kernel, grid, block, args, shared_mem: int = 0):
        # CuPy passes a struct by value from a size-1 NumPy array, not from a
        # NumPy structured scalar (np.void), which the simulator takes; its bytes
        # as one plain void element, since CuPy reads the array's interface and
        # that of a structured dtype costs ~40 us a launch on the host
        args = tuple(_by_value(a) if isinstance(a, np.void) else a for a in args)
        kernel(grid, block, args, shared_mem=shared_mem)

    def synchronize(self) -> None:
        _cupy().cuda.get_current_stream().synchronize()

    def constant(self, key, make: Callable):
        """A read-only device array built from ``make()`` (host), kept per
        device and key (the last 256), so a launcher's lookup tables are
        copied to the device once, not per call."""
        k = (_cupy().cuda.runtime.getDevice(), key)
        with _constants_lock:
            a = _constants.get(k)
            if a is not None:
                _constants.move_to_end(k)
                return a
        a = _cupy().asarray(make())
        with _constants_lock:
            _constants[k] = a
            while len(_constants) > 256:
                _constants.popitem(last=False)
        return a

    def device_of(self, a):
        """Context in which to compute on ``a``'s device (results land there)."""
        return _cupy().cuda.Device(_cupy().asarray(a).device.id)


def _by_value(struct: np.void) -> np.ndarray:
    return _struct_bytes(struct.tobytes())


@functools.lru_cache(maxsize=1024)  # a training loop launches the same few geometries (CuPy copies the bytes)
def _struct_bytes(raw: bytes) -> np.ndarray:
    a = np.frombuffer(raw, dtype=np.dtype((np.void, len(raw))))
    a.flags.writeable = False
    return a


@functools.lru_cache(maxsize=None)  # (RawModule.get_function costs ~5 us a launch)
def _function(module, name: str):
    return module.get_function(name)


_constants: "collections.OrderedDict" = collections.OrderedDict()
_constants_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _module(device: int, source: str, options: tuple, name_expressions: tuple):
    return _cupy().RawModule(code=source, options=options, name_expressions=name_expressions)
