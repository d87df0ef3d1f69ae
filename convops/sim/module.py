"""SimModule and SimKernel: CuPy's RawModule/RawKernel API on the SIMT simulator.

Build: the kernel source is compiled by the system C++ compiler against
``include/cuda_sim.h`` with GCC's thread-sanitizer *instrumentation* (every
load and store calls a hook) and UBSan's division, bounds and unreachable
checks, then linked with the simulator runtime (``include/sim_runtime.cpp``,
which defines those hooks itself) into a launch worker executable, cached on
disk by source (and the headers it includes), options, name expressions and
the simulator's own sources.  The kernel's writable data (its ``__device__``
variables) is moved to sections of its own, so the runtime can check and
restore it; static ``__shared__`` variables, the kernels that own them and
the ``__device__`` variables are read from the executable's symbol table.

Launch: arguments are staged into a shared memory arena (each distinct
buffer once: aliased and overlapping arrays share their bytes, as on a
GPU), then a worker process runs the kernel (see worker.py).  The first run
records every access and reports races; unless the kernel opts out, a
second run with the thread order reversed inside every barrier interval
(and the ``__device__`` state the first run started from) must give
identical bytes.  Results are copied back only after both pass.  Any fault
in the kernel ends the worker, never the caller: it comes back as a SimError
naming the kernel, the block, the thread and the source line.
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
from .worker import CONTROL_BYTES, INCLUDE_TAG, Worker

INCLUDE = Path(__file__).resolve().parent / "include"
_PAGE = 4096
_MAGIC = 0x636F6E766F707332  # "convops2"
_CELL_BYTES = 72  # the race detector's shadow per cell (sim_runtime.cpp: struct Cell)

# Launch limits per target (CUDA programming guide, compute capabilities):
# dynamic shared memory above 48 KiB needs an explicit opt-in
# (``kernel.max_dynamic_shared_size_bytes``, cudaFuncAttributeMaxDynamicSharedMemorySize).
ARCH_LIMITS = {
    "sm_70": {"max_shared_optin": 98304},
    "sm_75": {"max_shared_optin": 65536},
    "sm_80": {"max_shared_optin": 166912},
    "sm_90": {"max_shared_optin": 232448},
}
MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2**31 - 1, 65535, 65535)
STATIC_SHARED_LIMIT = 48 * 1024
DEFAULT_DYNAMIC_LIMIT = 48 * 1024
MAX_PARAM_BYTES = 32764  # kernel parameters per launch (CUDA 12.1+, Volta and newer)

_KERNEL_FLAGS = ["-O2", "-g1", "-gdwarf-4", "-std=c++17", "-fno-pie", "-w", "-fsanitize=thread",
                 "-fsanitize=integer-divide-by-zero,bounds,vla-bound,unreachable,return,alignment",
                 "-fno-sanitize-recover=all", "-fstack-clash-protection"]
_RUNTIME_FLAGS = ["-O2", "-g1", "-gdwarf-4", "-std=c++17", "-fno-pie", "-w"]
# the simulator's own sources under a fixed name in debug information (worker.py tells its frames by it)
_PREFIX_MAP = f"-ffile-prefix-map={INCLUDE}={INCLUDE_TAG}"


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


# ---- the source: kernels, dynamic shared memory, options ------------------------------------------
_KERNEL = re.compile(r"(template\s*<[^{;]*?>\s*)?__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+"
                     r"(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(")
_PARENS = r"\((?:[^()]|\([^()]*\))*\)"  # one level of nested parentheses: __align__(sizeof(T))
_EXTERN_SHARED = re.compile(r"(?:extern\s+__shared__|__shared__\s+extern)\s+((?:[\w:<>,*\s]|__align__\s*" + _PARENS +
                            r"|alignas\s*" + _PARENS + r")*?)\s*\b(\w+)\s*\[\s*\]\s*;")
_ARCH = re.compile(r"^(?:-arch|--gpu-architecture|-gencode)[= ]?(?:arch=)?(?:sm_|compute_)(\d+)")


def _code_only(source: str) -> str:
    """The source with comments, string and character literals, ``#if 0``
    blocks and preprocessor lines blanked out (same length: offsets hold)."""
    out = list(source)

    def blank(a, b):
        for i in range(a, b):
            if out[i] != "\n":
                out[i] = " "
    for m in re.finditer(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', source, re.S):
        blank(m.start(), m.end())
    text = "".join(out)
    for m in re.finditer(r"^[ \t]*#[ \t]*if[ \t]+0\b.*?^[ \t]*#[ \t]*endif\b[^\n]*", text, re.S | re.M):
        blank(m.start(), m.end())
    text = "".join(out)
    for m in re.finditer(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", text, re.M):  # directives, with continuations
        blank(m.start(), m.end())
    return "".join(out)


def _depth_and_namespace(code: str, pos: int) -> tuple[int, str]:
    """Brace depth at ``pos`` and the enclosing named namespaces ("a::b::")."""
    stack, depth = [], 0
    for m in re.finditer(r"namespace\s+(\w+)\s*\{|\{|\}", code[:pos]):
        if m.group(0) == "}":
            depth -= 1
            if stack and stack[-1][1] == depth:
                stack.pop()
        else:
            if m.group(1):
                stack.append((m.group(1), depth))
            depth += 1
    return depth - len(stack), "".join(name + "::" for name, _ in stack)


def kernel_names(source: str) -> tuple[list[str], list[str]]:
    """(plain kernels, template kernels) declared with __global__ in the source,
    outside comments, strings, ``#if 0`` and macros; names in a namespace are
    qualified."""
    code = _code_only(source)
    plain, templated = [], []
    for m in _KERNEL.finditer(code):
        _, namespace = _depth_and_namespace(code, m.start())
        (templated if m.group(1) else plain).append(namespace + m.group(2))
    return plain, templated


def _rewrite(source: str) -> str:
    """``extern __shared__ T name[];`` -> the launch's dynamic shared memory (the
    one CUDA form a C++ compiler cannot take as is): a pointer inside a
    function; at namespace scope an object that converts to one on use (a
    pointer there would be set once, at start-up)."""
    code = _code_only(source)
    out, last = [], 0
    for m in _EXTERN_SHARED.finditer(code):
        text = source[m.start():m.end()]
        typ = re.sub(r"__align__\s*" + _PARENS + r"|alignas\s*" + _PARENS, "", m.group(1)).strip()
        typ = re.sub(r"\bvolatile\b", "", typ).strip() or "unsigned char"
        name = m.group(2)
        depth, _ = _depth_and_namespace(code, m.start())
        if depth > 0:
            repl = f"{typ}* const {name} = reinterpret_cast<{typ}*>(::sim::dynamic_shared());"
        else:
            repl = f"static ::sim::DynamicShared<{typ}> {name};"
        out.append(source[last:m.start()] + repl + "\n" * text.count("\n"))
        last = m.end()
    return "".join(out) + source[last:]


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


def compiler_options(options: Sequence[str]) -> list[str]:
    """The NVRTC options that mean something to a host compiler: include
    paths, macros and the language standard, in any of NVRTC's spellings
    (-I dir, -Idir, --include-path=dir, -D X=1, --define-macro=X, -U X,
    -std=c++17); the others concern GPU code generation and are dropped."""
    out, it = [], iter(options)
    for opt in it:
        for short, long in (("-I", "--include-path"), ("-D", "--define-macro"), ("-U", "--undefine-macro")):
            if opt in (short, long):
                out.append(short + next(it, ""))
            elif opt.startswith(long + "="):
                out.append(short + opt[len(long) + 1:])
            elif opt.startswith(short) and not opt.startswith("--"):
                out.append(opt)
        if opt.startswith(("-std=", "--std=")):
            out.append("-" + opt.lstrip("-"))
    return out


# ---- build ----------------------------------------------------------------------------------
def _build_once(target: Path, steps) -> None:
    """Run ``steps(tmpdir) -> built file`` unless ``target`` exists; atomic, so
    concurrent builders race harmlessly."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = steps(Path(tmp))
        os.replace(built, target)


def _run(cmd, what, **kw):
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except OSError as e:  # a tool missing: binutils come with g++
        raise SimCompileError(f"{what} failed: {e}") from None
    if done.returncode:
        raise SimCompileError(f"{what} failed:\n{done.stderr.strip()}")
    return done.stdout


def _runtime_object(cxx: str) -> Path:
    """The simulator runtime, compiled once per compiler and simulator version."""
    key = hashlib.sha256("\0".join([_version(), cxx, *_RUNTIME_FLAGS, _PREFIX_MAP]).encode()).hexdigest()[:24]
    target = cache_dir() / f"runtime-{key}.o"

    def steps(tmp):
        out = tmp / "runtime.o"
        _run([cxx, *_RUNTIME_FLAGS, _PREFIX_MAP, f"-I{INCLUDE}", "-c", str(INCLUDE / "sim_runtime.cpp"), "-o", str(out)],
             "compiling the simulator runtime")
        return out
    _build_once(target, steps)
    return target


def _dependencies(cxx: str, text: str, flags: list[str]) -> bytes:
    """The contents of the (non-system) headers the source includes, so that
    a changed header is a new build."""
    if "#include" not in text.replace('#include "cuda_sim.h"', "", 1):
        return b""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.cpp"
        src.write_text(text)
        deps = _run([cxx, *flags, "-MM", str(src)], "listing the headers the source includes")
    files = [f for f in deps.replace("\\\n", " ").split(":", 1)[-1].split() if f != str(src)]
    return b"".join(Path(f).read_bytes() for f in sorted(files) if not f.startswith(str(INCLUDE)))


_SHARED_NAMES = "convops_shared_names"  # section of a built executable: its kernels' TLS symbols, one per line


def _defined_symbols(path: Path, kinds) -> list[list[str]]:
    """``readelf -sW`` rows (split) of the symbols of these types ``path`` defines."""
    rows = (ln.split() for ln in _run(["readelf", "-sW", str(path)], f"reading the symbols of {path} (binutils' "
                                                                      f"readelf, installed with g++)").splitlines())
    return [r for r in rows if len(r) >= 8 and r[0].endswith(":") and r[3] in kinds and r[6] != "UND"]


def _defined_tls(obj: Path) -> list[str]:
    """Mangled names of the thread-local symbols an object file defines."""
    return sorted({r[7] for r in _defined_symbols(obj, ("TLS",))})


def _section_text(executable: Path, section: str) -> str:
    """The contents of one (non-loaded) section of an executable, as text."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "section"
        _run(["objcopy", "--dump-section", f"{section}={out}", str(executable), str(Path(tmp) / "copy")],
             f"reading section {section} of {executable}")
        try:
            return out.read_text()
        except OSError as e:
            raise SimCompileError(f"reading section {section} of {executable}: {e}") from None


def _symbols(executable: Path) -> list[tuple[int, int, str, str, str, str]]:
    """(value, size, type, section, demangled name, mangled name) of the executable's symbols (binutils)."""
    try:
        sections = {}
        for line in subprocess.run(["readelf", "-SW", str(executable)], capture_output=True, text=True,
                                   check=True).stdout.splitlines():
            m = re.match(r"\s*\[\s*(\d+)\]\s+(\S+)", line)
            if m:
                sections[m.group(1)] = m.group(2)
        rows = _defined_symbols(executable, ("TLS", "OBJECT", "FUNC"))
        names = subprocess.run(["c++filt"], input="\n".join(r[7] for r in rows), capture_output=True, text=True,
                               check=True).stdout.splitlines() if rows else []
    except (OSError, subprocess.CalledProcessError) as e:
        raise SimCompileError(f"reading the symbols of {executable} needs binutils' readelf and c++filt (installed "
                              f"with g++): {e}") from None
    return [(int(r[1], 16), int(r[2], 0), r[3], sections.get(r[6], r[6]), name, r[7]) for r, name in zip(rows, names)]


def _function(name: str) -> str:
    """A function's name without return type, parameters or spaces:
    'void scale<float>(float*, float, long long)' -> 'scale<float>'."""
    depth, cut = 0, len(name)
    for i, ch in enumerate(name):
        if ch == "(" and depth == 0:
            cut = i
            break
        depth += ch == "<"
        depth -= ch == ">"
    head, depth, start = name[:cut], 0, 0
    for i, ch in enumerate(head):  # a return type ends at the last space outside template brackets
        depth += ch == "<"
        depth -= ch == ">"
        if ch == " " and depth == 0:
            start = i + 1
    return head[start:].replace(" ", "")


def _owner(variable: str) -> str:
    """The function a local static is declared in ('f(int*)::s' -> 'f'), or the
    namespace part of a namespace-scope name ('ns::s' -> 'ns')."""
    depth, cut = 0, None
    for i, ch in enumerate(variable):
        depth += ch in "<("
        depth -= ch in ">)"
        if variable.startswith("::", i) and depth == 0:
            cut = i
    return _function(variable[:cut]) if cut is not None else ""


def _same_bytes(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 20) -> bool:
    """a == b for byte arrays of one length, comparing a chunk at a time (no
    temporary the size of the buffers)."""
    return all(np.array_equal(a[i:i + chunk], b[i:i + chunk]) for i in range(0, len(a), chunk))


def _digest(buffer) -> bytes:
    return hashlib.blake2b(buffer, digest_size=32).digest()


class SimModule:
    """Like ``cupy.RawModule(code=..., options=..., name_expressions=...)``.

    ``path`` reads the source from a file (its name appears in compiler
    messages and error reports).  Template kernels are reachable through
    ``name_expressions`` (e.g. ``"conv_fwd<float>"``), plain ``__global__``
    kernels by name.  Of the NVRTC options, include paths, macros and the
    language standard reach the compiler (``compiler_options``) and
    ``-arch=sm_XX`` picks the launch limits enforced (sm_70, sm_80, sm_90;
    default ``config.sim_default_arch``).
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
        symbols = _symbols(self.executable)
        # static __shared__ variables: (offset in the TLS block, size, owner function, name)
        ours = {line for line in _section_text(self.executable, _SHARED_NAMES).splitlines() if not line.startswith("#")}
        self._shared = [(value, size, _owner(name), name) for value, size, kind, _, name, mangled in symbols
                        if kind == "TLS" and mangled in ours]
        # __device__ variables: (address, size, name)
        self.device_variables = [(value, size, name) for value, size, kind, section, name, _ in symbols
                                 if kind == "OBJECT" and section in ("convops_kdata", "convops_kbss") and size]
        self._functions_at = {value: _function(name) for value, _, kind, _, name, _ in symbols if kind == "FUNC"}

    def _build(self, filename: str) -> Path:
        cxx = compiler()
        if cxx is None:
            raise SimCompileError("no C++ compiler found (set CXX or install g++)")
        lines = ['#include "cuda_sim.h"', f'#line 1 "{filename}"', _rewrite(self.code), '#line 1 "<convops-sim-stubs>"']
        for i, expr in enumerate(self.names):
            lines.append(f"__attribute__((no_sanitize_thread)) static void convops_sim_invoke_{i}(void** "
                         f"convops_sim_args) {{ ::sim::invoke(&{expr}, convops_sim_args); }}")
            lines.append(f"__attribute__((no_sanitize_thread)) static int convops_sim_signature_{i}("
                         f"::sim::ParamInfo* convops_sim_info, int convops_sim_capacity) "
                         f"{{ return ::sim::signature(&{expr}, convops_sim_info, convops_sim_capacity); }}")
        entries = ", ".join(f'{{"{expr}", reinterpret_cast<const void*>(&{expr}), &convops_sim_invoke_{i}, '
                            f'&convops_sim_signature_{i}}}' for i, expr in enumerate(self.names))
        lines.append(f"extern \"C\" const ::sim::KernelEntry convops_sim_kernels[] = {{{entries or '{}'}}};")
        lines.append(f"extern \"C\" const int convops_sim_kernel_count = {len(self.names)};")
        text = "\n".join(lines) + "\n"
        flags = [*_KERNEL_FLAGS, _PREFIX_MAP, f"-I{INCLUDE}", f"-D__CUDA_ARCH__={self.arch[3:]}0", *compiler_options(self.options)]
        runtime = _runtime_object(cxx)
        key = hashlib.sha256("\0".join([_version(), cxx, text, *flags]).encode() +
                             _dependencies(cxx, text, flags)).hexdigest()[:24]
        target = cache_dir() / f"{key}.exe"

        def steps(tmp):
            src, obj, exe = tmp / "kernel.cpp", tmp / "kernel.o", tmp / "kernel.exe"
            src.write_text(text)
            _run([cxx, *flags, "-c", str(src), "-o", str(obj)], f"compiling {filename}")
            # the kernel's writable data in sections of its own (the runtime finds __device__ variables there)
            _run(["objcopy", "--rename-section", ".data=convops_kdata", "--rename-section", ".bss=convops_kbss",
                  str(obj)], f"preparing {filename}")
            # which thread-locals are the kernels' static shared memory: those this object defines (the
            # C++ runtime may bring TLS of its own into the executable, e.g. libsupc++'s exception globals)
            names = tmp / "shared-names.txt"
            names.write_text("# convops static shared memory\n" + "".join(f"{m}\n" for m in _defined_tls(obj)))
            _run([cxx, str(obj), str(runtime), "-no-pie", "-pthread", "-o", str(exe)], f"linking {filename}")
            _run(["objcopy", "--add-section", f"{_SHARED_NAMES}={names}", str(exe)], f"preparing {filename}")
            return exe
        _build_once(target, steps)
        return target

    @property
    def hello(self) -> dict:
        """What the worker reports at start: each kernel's address and signature."""
        if self._hello is None:
            self._hello = self._pool.hello()
        return self._hello

    def static_shared(self, index: int) -> list[tuple[int, int]]:
        """(offset, size) of the static shared memory kernel ``index`` may use:
        the variables declared in it, and -- since the call graph is not known
        here -- those of every function that is not a kernel and of namespace
        scope (counted for every kernel: conservative)."""
        kernels = {self._functions_at.get(k["address"]) for k in self.hello["kernels"]}
        mine = self._functions_at.get(self.hello["kernels"][index]["address"])
        return [(off, size) for off, size, owner, _ in self._shared
                if owner == mine or owner not in kernels]

    def describe(self, message: str) -> str:
        """Memory in a report named by its variable: 'static shared memory at byte
        offset N' -> the __shared__ variable; '__device__ memory at address A' ->
        the __device__ variable."""
        def shared(m):
            off = int(m.group(1))
            for start, size, _, var in self._shared:
                if start <= off < start + size:
                    return f"__shared__ {var} at byte offset {off - start}"
            return m.group(0)

        def device(m):
            address = int(m.group(1), 16)
            for start, size, var in self.device_variables:
                if start <= address < start + size:
                    return f"__device__ {var} at byte offset {address - start}"
            return m.group(0)
        message = re.sub(r"static shared memory at byte offset (\d+)", shared, message)
        return re.sub(r"__device__ memory at address (0x[0-9a-f]+)", device, message)

    def get_function(self, name: str) -> "SimKernel":
        if name not in self.names:
            raise SimLaunchError(f"no kernel {name!r} in this module (kernels: {', '.join(self.names) or 'none'}; "
                                 f"template kernels need name_expressions)")
        if name not in self._functions:
            i = self.names.index(name)
            self._functions[name] = SimKernel(self, i, name, self.hello["kernels"][i]["params"])
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
    """(argument index, array) pairs whose memory overlaps: staged once, as one buffer."""

    lo: int
    hi: int

    @property
    def granule(self) -> int:
        """The race detector's cell: the largest power of two (at most 16) that
        divides every array's element size and offset in the buffer."""
        g = 16
        for _, a in self:
            for v in (a.itemsize, _address(a) - self.lo):
                if v:
                    g = min(g, v & -v)
        return g

    def label(self, i: int) -> str:
        """'argument i', naming the arguments that share its buffer."""
        others = sorted(j for j, _ in self if j != i)
        return f"argument {i}" + (f" (one buffer with argument{'s' if len(others) > 1 else ''} "
                                  f"{', '.join(map(str, others))})" if others else "")


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _regions(arrays: list[tuple[int, np.ndarray]]) -> list[_Group]:
    """Group (argument index, array) pairs by overlapping memory, in address
    order (an empty array inside another's bytes joins it)."""
    groups: list[_Group] = []
    for i, a in sorted(arrays, key=lambda p: (_address(p[1]), -p[1].nbytes)):
        lo, hi = _address(a), _address(a) + a.nbytes
        if groups and lo < groups[-1].hi:
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
    depends on thread order by design (floating-point atomics, slots handed
    out by atomics, blocks synchronizing through fences and atomics)."""

    def __init__(self, module: SimModule, index: int, name: str, params: list):
        self.module = module
        self.index = index
        self.name = name
        self.params = params
        self.param_sizes = tuple(p["size"] for p in params)
        self.param_is_pointer = tuple(bool(p["pointer"]) for p in params)
        self.order_dependent = False
        self._max_dynamic = 0
        self.static_shared = module.static_shared(index)
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
                self._check_plain(i, a.dtype)
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
                self._check_plain(i, a.dtype)
                if a.itemsize != size:
                    raise SimArgumentError(f"{self.name} argument {i}: the kernel's parameter is {size} bytes, "
                                           f"got {a.dtype} ({a.itemsize} bytes)")
                if kind in _NUMPY_KIND and not self._element_matches(a.dtype, kind, elem, size, size):
                    raise SimArgumentError(f"{self.name} argument {i}: the kernel's parameter is {_type_name(p)} "
                                           f"({_KIND_NAMES[kind]}), got {a.dtype}")
        scalars = sum(p["size"] for p in self.params)
        if scalars > MAX_PARAM_BYTES:
            raise SimLaunchError(f"{self.name}: {scalars} bytes of kernel parameters exceed the limit of "
                                 f"{MAX_PARAM_BYTES} bytes per launch")

    def _check_plain(self, i, dtype):
        """Bytes a device can hold: no Python objects, native byte order."""
        if dtype.hasobject:
            raise SimArgumentError(f"{self.name} argument {i}: a {dtype} array holds Python objects, not device data")
        if any(not d.isnative for d in (dtype, *(f[0] for f in (dtype.fields or {}).values()))):
            raise SimArgumentError(f"{self.name} argument {i}: {dtype} is not in this machine's byte order "
                                   f"(use .astype({dtype.newbyteorder('=')!s}))")

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
        for g in groups:  # each buffer on pages of its own, at its address modulo 256 (as CUDA allocates)
            inpage = g.lo % 256
            offsets.append(arena_len + inpage)
            arena_len += -(-max(inpage + g.hi - g.lo, 1) // _PAGE) * _PAGE
        if races:
            shadow = _CELL_BYTES * (sum(-(-(g.hi - g.lo) // g.granule) for g in groups) + shared_mem // 4)
            if shadow > config.sim_race_shadow_bytes:
                raise SimLaunchError(f"{self.name}: the race detector would need {shadow} bytes of shadow memory "
                                     f"(about {_CELL_BYTES} per element), over config.sim_race_shadow_bytes = "
                                     f"{config.sim_race_shadow_bytes}: use smaller arrays or check_races=False")
        request = self._request(grid, block, shared_mem, args, groups, offsets, arena_len)
        describe = self._describer(groups)
        pool = self.module._pool
        worker = pool.take()
        try:
            worker.reserve(arena_len)
            self._stage_in(worker, groups, offsets)
            worker.launch(request(order=0, race=races, threads=1 if races else config.sim_threads, quiet=False,
                                  device_state=1), self.name, describe)
            if races:
                # the second run (another thread order) must give the same bytes: compared by
                # digest, so the check holds no copy of the buffers (a mismatch reruns both
                # orders to find the first byte that differs)
                first = [_digest(worker.view(o, g.hi - g.lo)) for g, o in zip(groups, offsets)]
                self._stage_in(worker, groups, offsets)
                worker.launch(request(order=1, race=False, threads=config.sim_threads, quiet=True, device_state=2),
                              self.name, describe)
                for k, (g, o) in enumerate(zip(groups, offsets)):
                    if _digest(worker.view(o, g.hi - g.lo)) != first[k]:
                        second = worker.view(o, g.hi - g.lo).copy()
                        self._stage_in(worker, groups, offsets)
                        worker.launch(request(order=0, race=False, threads=1, quiet=True, device_state=2),
                                      self.name, describe)
                        again = worker.view(o, g.hi - g.lo)
                        self._order_difference(g, int(np.flatnonzero(again != second)[0]))
            self._stage_out(worker, groups, offsets)
        except BaseException:
            pool.discard(worker)  # a fault ended it (or Ctrl-C / the watchdog): never reused
            raise
        pool.give_back(worker)

    def _describer(self, groups):
        """Reports name aliased buffers and the variables they touch."""
        labels = {i: g.label(i) for g in groups for i, _ in g}

        def describe(message: str) -> str:
            message = re.sub(r"\bargument (\d+)(?= )", lambda m: labels.get(int(m.group(1)), m.group(0)), message)
            return self.module.describe(message)
        return describe

    def _request(self, grid, block, shared_mem, args, groups, offsets, arena_len):
        region_of = {}
        for r, g in enumerate(groups):
            for i, a in g:
                region_of[i] = (r, _address(a) - g.lo)
        regions = b"".join(struct.pack("<4Q", o, g.hi - g.lo, g.granule, min(i for i, _ in g))
                           for g, o in zip(groups, offsets))
        shared = b"".join(struct.pack("<4Q", off, size, 0, 0) for off, size in self.static_shared)
        device = b"".join(struct.pack("<4Q", addr, size, 0, 0) for addr, size, _ in self.module.device_variables)
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

        def build(order, race, threads, quiet, device_state):
            header = struct.pack("<19Q", _MAGIC, self.index, *grid, *block, shared_mem, order, int(race), threads,
                                 int(quiet), device_state, len(args), len(groups), len(self.static_shared),
                                 len(self.module.device_variables), arena_len)
            return header + regions + shared + device + records + blob
        return build

    @staticmethod
    def _stage_in(worker, groups, offsets):
        for g, o in zip(groups, offsets):
            worker.view(o, g.hi - g.lo)[:] = _raw(g.lo, g.hi - g.lo)

    def _stage_out(self, worker, groups, offsets):
        for g, o in zip(groups, offsets):
            result, original = worker.view(o, g.hi - g.lo), _raw(g.lo, g.hi - g.lo)
            if _same_bytes(result, original):
                continue
            if not any(a.flags.writeable for _, a in g):  # the memory itself is read-only
                names = ", ".join(str(i) for i, _ in g)
                raise SimArgumentError(f"{self.name} wrote to argument{'s' if len(g) > 1 else ''} {names}: read-only "
                                       f"memory")
            original[:] = result

    def _order_difference(self, group, byte):
        i, a = next(((i, a) for i, a in group if _address(a) <= group.lo + byte < _address(a) + max(a.nbytes, 1)),
                    group[0])
        element = (group.lo + byte - _address(a)) // a.itemsize
        raise SimRaceError(f"{self.name}: {group.label(i)} differs between two runs with different thread orders, "
                           f"first at element {element} (flat index): a missing __syncthreads or another order "
                           f"dependence the race detector did not see (kernels that depend on order by design set "
                           f"order_dependent = True)", kernel=self.name)
