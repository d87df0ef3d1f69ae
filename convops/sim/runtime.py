"""The runtime seam, simulator side: what the CUDA launchers use, with the
same interface as the CuPy runtime (convops.cuda.runtime), so launchers are
written once.  Device arrays are NumPy arrays; new buffers are filled with NaN
(integers with 0xA5 bytes) so output a kernel never writes is visible."""

from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np

from .module import SimModule


class SimRuntime:
    name = "cuda-sim"

    def empty(self, shape, dtype) -> np.ndarray:
        a = np.empty(shape, dtype)
        if a.dtype.kind in "fc":
            a.fill(np.nan)
        else:
            a.view(np.uint8).fill(0xA5)
        return a

    def zeros(self, shape, dtype) -> np.ndarray:
        return np.zeros(shape, dtype)

    def to_device(self, a) -> np.ndarray:
        return np.ascontiguousarray(a).copy()

    def to_host(self, a) -> np.ndarray:
        return np.asarray(a)

    def module(self, source: str, options: Sequence[str] = (), name_expressions: Sequence[str] = ()) -> SimModule:
        return SimModule(source, options=options, name_expressions=name_expressions)

    def get_function(self, module: SimModule, name: str):
        return module.get_function(name)

    def launch(self, kernel, grid, block, args, shared_mem: int = 0):
        kernel(grid, block, args, shared_mem=shared_mem)

    def synchronize(self) -> None:
        """Launches run to completion before returning."""

    def constant(self, key, make) -> np.ndarray:
        """A device array of ``make()`` (a fresh copy per call: each launch is
        checked on its own buffers)."""
        return self.to_device(make())

    def device_of(self, a):
        return contextlib.nullcontext()
