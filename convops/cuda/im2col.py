"""``im2col`` on the CUDA backends: kernels/im2col.cu (im2col / col2im plus
the shared tiled GEMM over explicit matrices), chunked over images so the
column buffer stays under ``config.cuda_workspace_bytes``."""

from __future__ import annotations

import numpy as np

from .. import config
from .common import Passes, bias_arg, blocks, declare_source, geometry, kernel, register_algorithm
from .implicit_gemm import acc_dtype, tile, wgrad_splits

declare_source("im2col.cu", ("im2col", "col2im", "im2col_gemm"))


def _col_bytes_per_image(q) -> int:
    """dgrad's columns are in the accumulation type (float32 for float16)."""
    dtype = acc_dtype(q.dtype) if q.op == "dgrad" else q.dtype
    return q.c_in * int(np.prod(q.kernel)) * int(np.prod(q.out_size)) * np.dtype(dtype).itemsize


def images_per_chunk(q) -> int:
    """Images per column buffer: under the workspace cap, and fewer than 2^31
    GEMM rows (the mainloop's rows are 32-bit)."""
    plane = int(np.prod(q.out_size))
    return max(1, min(q.n, config.cuda_workspace_bytes // max(1, _col_bytes_per_image(q)), (2**31 - 1) // max(1, plane)))


def workspace_bytes(problem) -> int:
    q = problem.expand(3).canonical()
    extra = (wgrad_plan(q)[0] * int(np.prod(q.w_shape)) * np.dtype(acc_dtype(q.dtype)).itemsize
             if q.op == "wgrad" else 0)
    return images_per_chunk(q) * _col_bytes_per_image(q) + extra


def supports(problem) -> list:
    q = problem.expand(3).canonical()
    reasons = []
    need = _col_bytes_per_image(q)
    if need > config.cuda_workspace_bytes:
        reasons.append(f"the column buffer of one image needs {need} bytes, over config.cuda_workspace_bytes = "
                       f"{config.cuda_workspace_bytes}")
    cols = q.c_out // q.groups if q.op == "fwd" else q.c_in // q.groups * int(np.prod(q.kernel))
    bn = tile(q.dtype)[1]
    if -(-cols // bn) > 65535:
        reasons.append(f"{cols} GEMM columns need more than 65535 tiles of {bn} (grid y)")
    return reasons


def _gemm(rt, q, pass_, a, b, bias, out, partial, n_begin, nb, first, splits=1, chunk=0):
    kk = q.c_in // q.groups * int(np.prod(q.kernel))
    mc = nb * int(np.prod(q.out_size))
    kg = q.c_out // q.groups
    rows, cols = {0: (mc, kg), 1: (mc, kk), 2: (kg, kk)}[pass_]
    bm, bn = tile(q.dtype)
    grid = (-(-rows // bm), -(-cols // bn), max(1, min(q.groups * splits, 65535)))
    rt.launch(kernel(rt, "im2col.cu", "im2col_gemm", q.dtype), grid, (256,),
              (a, b, bias_arg(rt, bias, q.dtype), out, partial, geometry(q, bias is not None), np.int32(pass_),
               np.int32(n_begin), np.int32(nb), np.int32(first), np.int32(splits), np.int64(chunk)))


def _col(rt, q, x, n_begin, nb):
    col = rt.empty((q.groups, q.c_in // q.groups * int(np.prod(q.kernel)), nb * int(np.prod(q.out_size))), q.dtype)
    rt.launch(kernel(rt, "im2col.cu", "im2col", q.dtype), (blocks(col.size),), (256,),
              (x, col, geometry(q), np.int32(n_begin), np.int32(nb)))
    return col


def _dummy_acc(rt, q):
    return rt.zeros((1,), acc_dtype(q.dtype))


def fwd(rt, q, x, w, bias):
    y = rt.empty(q.y_shape, q.dtype)
    step = images_per_chunk(q)
    for n0 in range(0, q.n, step):
        nb = min(step, q.n - n0)
        _gemm(rt, q, 0, _col(rt, q, x, n0, nb), w, bias, y, _dummy_acc(rt, q), n0, nb, 1)
    return y


def dgrad(rt, q, dy, w, bias):
    dx = rt.empty(q.x_shape, q.dtype)
    step = images_per_chunk(q)
    for n0 in range(0, q.n, step):
        nb = min(step, q.n - n0)
        col = rt.empty((q.groups, q.c_in // q.groups * int(np.prod(q.kernel)), nb * int(np.prod(q.out_size))),
                       acc_dtype(q.dtype))  # float16: float32 columns (per-tap sums not rounded)
        _gemm(rt, q, 1, dy, w, None, rt.zeros((1,), q.dtype), col, n0, nb, 1)
        total = nb * q.c_in * int(np.prod(q.in_size))
        rt.launch(kernel(rt, "im2col.cu", "col2im", q.dtype), (blocks(total),), (256,),
                  (col, bias_arg(rt, bias, q.dtype), dx, geometry(q, bias is not None, mode="zeros"), np.int32(n0),
                   np.int32(nb)))
    return dx


def wgrad_plan(q) -> tuple[int, int]:
    """(splits, chunk) of each image chunk's GEMM reduction (split-K, as implicit_gemm)."""
    return wgrad_splits(q, images_per_chunk(q) * int(np.prod(q.out_size)))


def wgrad(rt, q, x, dy):
    splits, chunk = wgrad_plan(q)
    partial = rt.empty((splits,) + q.w_shape, acc_dtype(q.dtype))
    step = images_per_chunk(q)
    for n0 in range(0, q.n, step):  # image chunks added in order, each into every slot: deterministic
        nb = min(step, q.n - n0)
        # (a shorter last image chunk may leave its last slices empty: they add zeros)
        _gemm(rt, q, 2, dy, _col(rt, q, x, n0, nb), None, rt.zeros((1,), q.dtype), partial, n0, nb, int(n0 == 0),
              splits, chunk)
    dw = rt.empty(q.w_shape, q.dtype)
    count = int(np.prod(q.w_shape))
    rt.launch(kernel(rt, "implicit_gemm.cu", "sum_splits", q.dtype), (blocks(count),), (256,),
              (partial, dw, np.int64(count), np.int32(splits)))
    return dw


register_algorithm("im2col", Passes(fwd, dgrad, wgrad), supports=supports, workspace_bytes=workspace_bytes,
                   description="CUDA im2col/col2im + hand-written tiled GEMM (shared-memory double buffering, "
                               "register micro-tiles); image chunks bounded by config.cuda_workspace_bytes")
