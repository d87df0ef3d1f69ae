"""BLAS GEMM callable from inside Numba kernels.

The im2col family runs one GEMM per chunk *inside* a Numba parallel loop, so
each worker builds its column chunk and multiplies it while it is still in
its own cache, and two thread pools never compete for the cores.  The GEMM
is SciPy's BLAS (``scipy.linalg.cython_blas``), called through a function
pointer passed to the kernel (so the kernels stay cacheable), with that BLAS
held at one thread for the duration of a convops call.

OpenBLAS's run-time CPU detection (0.3.30) treats AMD Zen 4/5 as Haswell
and uses AVX2 kernels at half the AVX-512 speed.  If SciPy's BLAS is not
loaded yet, ``config.openblas_coretype`` (``CONVOPS_OPENBLAS_CORETYPE=<name>``)
loads it with those kernels;
by default (``auto``) it gets the SkylakeX kernels when the CPU has the
AVX-512 subsets they need and the user set no ``OPENBLAS_CORETYPE`` (an
explicit ``OPENBLAS_CORETYPE`` is respected; ``none`` turns this off).  The
choice is made once per process, so results stay deterministic within it.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

from numba import njit

import numpy as np

from .. import config

_AVX512 = ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd")


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _load_scipy_blas():
    """Import SciPy's BLAS, choosing its OpenBLAS kernels
    (``config.openblas_coretype``): an explicit core name wins; under ``auto``
    (the default) SkylakeX when the user set no ``OPENBLAS_CORETYPE`` and the
    CPU has AVX-512."""
    choice = config.openblas_coretype
    override = None
    if "scipy.linalg.cython_blas" not in sys.modules:
        if choice not in ("auto", "none", ""):
            override = choice
        elif choice == "auto" and "OPENBLAS_CORETYPE" not in os.environ and all(f in _cpu_flags() for f in _AVX512):
            override = "SkylakeX"
    saved = os.environ.get("OPENBLAS_CORETYPE")
    if override:
        os.environ["OPENBLAS_CORETYPE"] = override
    try:
        import scipy.linalg.cython_blas as cython_blas
    finally:
        if override:
            if saved is None:
                del os.environ["OPENBLAS_CORETYPE"]
            else:
                os.environ["OPENBLAS_CORETYPE"] = saved
    return cython_blas


def _function_pointer(module, name):
    capsule = module.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    address = get_pointer(capsule, get_name(capsule))
    return ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))(address)


_cython_blas = _load_scipy_blas()
SGEMM = _function_pointer(_cython_blas, "sgemm")
DGEMM = _function_pointer(_cython_blas, "dgemm")


def _scipy_openblas_path():
    from threadpoolctl import ThreadpoolController
    scipy_dir = os.path.dirname(os.path.dirname(os.path.realpath(_cython_blas.__file__)))
    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api == "blas" and os.path.realpath(lib.filepath).startswith(scipy_dir):
            return lib.filepath
    return None


def _threads_local():
    """OpenBLAS's per-calling-thread thread count setter (OpenBLAS >= 0.3.27).

    The global setting does not reach other threads' calls in these builds, so
    the GEMMs set their own thread to one BLAS thread (and restore it): a GEMM
    then gives the same bits from any thread.  Without the symbol, a harmless
    int(int) function stands in and ``single_threaded_blas`` (global) is all
    there is."""
    path = _scipy_openblas_path()
    if path:
        lib = ctypes.CDLL(path)
        for name in ("openblas_set_num_threads_local", "scipy_openblas_set_num_threads_local"):
            if hasattr(lib, name):
                return ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)((name, lib)), True
    return ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(("abs", ctypes.CDLL(None))), False


THREADS_LOCAL, HAS_THREADS_LOCAL = _threads_local()


def gemm_for(dtype):
    return SGEMM if np.dtype(dtype) == np.float32 else DGEMM


@njit(cache=True)
def gemm(fn, threads_local, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Row-major C[m, n] = alpha * op(A)[m, k] @ op(B)[k, n] + beta * C, on one
    thread of the BLAS whatever the caller's setting (``threads_local``:
    OpenBLAS's per-thread thread count, set to 1 for the call and restored).

    ``a``, ``b``, ``c`` are (views of) arrays whose first element is the
    matrix's; ``lda``/``ldb``/``ldc`` their row strides in elements.  A
    row-major matrix is its transpose in column-major order, so this is the
    Fortran call C^T = op(B)^T op(A)^T.
    """
    ints = np.empty(6, np.int32)
    ints[0] = n
    ints[1] = m
    ints[2] = k
    ints[3] = ldb
    ints[4] = lda
    ints[5] = ldc
    scalars = np.empty(2, c.dtype)
    scalars[0] = alpha
    scalars[1] = beta
    chars = np.empty(2, np.uint8)
    chars[0] = 84 if trans_b else 78  # 'T' / 'N'
    chars[1] = 84 if trans_a else 78
    previous = threads_local(1)
    fn(chars[0:].ctypes.data, chars[1:].ctypes.data, ints[0:].ctypes.data, ints[1:].ctypes.data,
       ints[2:].ctypes.data, scalars[0:].ctypes.data, b.ctypes.data, ints[3:].ctypes.data, a.ctypes.data,
       ints[4:].ctypes.data, scalars[1:].ctypes.data, c.ctypes.data, ints[5:].ctypes.data)
    threads_local(previous)


class _SingleThreaded:
    """Fallback for OpenBLAS without a per-thread setting: hold SciPy's BLAS at
    one thread (globally) while any convops call runs GEMMs from Numba workers
    (reentrant across Python threads)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = None
        self._lib = None

    def _controller(self):
        if self._lib is None:
            from threadpoolctl import ThreadpoolController
            path = os.path.realpath(getattr(_cython_blas, "__file__", ""))
            libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
            scipy_dir = os.path.dirname(os.path.dirname(path))
            own = [c for c in libs if os.path.realpath(c.filepath).startswith(scipy_dir)]
            self._lib = own or libs
        return self._lib

    def __enter__(self):
        if HAS_THREADS_LOCAL:  # each GEMM sets its own thread to one BLAS thread
            return self
        with self._lock:
            if self._depth == 0:
                libs = self._controller()
                self._saved = [lib.num_threads for lib in libs]
                for lib in libs:
                    lib.set_num_threads(1)
            self._depth += 1
        return self

    def __exit__(self, *exc):
        if HAS_THREADS_LOCAL:
            return
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                for lib, n in zip(self._controller(), self._saved):
                    lib.set_num_threads(n)


single_threaded_blas = _SingleThreaded()
