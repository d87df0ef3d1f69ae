"""SimModule and SimKernel: CuPy's RawModule/RawKernel API on the SIMT simulator.

Build: the kernel source is compiled by the system C++ compiler against
``include/cuda_sim.h`` with GCC's thread-sanitizer *instrumentation* (every
load and store calls a hook) and UBSan's division, bounds and unreachable
checks, then linked with the simulator runtime (``include/sim_runtime.cpp``,
which defines those hooks itself) into a launch worker executable, cached on
disk by source, options, name expressions and the simulator's own sources.

Launch: arguments are staged into a shared memory arena (each distinct
buffer once: aliased and overlapping arrays share their bytes, as on a
GPU), then a worker process runs the kernel (see worker.py).  The first run
records every access and reports races; unless the kernel opts out, a
second run with the thread order reversed inside every barrier interval
must give identical bytes.  Results are copied back only after both pass.
Any fault in the kernel ends the worker, never the caller: it comes back
as a SimError naming the kernel, the block, the thread and the source line.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import config
from .errors import SimArgumentError, SimCompileError, SimLaunchError, SimRaceError
from .worker import CONTROL_BYTES, Worker

INCLUDE = Path(__file__).resolve().parent / "include"
_PAGE = 4096

# Launch limits per target (CUDA programming guide, compute capabilities):
# dynamic shared memory above 48 KiB needs an explicit opt-in
# (``kernel.max_dynamic_shared_size_bytes``, cudaFuncAttributeMaxDynamicSharedMemorySize).
ARCH_LIMITS = {
    "sm_70": {"max_shared_optin": 98304},
    "sm_80": {"max_shared_optin": 166912},
    "sm_90": {"max_shared_optin": 232448},
}
MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2**31 - 1, 65535, 65535)
STATIC_SHARED_LIMIT = 48 * 1024
DEFAULT_DYNAMIC_LIMIT = 48 * 1024

_KERNEL_FLAGS = ["-O2", "-g1", "-gdwarf-4", "-std=c++17", "-fno-pie", "-w", "-fsanitize=thread",
                 "-fsanitize=integer-divide-by-zero,bounds,vla-bound,unreachable,return",
                 "-fno-sanitize-recover=all", "-fstack-clash-protection"]
_RUNTIME_FLAGS = ["-O2", "-g1", "-std=c++17", "-fno-pie", "-w", "-fno-omit-frame-pointer"]
_PASSED_OPTIONS = re.compile(r"^-(D|U|I|std=)")


def _version() -> str:
    digest = hashlib.sha256()
    for f in sorted(INCLUDE.iterdir()) + [Path(__file__), Path(__file__).with_name("worker.py")]:
        digest.update(f.name.encode() + f.read_bytes())
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
_ARCH = re.compile(r"^(?:-arch|--gpu-architecture|-gencode)[= ]?(?:arch=)?(?:sm_|compute_)(\d+)")


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


def target_arch(options: Sequence[str]) -> str:
    """The target a module's NVRTC options name (-arch=sm_80, --gpu-architecture=compute_90,
    -arch sm_70), else ``config.sim_default_arch``."""
    options = list(options)
    for i, opt in enumerate(options):
        if opt in ("-arch", "--gpu-architecture") and i + 1 < len(options):
            opt = f"{opt}={options[i + 1]}"
        m = _ARCH.match(opt)
        if m:
            arch = f"sm_{m.group(1)}"
            if arch not in ARCH_LIMITS:
                raise SimLaunchError(f"unsupported target {opt!r}: the simulator knows {', '.join(ARCH_LIMITS)}")
            return arch
    if config.sim_default_arch not in ARCH_LIMITS:
        raise SimLaunchError(f"config.sim_default_arch={config.sim_default_arch!r} is not one of "
                             f"{', '.join(ARCH_LIMITS)}")
    return config.sim_default_arch


def _build_once(target: Path, steps) -> None:
    """Run ``steps(tmpdir) -> built file`` unless ``target`` exists; atomic, so
    concurrent builders race harmlessly."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = steps(Path(tmp))
        os.replace(built, target)


def _run(cmd, what):
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SimCompileError(f"{what} failed:\n{done.stderr.strip()}")


def _runtime_object(cxx: str) -> Path:
    """The simulator runtime, compiled once per compiler and simulator version."""
    key = hashlib.sha256("\0".join([_version(), cxx, *_RUNTIME_FLAGS]).encode()).hexdigest()[:24]
    target = cache_dir() / f"runtime-{key}.o"

    def steps(tmp):
        out = tmp / "runtime.o"
        _run([cxx, *_RUNTIME_FLAGS, f"-I{INCLUDE}", "-c", str(INCLUDE / "sim_runtime.cpp"), "-o", str(out)],
             "compiling the simulator runtime")
        return out
    _build_once(target, steps)
    return target


def _function_of(demangled: str) -> str | None:
    """'void scale<float>(float*, float, long long)::tile' -> 'scale<float>'; None at namespace scope."""
    depth, cut = 0, None
    for i, ch in enumerate(demangled):
        depth += ch in "<(" 
        depth -= ch in ">)"
        if ch == "(" and depth == 1 and cut is None:
            cut = i
    if cut is None or "::" not in demangled[cut:]:
        return None
    head, depth, start = demangled[:cut], 0, 0
    for i, ch in enumerate(head):  # drop a return type: the last space outside template brackets
        depth += ch == "<"
        depth -= ch == ">"
        if ch == " " and depth == 0:
            start = i + 1
    return head[start:].replace(" ", "")


def shared_variables(executable: Path) -> list[tuple[int, int, str | None, str]]:
    """Every static ``__shared__`` variable of an executable: (offset in the TLS
    block, size, the function that declares it or None at namespace scope, its
    name), from its symbol table (a function's local statics are named inside it)."""
    try:
        out = subprocess.run(["readelf", "-sW", str(executable)], capture_output=True, text=True, check=True).stdout
        rows = [ln.split() for ln in out.splitlines()]
        rows = [r for r in rows if len(r) >= 8 and r[3] == "TLS" and r[6] != "UND"]
        names = subprocess.run(["c++filt"], input="\n".join(r[7] for r in rows), capture_output=True, text=True,
                               check=True).stdout.splitlines() if rows else []
    except (OSError, subprocess.CalledProcessError) as e:
        raise SimCompileError(f"reading the shared memory layout of {executable} needs binutils' readelf and "
                              f"c++filt (installed with g++): {e}") from None
    return [(int(r[1], 16), int(r[2], 0), _function_of(name), name) for r, name in zip(rows, names)]


class SimModule:
    """Like ``cupy.RawModule(code=..., options=..., name_expressions=...)``.

    ``path`` reads the source from a file (its name appears in compiler
    messages and error reports).  Template kernels are reachable through
    ``name_expressions`` (e.g. ``"conv_fwd<float>"``), plain ``__global__``
    kernels by name.  Of the NVRTC options, ``-D``/``-U``/``-I``/``-std=``
    reach the compiler and ``-arch=sm_XX`` picks the launch limits enforced
    (sm_70, sm_80, sm_90; default ``config.sim_default_arch``).
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
        self.arch = target_arch(self.options)
        plain, _ = kernel_names(code)
        self.names = list(dict.fromkeys(plain + list(name_expressions)))
        self.executable = self._build(filename)
        self._pool = _WorkerPool(self.executable)
        weakref.finalize(self, self._pool.close)
        self._functions: dict[str, SimKernel] = {}
        self._hello = None
        self._shared = shared_variables(self.executable)

    def static_shared(self, name: str) -> list[tuple[int, int]]:
        """(offset, size) of the static shared memory kernel ``name`` may use:
        the variables declared in it, and -- since the call graph is not known
        here -- those of every function that is not a kernel and of namespace
        scope (counted for every kernel: conservative)."""
        kernels = {k.replace(" ", "") for k in self.names}
        mine = name.replace(" ", "")
        return [(off, size) for off, size, owner, _ in self._shared
                if owner is None or owner == mine or owner not in kernels]

    def describe_shared(self, message: str) -> str:
        """'static shared memory at byte offset N' -> the __shared__ variable and the offset in it."""
        def name(m):
            off = int(m.group(1))
            for start, size, _, var in self._shared:
                if start <= off < start + size:
                    return f"__shared__ {var} at byte offset {off - start}"
            return m.group(0)
        return re.sub(r"static shared memory at byte offset (\d+)", name, message)

    def _build(self, filename: str) -> Path:
        cxx = compiler()
        if cxx is None:
            raise SimCompileError("no C++ compiler found (set CXX or install g++)")
        lines = ['#include "cuda_sim.h"', f'#line 1 "{filename}"', _rewrite(self.code), '#line 1 "<convops-sim-stubs>"']
        for i, expr in enumerate(self.names):
            lines.append(f"__attribute__((no_sanitize_thread)) static void convops_sim_invoke_{i}(void** a) "
                         f"{{ ::sim::invoke(&{expr}, a); }}")
            lines.append(f"__attribute__((no_sanitize_thread)) static int convops_sim_signature_{i}("
                         f"::sim::ParamInfo* p, int cap) {{ return ::sim::signature(&{expr}, p, cap); }}")
        entries = ", ".join(f'{{"{expr}", &convops_sim_invoke_{i}, &convops_sim_signature_{i}}}'
                            for i, expr in enumerate(self.names))
        lines.append(f"extern \"C\" const ::sim::KernelEntry convops_sim_kernels[] = {{{entries or '{}'}}};")
        lines.append(f"extern \"C\" const int convops_sim_kernel_count = {len(self.names)};")
        text = "\n".join(lines) + "\n"
        user = [o for o in self.options if _PASSED_OPTIONS.match(o)]
        flags = [*_KERNEL_FLAGS, f"-I{INCLUDE}", f"-D__CUDA_ARCH__={self.arch[3:]}0", *user]
        runtime = _runtime_object(cxx)
        key = hashlib.sha256("\0".join([_version(), cxx, text, *flags]).encode()).hexdigest()[:24]
        target = cache_dir() / f"{key}.exe"

        def steps(tmp):
            src, obj, exe = tmp / "kernel.cpp", tmp / "kernel.o", tmp / "kernel.exe"
            src.write_text(text)
            _run([cxx, *flags, "-c", str(src), "-o", str(obj)], f"compiling {filename}")
            _run([cxx, str(obj), str(runtime), "-no-pie", "-pthread", "-o", str(exe)], f"linking {filename}")
            return exe
        _build_once(target, steps)
        return target

    @property
    def hello(self) -> dict:
        """What the worker reports at start: static shared memory size and signatures."""
        if self._hello is None:
            self._hello = self._pool.hello()
        return self._hello

    def get_function(self, name: str) -> "SimKernel":
        if name not in self.names:
            raise SimLaunchError(f"no kernel {name!r} in this module (kernels: {', '.join(self.names) or 'none'}; "
                                 f"template kernels need name_expressions)")
        if name not in self._functions:
            i = self.names.index(name)
            self._functions[name] = SimKernel(self, i, name, self.hello["kernels"][i])
        return self._functions[name]


class _WorkerPool:
    """Launch workers of one executable; a launch takes an idle one (or starts
    one), a worker that faulted is discarded, so calls from several Python
    threads run concurrently in separate processes."""

    def __init__(self, executable: Path):
        self.executable = executable
        self._idle: list[Worker] = []
        self.busy: set[Worker] = set()
        self._lock = threading.Lock()

    def take(self) -> Worker:
        with self._lock:
            while self._idle:
                w = self._idle.pop()
                if w.alive():
                    self.busy.add(w)
                    return w
                w.close()
        w = Worker(self.executable, config.sim_stack_bytes)
        with self._lock:
            self.busy.add(w)
        return w

    def give_back(self, w: Worker) -> None:
        with self._lock:
            self.busy.discard(w)
            if w.alive() and w.stack_bytes == config.sim_stack_bytes:
                self._idle.append(w)
                return
        w.close()

    def discard(self, w: Worker) -> None:
        with self._lock:
            self.busy.discard(w)
        w.close()

    def hello(self) -> dict:
        w = self.take()
        try:
            return w.hello
        finally:
            self.give_back(w)

    def close(self) -> None:
        with self._lock:
            workers = self._idle + list(self.busy)
            self._idle.clear()
            self.busy.clear()
        for w in workers:
            w.close()


def _dims(name: str, value, limits) -> tuple[int, int, int]:
    if isinstance(value, (int, np.integer)):
        value = (int(value),)
    if not isinstance(value, (tuple, list)) or not 1 <= len(value) <= 3 or \
            not all(isinstance(v, (int, np.integer)) for v in value):
        raise SimLaunchError(f"{name} must be an int or a tuple of 1-3 ints, got {name}={value!r}")
    dims = tuple(int(v) for v in value) + (1,) * (3 - len(value))
    if any(d < 1 for d in dims):
        raise SimLaunchError(f"{name} dimensions must be >= 1, got {name}={tuple(value)!r}")
    for axis, d, limit in zip("xyz", dims, limits):
        if d > limit:
            raise SimLaunchError(f"{name}.{axis} = {d} exceeds the limit {limit} (grid x <= 2**31 - 1, y and z <= "
                                 f"65535; block x, y <= 1024, z <= 64), got {name}={tuple(value)!r}")
    return dims


_KIND_NAMES = {"f": "floating-point", "i": "signed integer", "u": "unsigned integer", "b": "bool"}
_NUMPY_KIND = {"f": "f", "i": "i", "u": "u", "b": "b"}


def _type_name(info) -> str:
    m = re.search(r"T = ([^;\]]+)", info.get("type", ""))
    return m.group(1).strip() if m else "?"


class _Group(list):
    """Arrays whose memory overlaps: staged once, as one region."""

    lo: int
    hi: int


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _regions(arrays: list[tuple[int, np.ndarray]]) -> list[_Group]:
    """Group (argument index, array) pairs by overlapping memory, in address order."""
    groups: list[_Group] = []
    for i, a in sorted(arrays, key=lambda p: (_address(p[1]), -p[1].nbytes)):
        lo, hi = _address(a), _address(a) + a.nbytes
        if groups and lo < groups[-1].hi and a.nbytes and groups[-1].hi > groups[-1].lo:
            g = groups[-1]
            g.hi = max(g.hi, hi)
        else:
            g = _Group()
            g.lo, g.hi = lo, hi
            groups.append(g)
        g.append((i, a))
    return groups


def _raw(address: int, nbytes: int) -> np.ndarray:
    """The bytes at ``address`` as a uint8 array (no copy)."""
    if nbytes == 0:
        return np.zeros(0, np.uint8)
    return np.ctypeslib.as_array((ctypes.c_ubyte * nbytes).from_address(address))


class SimKernel:
    """Like ``cupy.RawKernel``: ``kernel(grid, block, args, shared_mem=0)``.

    ``max_dynamic_shared_size_bytes`` (as CuPy's attribute) opts in to more
    than 48 KiB of dynamic shared memory, up to the target's limit.
    ``order_dependent = True`` (or ``check_races=False`` per call) skips the
    race detector and the second, reversed-order run, for kernels whose result
    depends on thread order by design (floating-point atomics)."""

    def __init__(self, module: SimModule, index: int, name: str, params: list):
        self.module = module
        self.index = index
        self.name = name
        self.params = params
        self.param_sizes = tuple(p["size"] for p in params)
        self.param_is_pointer = tuple(bool(p["pointer"]) for p in params)
        self.order_dependent = False
        self._max_dynamic = 0
        self.static_shared = module.static_shared(name)
        self.static_shared_bytes = sum(size for _, size in self.static_shared)

    @property
    def max_dynamic_shared_size_bytes(self) -> int:
        return self._max_dynamic

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value: int) -> None:
        limit = ARCH_LIMITS[self.module.arch]["max_shared_optin"] - self.static_shared_bytes
        if not isinstance(value, (int, np.integer)) or not 0 <= value <= limit:
            raise SimLaunchError(f"{self.name}: max_dynamic_shared_size_bytes must be an int from 0 to {limit} "
                                 f"({self.module.arch}: {ARCH_LIMITS[self.module.arch]['max_shared_optin']} bytes per "
                                 f"block less {self.static_shared_bytes} of static shared memory), got {value!r}")
        self._max_dynamic = int(value)

    # ---- checks a GPU would make (or should) ------------------------------------------
    def _check_launch(self, grid, block, shared_mem):
        grid, block = _dims("grid", grid, MAX_GRID), _dims("block", block, MAX_BLOCK)
        if block[0] * block[1] * block[2] > MAX_THREADS_PER_BLOCK:
            raise SimLaunchError(f"{self.name}: a block has at most {MAX_THREADS_PER_BLOCK} threads, got block={block}")
        if not isinstance(shared_mem, (int, np.integer)) or shared_mem < 0:
            raise SimLaunchError(f"{self.name}: shared_mem must be a non-negative int, got {shared_mem!r}")
        static = self.static_shared_bytes
        if static > STATIC_SHARED_LIMIT:
            raise SimLaunchError(f"{self.name}: {static} bytes of static __shared__ memory exceed the limit of "
                                 f"{STATIC_SHARED_LIMIT} bytes per block")
        limit = self._max_dynamic or DEFAULT_DYNAMIC_LIMIT - static
        if shared_mem > limit:
            how = (f"max_dynamic_shared_size_bytes is {self._max_dynamic}" if self._max_dynamic else
                   f"above {DEFAULT_DYNAMIC_LIMIT} bytes (less static shared memory) it needs an opt-in: set "
                   f"kernel.max_dynamic_shared_size_bytes (up to "
                   f"{ARCH_LIMITS[self.module.arch]['max_shared_optin'] - static} on {self.module.arch})")
            raise SimLaunchError(f"{self.name}: shared_mem={int(shared_mem)} bytes of dynamic shared memory exceed "
                                 f"the limit of {limit}: {how}")
        return grid, block, int(shared_mem)

    def _check_args(self, args):
        if not isinstance(args, (tuple, list)):
            raise SimArgumentError(f"{self.name}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            raise SimArgumentError(f"{self.name} takes {len(self.params)} arguments, got {len(args)}")
        for i, (a, p) in enumerate(zip(args, self.params)):
            kind, elem, size = p["kind"], p["elem"], p["size"]
            if p["pointer"]:
                if not isinstance(a, np.ndarray):
                    raise SimArgumentError(f"{self.name} argument {i}: expected an array (pointer), "
                                           f"got {type(a).__name__}")
                if not a.flags.c_contiguous:
                    raise SimArgumentError(f"{self.name} argument {i}: arrays must be C-contiguous device buffers")
                if kind == "s" and a.nbytes % p["pointee"]:
                    raise SimArgumentError(f"{self.name} argument {i}: the kernel's parameter is {_type_name(p)} "
                                           f"({p['pointee']}-byte elements), got a {a.dtype} array of {a.nbytes} bytes")
                if kind in _NUMPY_KIND and not self._element_matches(a.dtype, kind, elem, p["pointee"], a.nbytes):
                    raise SimArgumentError(f"{self.name} argument {i}: the kernel's parameter is {_type_name(p)} "
                                           f"({elem}-byte {_KIND_NAMES[kind]} elements), got a {a.dtype} array "
                                           f"({a.dtype.itemsize}-byte elements)")
            else:
                if isinstance(a, np.ndarray) or not isinstance(a, np.generic):
                    raise SimArgumentError(f"{self.name} argument {i}: expected a NumPy scalar of {size} bytes, "
                                           f"got {type(a).__name__} (pass e.g. numpy.int32(...) of the kernel's width)")
                if a.itemsize != size:
                    raise SimArgumentError(f"{self.name} argument {i}: the kernel's parameter is {size} bytes, "
                                           f"got {a.dtype} ({a.itemsize} bytes)")
                if kind in _NUMPY_KIND and not self._element_matches(a.dtype, kind, elem, size, size):
                    raise SimArgumentError(f"{self.name} argument {i}: the kernel's parameter is {_type_name(p)} "
                                           f"({_KIND_NAMES[kind]}), got {a.dtype}")

    @staticmethod
    def _element_matches(dtype, kind, elem, pointee, nbytes) -> bool:
        """Signed and unsigned integers of one size are interchangeable; vector
        pointees (float4) take arrays of their scalars."""
        numpy_kind = dtype.kind if dtype.kind in "fiub" else None
        same_kind = numpy_kind == kind or {numpy_kind, kind} == {"i", "u"}
        return same_kind and dtype.itemsize == elem and nbytes % pointee == 0

    # ---- launch ------------------------------------------------------------------------------
    def __call__(self, grid, block, args, shared_mem=0, *, check_races=None):
        grid, block, shared_mem = self._check_launch(grid, block, shared_mem)
        self._check_args(args)
        races = not self.order_dependent if check_races is None else bool(check_races)
        arrays = [(i, a) for i, a in enumerate(args) if self.param_is_pointer[i]]
        groups = _regions(arrays)
        offsets, arena_len = [], CONTROL_BYTES
        for g in groups:
            offsets.append(arena_len)
            arena_len += -(-max(g.hi - g.lo, 1) // _PAGE) * _PAGE
        request = self._request(grid, block, shared_mem, args, groups, offsets, arena_len)
        pool = self.module._pool
        worker = pool.take()
        try:
            worker.reserve(arena_len)
            self._stage_in(worker, groups, offsets)
            worker.launch(request(order=0, race=races, threads=1 if races else config.sim_threads), self.name,
                          self.module.describe_shared)
            if races and groups:
                first = [worker.view(o, g.hi - g.lo).copy() for g, o in zip(groups, offsets)]
                self._stage_in(worker, groups, offsets)
                worker.launch(request(order=1, race=False, threads=config.sim_threads), self.name,
                              self.module.describe_shared)
                for k, (g, o) in enumerate(zip(groups, offsets)):
                    second = worker.view(o, g.hi - g.lo)
                    if not np.array_equal(first[k], second):
                        self._order_difference(g, int(np.flatnonzero(first[k] != second)[0]))
            self._stage_out(worker, groups, offsets)
        except BaseException:
            pool.discard(worker)  # a fault ended it (or Ctrl-C / the watchdog): never reused
            raise
        pool.give_back(worker)

    def _request(self, grid, block, shared_mem, args, groups, offsets, arena_len):
        region_of = {}
        for r, g in enumerate(groups):
            for i, a in g:
                region_of[i] = (r, _address(a) - g.lo)
        regions = b"".join(struct.pack("<4Q", o, g.hi - g.lo, min(a.itemsize for _, a in g), min(i for i, _ in g))
                           for g, o in zip(groups, offsets))
        shared = b"".join(struct.pack("<4Q", off, size, 0, 0) for off, size in self.static_shared)
        blob, records = b"", b""
        for i, a in enumerate(args):
            if self.param_is_pointer[i]:
                r, off = region_of[i]
                records += struct.pack("<4Q", 1, r, off, 0)
            else:
                raw = a.tobytes()
                blob += b"\0" * (-len(blob) % 16)
                records += struct.pack("<4Q", 0, 0, len(blob), len(raw))
                blob += raw

        def build(order, race, threads):
            header = struct.pack("<16Q", 0x636F6E766F707331, self.index, *grid, *block, shared_mem, order, int(race),
                                 threads, len(args), len(groups), len(self.static_shared), arena_len)
            return header + regions + shared + records + blob
        return build

    @staticmethod
    def _stage_in(worker, groups, offsets):
        for g, o in zip(groups, offsets):
            worker.view(o, g.hi - g.lo)[:] = _raw(g.lo, g.hi - g.lo)

    def _stage_out(self, worker, groups, offsets):
        for g, o in zip(groups, offsets):
            result, original = worker.view(o, g.hi - g.lo), _raw(g.lo, g.hi - g.lo)
            if np.array_equal(result, original):
                continue
            frozen = [i for i, a in g if not a.flags.writeable]
            if frozen:
                raise SimArgumentError(f"{self.name} wrote to argument {frozen[0]}, a read-only array")
            original[:] = result

    def _order_difference(self, group, byte):
        i, a = next(((i, a) for i, a in group if _address(a) <= group.lo + byte < _address(a) + max(a.nbytes, 1)),
                    group[0])
        element = (group.lo + byte - _address(a)) // a.itemsize
        raise SimRaceError(f"{self.name}: argument {i} differs between two runs with different thread orders, first "
                           f"at element {element} (flat index): a missing __syncthreads or another order dependence "
                           f"the race detector did not see (kernels that depend on order by design set "
                           f"order_dependent = True)", kernel=self.name)
