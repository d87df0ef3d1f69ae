"""What every CUDA launcher shares: the kernel problem and its ConvGeom, the
kernel sources and their instantiations, modules memoized per runtime, grid
sizes, the padding-mode fold, and registration on both CUDA backends.

A launcher is written once against the runtime seam (``rt``: allocate,
module, get_function, launch) and runs on two backends: ``cuda`` (CuPy
arrays, NVRTC through ``cupy.RawModule``) and ``cuda-sim`` (NumPy arrays, the
same ``.cu`` sources compiled against ``convops.sim``).  Nothing here
imports CuPy: the runtimes do, on first use.

Kernels see 3 spatial dims (``ConvProblem.expand(3)``), canonical parameters
and the padding mode as an index map on input reads (``source_index`` in
``kernels/include/conv_common.cuh``); dgrad in a non-zero mode runs on the
padded input's geometry and is folded back by ``kernels/padding.cu``, so it is
the exact adjoint of fwd in every mode.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, NamedTuple

import numpy as np

from .. import config
from ..problem import ConvProblem
from ..registry import Implementation, register
from ..resources import kernels_dir

# Element type names the kernels are instantiated for, per problem dtype.
CTYPE = {"float16": "half_t", "float32": "float", "float64": "double"}
PAD_MODE = {"zeros": 0, "reflect": 1, "replicate": 2, "circular": 3, "symmetric": 4}
BACKEND_NAMES = ("cuda", "cuda-sim")

# ConvGeom, field for field (conv_common.cuh): all int32, so no padding.
GEOM_FIELDS = ("N", "C", "K", "groups", "Cg", "Kg", "D", "H", "W", "Z", "P", "Q", "T", "R", "S",
               "sd", "sh", "sw", "dd", "dh", "dw", "pd", "ph", "pw", "mode", "has_bias")
GEOM_DTYPE = np.dtype([(name, np.int32) for name in GEOM_FIELDS])

# Every kernel source and the templates in it the launchers instantiate, each
# for the three element types.  kernel_instantiations() lists them for the
# NVRTC gate; a launcher can only get a kernel named here.
SOURCES: dict[str, tuple[str, ...]] = {}
# The oldest compute capability (major*10 + minor) a source compiles for (its
# PTX needs it: mma.sync, ldmatrix and cp.async are sm_80's).
MIN_ARCH: dict[str, int] = {}


def declare_source(filename: str, templates: tuple[str, ...], types=tuple(CTYPE.values()), min_arch: int = 0) -> None:
    SOURCES[filename] = tuple(f"{t}<{ty}>" for t in templates for ty in types)
    MIN_ARCH[filename] = min_arch


def source_min_arch(path: str) -> int:
    """The oldest compute capability a source (path or file name) targets."""
    _load_algorithms()
    from pathlib import Path
    return MIN_ARCH.get(Path(path).name, 0)


def device_arch(backend: str) -> int | None:
    """The compute capability (e.g. 80) work on ``backend`` runs on: the
    current CUDA device's, or the simulator's target (config.sim_default_arch);
    None when no device can be asked."""
    if backend == "cuda-sim":
        return int(config.sim_default_arch[3:])
    try:
        import cupy
        return int(cupy.cuda.Device().compute_capability)
    except Exception:  # no CuPy, driver or device: the backend's own reason says so
        return None


def arch_reasons(backend: str, min_arch: int) -> list[str]:
    arch = device_arch(backend) if min_arch else None
    if arch is not None and arch < min_arch:
        where = "the simulator's target (CONVOPS_SIM_ARCH)" if backend == "cuda-sim" else "this GPU"
        return [f"needs sm_{min_arch} or newer; {where} is sm_{arch}"]
    return []


@functools.lru_cache(maxsize=None)
def options() -> tuple[str, ...]:
    """NVRTC options the launchers pass (the simulator takes the same)."""
    return ("-std=c++17", f"-I{kernels_dir() / 'include'}")


def kernel_instantiations() -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """Every (source path, name_expressions, options) the launchers can request."""
    _load_algorithms()
    # by file name: the same order whichever launcher module was imported first
    return [(str(kernels_dir() / f), SOURCES[f], options()) for f in sorted(SOURCES)]


def _load_algorithms():
    from . import algorithms  # noqa: F401  (declares every source)


@functools.lru_cache(maxsize=None)
def source_text(filename: str) -> str:
    """The source as the compilers get it: a #line directive first, so errors
    and simulator reports name the file."""
    path = kernels_dir() / filename
    return f'#line 1 "{path}"\n' + path.read_text()


# ---- runtimes and modules ---------------------------------------------------------------
_modules: dict = {}
_modules_lock = threading.Lock()


def runtime(backend: str):
    if backend == "cuda":
        from .runtime import CupyRuntime
        return CupyRuntime()
    from ..sim.runtime import SimRuntime
    return SimRuntime()


def kernel(rt, filename: str, template: str, dtype: str):
    """``template<ctype>`` from ``filename``'s module, compiled once per runtime
    (and per device on CUDA: CupyRuntime memoizes per device)."""
    name = f"{template}<{CTYPE[dtype]}>"
    names = SOURCES[filename]
    if name not in names:
        raise KeyError(f"{name} is not declared for {filename} (convops.cuda.common.declare_source)")
    if rt.name == "cuda":
        module = rt.module(source_text(filename), options(), names)
    else:
        key = (rt.name, filename)
        with _modules_lock:
            module = _modules.get(key)
            if module is None:
                module = _modules[key] = rt.module(source_text(filename), options(), names)
    return rt.get_function(module, name)


def blocks(total: int, threads: int = 256) -> int:
    """Blocks for a grid-stride launch over ``total`` items (capped: the
    kernels loop)."""
    return max(1, min(-(-total // threads), config.cuda_max_grid_blocks))


# ---- problems -------------------------------------------------------------------------
@functools.lru_cache(maxsize=1024)  # per call, and ConvProblem is immutable
def kernel_problem(problem: ConvProblem) -> ConvProblem:
    """What the kernels run: 3-D, canonical parameters, the user's dtype and padding mode."""
    return problem.expand(3).canonical()


@functools.lru_cache(maxsize=1024)  # per launch; the same few problems every training step
def geometry(q: ConvProblem, has_bias: bool = False, mode: str | None = None) -> np.void:
    """The ConvGeom of a 3-D kernel problem, as the by-value struct argument."""
    values = dict(N=q.n, C=q.c_in, K=q.c_out, groups=q.groups, Cg=q.c_in // q.groups, Kg=q.c_out // q.groups)
    values.update(zip(("D", "H", "W"), q.in_size))
    values.update(zip(("Z", "P", "Q"), q.out_size))
    values.update(zip(("T", "R", "S"), q.kernel))
    values.update(zip(("sd", "sh", "sw"), q.stride))
    values.update(zip(("dd", "dh", "dw"), q.dilation))
    values.update(zip(("pd", "ph", "pw"), q.pad_lo))
    values.update(mode=PAD_MODE[mode or q.padding_mode], has_bias=int(has_bias))
    for name, v in values.items():
        if not 0 <= v < 2**31:
            raise ValueError(f"{name}={v} does not fit the kernels' 32-bit extents")
    return np.array(tuple(values[f] for f in GEOM_FIELDS), GEOM_DTYPE)[()]


INT32_LIMIT = 2**31


def int32_index_reasons(problem: ConvProblem) -> list[str]:
    """Kernels that index rows and elements of an activation in 32 bits (a
    64-bit division is a called subroutine on a GPU, and its calls make ptxas
    spill) run only problems whose activations have fewer than 2^31 elements;
    ``direct`` and ``im2col`` index in 64 bits and run the rest."""
    # (the padded input: dgrad of a non-zero padding mode runs on it)
    biggest = max(problem.n * problem.c_in * int(np.prod(problem.padded_size)),
                  problem.n * problem.c_out * int(np.prod(problem.out_size)),
                  problem.c_out * problem.c_in // problem.groups * int(np.prod(problem.kernel)))
    if biggest >= INT32_LIMIT:
        return [f"a tensor of {biggest} elements: this kernel indexes activations and weights in 32 bits (< 2^31)"]
    return []


def bias_arg(rt, bias, dtype):
    """Kernels take a bias pointer always; a 1-element dummy when there is none."""
    return rt.constant(("no bias", dtype), lambda: np.zeros(1, dtype)) if bias is None else bias


def all_finite(a) -> bool:
    """No NaN or infinity in ``a`` (dgrad paths that multiply zero padding by
    the weight are exact only for a finite weight).  On a device array this
    reads the answer on the host: the stream synchronizes."""
    return bool(np.isfinite(a).all())


def acc_dtype(dtype: str) -> str:
    """The accumulation type: float32 for float16 storage."""
    return "float64" if dtype == "float64" else "float32"


def fold_padding(rt, q: ConvProblem, gp, bias):
    """dx of a non-zero padding mode from the padded input's gradient ``gp``
    (in the accumulation type)."""
    dx = rt.empty(q.x_shape, q.dtype)
    total = int(np.prod(q.x_shape))
    hi = q.pad_hi
    rt.launch(kernel(rt, "padding.cu", "fold_padding", q.dtype), (blocks(total),), (256,),
              (gp, bias_arg(rt, bias, q.dtype), dx, geometry(q, bias is not None), np.int32(hi[0]),
               np.int32(hi[1]), np.int32(hi[2])))
    return dx


class Passes(NamedTuple):
    """An algorithm's launchers on a kernel problem ``q`` (zero padding for
    dgrad; other modes are folded by the caller):

    fwd(rt, q, x, w, bias) -> y;  dgrad(rt, q, dy, w, bias) -> dx;
    wgrad(rt, q, x, dy) -> dw.  Arrays are C-contiguous device arrays of the
    problem's dtype and 5-D shapes; bias is None or a (K,) / (C,) array."""

    fwd: Callable | None
    dgrad: Callable | None
    wgrad: Callable | None


def run_with(backend: str, passes: Passes) -> Callable:
    """The registry ``run``: device copies, shapes and padding modes around the launchers."""

    def run(problem: ConvProblem, a, b, bias=None):
        rt = runtime(backend)
        q = kernel_problem(problem)
        with rt.device_of(a):  # on the first operand's device (and the current stream): results land there
            a = rt.to_device(a).reshape(_operand_shapes(q)[0])
            b = rt.to_device(b).reshape(_operand_shapes(q)[1])
            bias = None if bias is None else rt.to_device(bias)
            if q.op == "fwd":
                out = passes.fwd(rt, q, a, b, bias)
            elif q.op == "wgrad":
                out = passes.wgrad(rt, q, a, b)
            elif q.padding_mode == "zeros":
                out = passes.dgrad(rt, q, a, b, bias)
            else:  # the padded gradient in the accumulation type (float16: float32), then folded
                qm = q.materialized().with_dtype(acc_dtype(q.dtype))
                gp = passes.dgrad(rt, qm, a.astype(qm.dtype, copy=False), b.astype(qm.dtype, copy=False), None)
                out = fold_padding(rt, q, gp, bias)
        return out.reshape(problem.result_shape)

    return run


def _operand_shapes(q: ConvProblem):
    return {"fwd": (q.x_shape, q.w_shape), "dgrad": (q.y_shape, q.w_shape), "wgrad": (q.x_shape, q.y_shape)}[q.op]


def extent_reasons(problem: ConvProblem) -> list[str]:
    """Why no CUDA kernel can run a problem: ConvGeom's extents are 32-bit, and
    so are the GEMM views' reduction lengths (C/g*T*R*S, K/g*T*R*S)."""
    q = problem.expand(3)
    taps = int(np.prod(q.kernel))
    sizes = dict(batch=q.n, c_in=q.c_in, c_out=q.c_out, input=max(q.padded_size), output=max(q.out_size),
                 reduction=max(q.c_in // q.groups, q.c_out // q.groups) * taps)
    return [f"{name} extent {v} does not fit the kernels' 32-bit extents" for name, v in sizes.items()
            if v >= INT32_LIMIT]


def register_algorithm(name: str, passes: Passes, *, supports=None, declines=None, workspace_bytes=None,
                       subproblems=None, description: str = "", dtypes=("float16", "float32", "float64"),
                       min_arch: int = 0, tolerance=None):
    """One Implementation per pass and CUDA backend.  ``supports`` etc. take
    the user's problem and, for ``subproblems``, the backend name; ``min_arch``:
    the oldest compute capability the kernels run on (supports() says so)."""
    for backend in BACKEND_NAMES:
        for op in ("fwd", "dgrad", "wgrad"):
            if getattr(passes, op) is None:
                continue
            kw = {k: fn for k, fn in (("declines", declines), ("workspace_bytes", workspace_bytes),
                                      ("tolerance", tolerance)) if fn is not None}
            kw["supports"] = (lambda own, be: lambda p: extent_reasons(p) + arch_reasons(be, min_arch)
                              + (own(p) if own else []))(supports, backend)
            if subproblems is not None:
                kw["subproblems"] = (lambda sp, be: lambda p: sp(p, be))(subproblems, backend)
            register(Implementation(op=op, backend=backend, algorithm=name, run=run_with(backend, passes),
                                    dtypes=frozenset(dtypes), description=description, **kw))
