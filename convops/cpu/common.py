"""What every CPU algorithm shares: the 3-D canonical geometry, padding modes
(padded copy in, fold back out), dtype handling and registration.

Kernels see only zero padding: a problem with another padding mode is run on
a padded copy of the input with no padding, and its dgrad is computed for the
padded input and folded back (each padded position adds to the element it was
copied from), which makes dgrad the exact adjoint of fwd in every mode.

All kernels work in 3 spatial dims: 1-D and 2-D problems get leading
singleton dims (kernel 1, stride 1, dilation 1, no padding), which keeps the
set of compiled specializations to one per dtype.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ..problem import ConvProblem
from ..registry import Implementation, register

_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap", "symmetric": "symmetric"}


class Geometry(NamedTuple):
    """A problem in 3 spatial dims with zero padding ``pad`` (low side; the
    high side is implied by ``out_size``).  Shapes: x (N, C, D, H, W), w (K,
    C/g, T, R, S), y (N, K, P0, P1, P2)."""

    n: int
    c: int
    k: int
    groups: int
    in_size: tuple
    out_size: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    pad: tuple
    dtype: np.dtype  # compute dtype

    @property
    def x_shape(self):
        return (self.n, self.c) + self.in_size

    @property
    def w_shape(self):
        return (self.k, self.c // self.groups) + self.kernel

    @property
    def y_shape(self):
        return (self.n, self.k) + self.out_size


def _lead(values, fill, nd):
    return (fill,) * (3 - nd) + tuple(values)


def compute_dtype(problem: ConvProblem) -> np.dtype:
    """float16 is computed in float32; float32/float64 natively."""
    return np.dtype(np.float32 if problem.dtype == "float16" else problem.dtype)


def geometry(problem: ConvProblem, materialized: bool = False) -> Geometry:
    """The 3-D geometry; ``materialized``: of the padded copy (no padding)."""
    nd = problem.ndim
    size = problem.padded_size if materialized else problem.in_size
    pad = (0,) * nd if materialized else tuple(lo for lo, _ in problem.padding)
    return Geometry(problem.n, problem.c_in, problem.c_out, problem.groups, _lead(size, 1, nd),
                    _lead(problem.out_size, 1, nd), _lead(problem.kernel, 1, nd), _lead(problem.stride, 1, nd),
                    _lead(problem.dilation, 1, nd), _lead(pad, 0, nd), compute_dtype(problem))


def as5d(a: np.ndarray, spatial: tuple, dtype) -> np.ndarray:
    """A C-contiguous (N, C, *spatial3) array in the compute dtype (a private
    copy only when the input is not already one)."""
    return np.ascontiguousarray(a, dtype=dtype).reshape(a.shape[:2] + spatial)


def pad_input(problem: ConvProblem, x: np.ndarray) -> np.ndarray:
    """A padded copy of x for a non-zero padding mode."""
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


def _bias(bias, dtype) -> np.ndarray:
    """Kernels take a bias array always; an empty one means no bias."""
    return np.zeros(0, dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)


class Kernels(NamedTuple):
    """An algorithm's three passes on zero-padded 3-D geometry:

    fwd(geom, x5, w5, bias) -> y5;  dgrad(geom, dy5, w5, bias) -> dx5;
    wgrad(geom, x5, dy5) -> dw5.  bias is an array (empty for none); the
    arrays are C-contiguous in the compute dtype.  A pass may be None."""

    fwd: Callable | None
    dgrad: Callable | None
    wgrad: Callable | None


def run_with(kernels: Kernels) -> Callable:
    """The registry ``run`` of an algorithm: padding modes, 3-D reshapes and
    dtypes around its kernels."""

    def run(problem: ConvProblem, a, b, bias=None):
        zeros = problem.padding_mode == "zeros"
        g = geometry(problem, materialized=not zeros)
        dt = g.dtype
        if problem.op == "fwd":
            x = a if zeros else pad_input(problem, a)
            out = kernels.fwd(g, as5d(x, g.in_size, dt), as5d(b, g.kernel, dt), _bias(bias, dt))
        elif problem.op == "wgrad":
            x = a if zeros else pad_input(problem, a)
            out = kernels.wgrad(g, as5d(x, g.in_size, dt), as5d(b, g.out_size, dt))
        else:
            out = kernels.dgrad(g, as5d(a, g.out_size, dt), as5d(b, g.kernel, dt),
                                _bias(bias if zeros else None, dt))
            if not zeros:
                out = fold_padding(problem, out.reshape((problem.n, problem.c_in) + problem.padded_size))
                if bias is not None:
                    out += _bias(bias, dt).reshape((-1,) + (1,) * problem.ndim)
        return out.reshape(problem.result_shape).astype(problem.dtype, copy=False)

    return run


def register_algorithm(name: str, kernels: Kernels, *, supports=None, declines=None, priority=100,
                       description="", ops=("fwd", "dgrad", "wgrad"), dtypes=("float16", "float32", "float64")):
    """Register one Implementation per pass the algorithm provides."""
    run = run_with(kernels)
    for op in ops:
        if getattr(kernels, op) is None:
            continue
        kw = {}
        if supports is not None:
            kw["supports"] = supports
        if declines is not None:
            kw["declines"] = declines
        register(Implementation(op=op, backend="numba", algorithm=name, run=run, priority=priority,
                                description=description, dtypes=frozenset(dtypes), **kw))
