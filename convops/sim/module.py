"""SimModule and SimKernel: CuPy's RawModule/RawKernel API on the SIMT simulator.

The kernel source is compiled with the system C++ compiler against
``include/cuda_sim.h`` into a shared library (cached on disk, keyed by the
source, options, name expressions and the simulator's own sources), with one
exported launcher and one signature function per kernel.  A launch stages
every array argument between guard zones, runs the kernel, checks the
guards, and (unless the kernel opts out) runs it again with the thread order
reversed inside every barrier interval and requires bitwise-identical
outputs.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import (SimArgumentError, SimBarrierError, SimCompileError, SimLaunchError, SimOutOfBoundsError,
                     SimRaceError)

INCLUDE = Path(__file__).resolve().parent / "include"
GUARD = 64  # bytes of guard zone on each side of every array argument
_GUARD_BYTE = 0xA5
_CACHE_LOCK = threading.Lock()


def _version() -> str:
    digest = hashlib.sha256()
    for f in sorted(INCLUDE.glob("*.h")) + [Path(__file__)]:
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    root = os.environ.get("CONVOPS_SIM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "convops", "sim")
    return Path(root)


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


_EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_][\w:<>\s]*?)\s*(\w+)\s*\[\s*\]\s*;")
_KERNEL = re.compile(r"(template\s*<[^{;]*?>\s*)?__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+"
                     r"(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(")


def _rewrite(source: str) -> str:
    """``extern __shared__ T name[];`` -> a pointer to the launch's dynamic shared memory
    (the one CUDA form a C++ compiler cannot take as is)."""
    return _EXTERN_SHARED.sub(lambda m: f"{m.group(1).strip()}* {m.group(2)} = reinterpret_cast<{m.group(1).strip()}*>"
                                        f"(::sim::dynamic_shared());", source)


def kernel_names(source: str) -> tuple[list[str], list[str]]:
    """(plain kernels, template kernels) declared with __global__ in the source."""
    plain, templated = [], []
    for m in _KERNEL.finditer(source):
        (templated if m.group(1) else plain).append(m.group(2))
    return plain, templated


class SimModule:
    """Like ``cupy.RawModule(code=..., options=..., name_expressions=...)``.

    ``path`` reads the source from a file (its name appears in compiler
    messages).  Template kernels are reachable through ``name_expressions``
    (e.g. ``"conv_fwd<float>"``), plain ``__global__`` kernels by name.
    """

    def __init__(self, code: str | None = None, *, path: str | os.PathLike | None = None,
                 options: Sequence[str] = (), name_expressions: Sequence[str] = ()):
        if (code is None) == (path is None):
            raise TypeError("SimModule needs exactly one of code= or path=")
        if path is not None:
            code = Path(path).read_text()
            filename = str(Path(path).resolve())
        else:
            filename = "<sim-source>"
        self.code = code
        self.options = tuple(options)
        plain, templated = kernel_names(code)
        self.names = list(dict.fromkeys(plain + list(name_expressions)))
        self._library = self._build(filename)
        self._functions: dict[str, SimKernel] = {}

    def _build(self, filename: str):
        cxx = compiler()
        if cxx is None:
            raise SimCompileError("no C++ compiler found (set CXX or install g++)")
        lines = ['#include "cuda_sim.h"', f'#line 1 "{filename}"', _rewrite(self.code), ""]
        for i, expr in enumerate(self.names):
            lines.append(f'extern "C" int convops_sim_launch_{i}(const dim3* g, const dim3* b, void** a, '
                         f'unsigned long shm, int order, char* err, int len) '
                         f'{{ return ::sim::launch_kernel(&{expr}, *g, *b, a, shm, order, err, len); }}')
            lines.append(f'extern "C" int convops_sim_signature_{i}(long* s, int* p, int cap) '
                         f'{{ return ::sim::signature(&{expr}, s, p, cap); }}')
        text = "\n".join(lines)
        flags = ["-O2", "-std=c++17", "-shared", "-fPIC", "-pthread", "-w", f"-I{INCLUDE}", *self.options]
        key = hashlib.sha256("\0".join([_version(), cxx, text, *flags]).encode()).hexdigest()[:24]
        target = cache_dir() / f"{key}.so"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                src = Path(tmp) / "kernel.cpp"
                src.write_text(text)
                out = Path(tmp) / "kernel.so"
                done = subprocess.run([cxx, *flags, str(src), "-o", str(out)], capture_output=True, text=True)
                if done.returncode:
                    raise SimCompileError(f"compiling {filename} failed:\n{done.stderr.strip()}")
                os.replace(out, target)  # atomic: concurrent builders race harmlessly
        return ctypes.CDLL(str(target))

    def get_function(self, name: str) -> "SimKernel":
        if name not in self.names:
            raise SimLaunchError(f"no kernel {name!r} in this module (kernels: {', '.join(self.names) or 'none'}; "
                                 f"template kernels need name_expressions)")
        if name not in self._functions:
            i = self.names.index(name)
            self._functions[name] = SimKernel(name, getattr(self._library, f"convops_sim_launch_{i}"),
                                              getattr(self._library, f"convops_sim_signature_{i}"))
        return self._functions[name]


class _Dim3(ctypes.Structure):
    _fields_ = [("x", ctypes.c_uint), ("y", ctypes.c_uint), ("z", ctypes.c_uint)]


def _dims(name: str, value) -> tuple[int, int, int]:
    if isinstance(value, (int, np.integer)):
        value = (int(value),)
    if not isinstance(value, (tuple, list)) or not 1 <= len(value) <= 3 or \
            not all(isinstance(v, (int, np.integer)) for v in value):
        raise SimLaunchError(f"{name} must be an int or a tuple of 1-3 ints, got {name}={value!r}")
    dims = tuple(int(v) for v in value) + (1,) * (3 - len(value))
    if any(d < 1 for d in dims):
        raise SimLaunchError(f"{name} dimensions must be >= 1, got {name}={tuple(value)!r}")
    return dims


class SimKernel:
    """Like ``cupy.RawKernel``: ``kernel(grid, block, args, shared_mem=0)``.

    ``order_dependent = True`` (or ``check_races=False`` per call) skips the
    second, reversed-order run, for kernels whose result depends on thread
    order by design (floating-point atomics)."""

    def __init__(self, name, launcher, signature):
        self.name = name
        self._launch = launcher
        self._launch.restype = ctypes.c_int
        sizes = (ctypes.c_long * 64)()
        pointers = (ctypes.c_int * 64)()
        n = signature(sizes, pointers, 64)
        self.param_sizes = tuple(sizes[i] for i in range(n))
        self.param_is_pointer = tuple(bool(pointers[i]) for i in range(n))
        self.order_dependent = False

    def _check_args(self, args):
        if not isinstance(args, (tuple, list)):
            raise SimArgumentError(f"{self.name}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.param_sizes):
            raise SimArgumentError(f"{self.name} takes {len(self.param_sizes)} arguments, got {len(args)}")
        for i, (a, size, is_ptr) in enumerate(zip(args, self.param_sizes, self.param_is_pointer)):
            if is_ptr:
                if not isinstance(a, np.ndarray):
                    raise SimArgumentError(f"{self.name} argument {i}: expected an array (pointer), "
                                           f"got {type(a).__name__}")
                if not a.flags.c_contiguous:
                    raise SimArgumentError(f"{self.name} argument {i}: arrays must be C-contiguous device buffers")
            else:
                if isinstance(a, np.ndarray) or not isinstance(a, np.generic):
                    raise SimArgumentError(f"{self.name} argument {i}: expected a NumPy scalar of {size} bytes, "
                                           f"got {type(a).__name__} (pass e.g. numpy.int32(...) of the kernel's width)")
                if a.itemsize != size:
                    raise SimArgumentError(f"{self.name} argument {i}: the kernel's parameter is {size} bytes, "
                                           f"got {a.dtype} ({a.itemsize} bytes)")

    def __call__(self, grid, block, args, shared_mem=0, *, check_races=None):
        grid, block = _dims("grid", grid), _dims("block", block)
        if block[0] * block[1] * block[2] > 1024:
            raise SimLaunchError(f"a block has at most 1024 threads, got block={block}")
        if not isinstance(shared_mem, (int, np.integer)) or shared_mem < 0:
            raise SimLaunchError(f"shared_mem must be a non-negative int, got {shared_mem!r}")
        self._check_args(args)
        arrays = [i for i, p in enumerate(self.param_is_pointer) if p]
        staged = {}
        for i in arrays:
            a = args[i]
            buf = np.full(a.nbytes + 2 * GUARD, _GUARD_BYTE, np.uint8)
            buf[GUARD:GUARD + a.nbytes] = a.reshape(-1).view(np.uint8)
            staged[i] = buf
        initial = {i: b.copy() for i, b in staged.items()}
        self._run(grid, block, args, staged, int(shared_mem), order=0)
        self._check_guards(args, staged)
        races = not self.order_dependent if check_races is None else check_races
        if races and arrays:
            first = {i: b.copy() for i, b in staged.items()}
            for i in arrays:
                staged[i][:] = initial[i]
            self._run(grid, block, args, staged, int(shared_mem), order=1)
            self._check_guards(args, staged)
            for i in arrays:
                if not np.array_equal(first[i], staged[i]):
                    a = args[i]
                    diff = np.flatnonzero(first[i][GUARD:GUARD + a.nbytes] != staged[i][GUARD:GUARD + a.nbytes])
                    element = int(diff[0]) // a.itemsize
                    raise SimRaceError(f"{self.name}: argument {i} differs between two runs with different thread "
                                       f"orders, first at element {element} (flat index): a missing __syncthreads "
                                       f"or another order dependence (kernels that depend on order by design "
                                       f"set order_dependent = True)")
                staged[i] = first[i]
        for i in arrays:
            a = args[i]
            a.reshape(-1).view(np.uint8)[:] = staged[i][GUARD:GUARD + a.nbytes]

    def _run(self, grid, block, args, staged, shared_mem, order):
        holders = []
        pointers = (ctypes.c_void_p * len(args))()
        for i, a in enumerate(args):
            if i in staged:
                holder = ctypes.c_void_p(staged[i].ctypes.data + GUARD)
            else:
                holder = ctypes.create_string_buffer(a.tobytes(), a.itemsize)
            holders.append(holder)
            pointers[i] = ctypes.cast(ctypes.pointer(holder), ctypes.c_void_p)
        err = ctypes.create_string_buffer(1024)
        rc = self._launch(ctypes.byref(_Dim3(*grid)), ctypes.byref(_Dim3(*block)), pointers,
                          ctypes.c_ulong(shared_mem), ctypes.c_int(order), err, ctypes.c_int(1024))
        if rc:
            message = f"{self.name}: {err.value.decode(errors='replace')}"
            if "divergence" in message or "deadlock" in message:
                raise SimBarrierError(message)
            raise SimLaunchError(message)

    def _check_guards(self, args, staged):
        for i, buf in staged.items():
            n = args[i].nbytes
            for lo, hi, where in ((0, GUARD, "before the start"), (GUARD + n, 2 * GUARD + n, "past the end")):
                bad = np.flatnonzero(buf[lo:hi] != _GUARD_BYTE)
                if bad.size:
                    offset = lo + int(bad[0]) - GUARD
                    raise SimOutOfBoundsError(f"{self.name}: out-of-bounds write to argument {i} ({args[i].dtype}, "
                                              f"{n} bytes) {where}, at byte offset {offset}")
