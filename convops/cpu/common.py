"""What every CPU algorithm shares: the kernel problem, padding modes (padded
copy in, fold back out), operand preparation, the guard for thread-unsafe
Numba threading layers, and registration.

Kernels see only zero padding: a problem with another padding mode is run on
a padded copy of the input with no padding (``ConvProblem.materialized``),
and its dgrad is computed for the padded input and folded back (each padded
position adds to the element it was copied from), which makes dgrad the exact
adjoint of fwd in every mode.

All kernels work in 3 spatial dims on ``kernel_problem(problem)``: 1-D and
2-D problems get leading singleton dims (``ConvProblem.expand``), parameters
that cannot matter are normalized (``ConvProblem.canonical``), and the dtype
is the compute dtype (float16 is computed in float32).  That keeps the set of
compiled specializations to one per compute dtype, and means no size is
computed anywhere but in ConvProblem and arithmetic.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Callable, NamedTuple

import numba
import numpy as np

from ..problem import ConvProblem
from ..registry import Implementation, register

_NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap", "symmetric": "symmetric"}


def compute_dtype(dtype: str) -> str:
    """float16 is computed in float32; float32/float64 natively."""
    return "float32" if dtype == "float16" else dtype


@functools.lru_cache(maxsize=1024)  # pure, and three dataclass rebuilds per call otherwise
def kernel_problem(problem: ConvProblem) -> ConvProblem:
    """What the kernels run: 3-D, zero padding (a non-zero mode on the padded
    copy), canonical parameters, compute dtype."""
    q = problem if problem.padding_mode == "zeros" else problem.materialized()
    return q.expand(3).canonical().with_dtype(compute_dtype(problem.dtype))


def as5d(a: np.ndarray, spatial: tuple, dtype) -> np.ndarray:
    """A C-contiguous, writeable-typed (N, C, *spatial3) array in the compute
    dtype.  A private copy only when the input is not already one; read-only
    inputs (``setflags(write=False)``, ``np.load(mmap_mode="r")``) are copied
    because the kernels are compiled for writeable arrays (one specialization,
    not two) -- they never write their operands."""
    out = np.ascontiguousarray(a, dtype=dtype)
    if not out.flags.writeable:
        out = out.copy()
    return out.reshape(a.shape[:2] + tuple(spatial))


def pad_input(problem: ConvProblem, x: np.ndarray) -> np.ndarray:
    """A padded copy of x (the padding mode applied; zeros for "zeros")."""
    return np.pad(x, [(0, 0), (0, 0), *problem.padding], mode=_NUMPY_MODE[problem.padding_mode])


def fold_padding(problem: ConvProblem, gxp: np.ndarray) -> np.ndarray:
    """Adjoint of :func:`pad_input`: sum each padded position's gradient into
    the input element it was copied from, one spatial dim at a time, in a
    fixed order (deterministic)."""
    g = gxp
    for axis, (n, (lo, hi)) in enumerate(zip(problem.in_size, problem.padding), start=2):
        if lo == 0 and hi == 0:
            continue
        source = np.pad(np.arange(n), (lo, hi), mode=_NUMPY_MODE[problem.padding_mode])
        moved = np.moveaxis(g, axis, 0)
        out = np.array(moved[lo:lo + n])  # the interior maps to itself
        for pos in list(range(lo)) + list(range(lo + n, lo + n + hi)):
            out[source[pos]] += moved[pos]
        g = np.moveaxis(out, 0, axis)
    return np.ascontiguousarray(g)


def bias_array(bias, dtype) -> np.ndarray:
    """Kernels take a bias array always; an empty one means no bias."""
    return np.zeros(0, dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)


def all_finite(a: np.ndarray) -> bool:
    """No NaN or infinity in ``a`` (kernels that multiply padding or inserted
    zeros by an operand are exact only when that operand is finite)."""
    return bool(np.isfinite(a).all())


# ---- threading layers -------------------------------------------------------------
_PARALLEL_LOCK = threading.RLock()
_SAFE_LAYERS = ("tbb", "omp")


def _layer_is_safe() -> bool:
    """True once a parallel region has run under a thread-safe layer."""
    try:
        return numba.threading_layer() in _SAFE_LAYERS
    except ValueError:  # no parallel region has run yet: the layer is not known
        return False


@contextlib.contextmanager
def parallel_guard():
    """Numba's ``workqueue`` threading layer (its fallback when neither TBB nor
    OpenMP loads) aborts the process when two Python threads run parallel
    regions at once.  Under that layer, and until the first parallel region
    has told which layer loaded, parallel kernels run one call at a time
    (reentrant: a phase algorithm's sub-problems run inside its call); under
    ``tbb`` and ``omp`` calls run concurrently."""
    if _layer_is_safe():
        yield
        return
    with _PARALLEL_LOCK:
        yield


class Kernels(NamedTuple):
    """An algorithm's three passes on a kernel problem ``q`` (see
    kernel_problem):

    fwd(q, x5, w5, bias) -> y5;  dgrad(q, dy5, w5, bias) -> dx5;
    wgrad(q, x5, dy5) -> dw5.  bias is an array (empty for none); the arrays
    are C-contiguous in the compute dtype.  A pass may be None."""

    fwd: Callable | None
    dgrad: Callable | None
    wgrad: Callable | None


def run_with(kernels: Kernels) -> Callable:
    """The registry ``run`` of an algorithm: padding modes, 3-D reshapes and
    dtypes around its kernels."""

    def run(problem: ConvProblem, a, b, bias=None):
        zeros = problem.padding_mode == "zeros"
        q = kernel_problem(problem)
        dt = np.dtype(q.dtype)
        with parallel_guard():
            if problem.op == "fwd":
                x = a if zeros else pad_input(problem, a)
                out = kernels.fwd(q, as5d(x, q.in_size, dt), as5d(b, q.kernel, dt), bias_array(bias, dt))
            elif problem.op == "wgrad":
                x = a if zeros else pad_input(problem, a)
                out = kernels.wgrad(q, as5d(x, q.in_size, dt), as5d(b, q.out_size, dt))
            else:
                out = kernels.dgrad(q, as5d(a, q.out_size, dt), as5d(b, q.kernel, dt),
                                    bias_array(bias if zeros else None, dt))
                if not zeros:
                    out = fold_padding(problem, out.reshape((problem.n, problem.c_in) + problem.padded_size))
                    if bias is not None:
                        out += bias_array(bias, dt).reshape((-1,) + (1,) * problem.ndim)
        return out.reshape(problem.result_shape).astype(problem.dtype, copy=False)

    return run


def register_algorithm(name: str, kernels: Kernels, *, supports=None, declines=None, workspace_bytes=None,
                       subproblems=None, description="", ops=("fwd", "dgrad", "wgrad"),
                       dtypes=("float16", "float32", "float64")):
    """Register one Implementation per pass the algorithm provides.
    ``supports``/``declines``/``workspace_bytes``/``subproblems`` take the
    user's problem (see registry.Implementation)."""
    run = run_with(kernels)
    for op in ops:
        if getattr(kernels, op) is None:
            continue
        kw = {key: fn for key, fn in (("supports", supports), ("declines", declines),
                                      ("workspace_bytes", workspace_bytes), ("subproblems", subproblems))
              if fn is not None}
        register(Implementation(op=op, backend="numba", algorithm=name, run=run, description=description,
                                dtypes=frozenset(dtypes), **kw))
