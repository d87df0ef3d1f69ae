"""The runtime seam, GPU side: CuPy.  Same interface as
``convops.sim.runtime.SimRuntime`` so the CUDA launchers are written once:
empty / zeros / to_device / to_host / module / get_function / launch /
synchronize.  Modules are memoized per device (CuPy also caches cubins on
disk)."""

from __future__ import annotations

import functools
from typing import Sequence


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
        return _cupy().ascontiguousarray(_cupy().asarray(a))

    def to_host(self, a):
        return _cupy().asnumpy(a)

    def module(self, source: str, options: Sequence[str] = (), name_expressions: Sequence[str] = ()):
        return _module(_cupy().cuda.runtime.getDevice(), source, tuple(options), tuple(name_expressions))

    def get_function(self, module, name: str):
        return module.get_function(name)

    def launch(self, kernel, grid, block, args, shared_mem: int = 0):
        kernel(grid, block, args, shared_mem=shared_mem)

    def synchronize(self) -> None:
        _cupy().cuda.get_current_stream().synchronize()


@functools.lru_cache(maxsize=None)
def _module(device: int, source: str, options: tuple, name_expressions: tuple):
    return _cupy().RawModule(code=source, options=options, name_expressions=name_expressions)
