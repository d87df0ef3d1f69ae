"""``depthwise`` on the CUDA backends: kernels/depthwise.cu (groups == C, any
channel multiplier, stride and dilation): fwd on shared-memory tiles with
their halo, dgrad a gather, wgrad on the same tiles with one accumulator per
tap and deterministic reductions (split over the tiles, slices summed in order)."""

from __future__ import annotations

import numpy as np

from .. import config
from .common import (Passes, all_finite, bias_arg, blocks, declare_source, geometry, int32_index_reasons, kernel,
                     register_algorithm)
from .implicit_gemm import acc_dtype
from ..problem import ConvProblem

declare_source("depthwise.cu", ("depthwise_fwd", "depthwise_dgrad", "depthwise_wgrad"))

TP, TQ, RPT, WG_TAPS = 8, 32, 4, 16  # DW_TP, DW_TQ, DW_RPT, DW_WG_TAPS in depthwise.cu
SHARED_LIMIT = 48 * 1024  # dynamic shared memory without an opt-in, on every architecture


def patch_bytes(q, rpt: int = 1) -> int:
    """Shared memory of fwd's input patch for tiles of TP*rpt x TQ outputs."""
    rows = (TP * rpt - 1) * q.stride[1] + (q.kernel[1] - 1) * q.dilation[1] + 1
    cols = (TQ - 1) * q.stride[2] + (q.kernel[2] - 1) * q.dilation[2] + 1
    return rows * cols * np.dtype(acc_dtype(q.dtype)).itemsize


def rows_per_thread(q) -> int:
    """fwd's output rows per thread: up to RPT (fewer halo rows per output,
    one weight load per rpt products), no more than the output has, and the
    patch within SHARED_LIMIT (rpt = 1 always fits: supports())."""
    rpt = min(RPT, -(-q.out_size[1] // TP))
    while rpt > 1 and patch_bytes(q, rpt) > SHARED_LIMIT:
        rpt //= 2
    return rpt


def supports(problem) -> list:
    reasons = int32_index_reasons(problem)
    if problem.groups != problem.c_in:
        reasons.append(f"not depthwise (groups={problem.groups}, C_in={problem.c_in})")
    q = problem.expand(3).canonical()
    # (wgrad's blocks also hold 256 partial sums in static shared memory)
    limit = SHARED_LIMIT - (256 * np.dtype(acc_dtype(q.dtype)).itemsize if problem.op == "wgrad" else 0)
    if problem.op in ("fwd", "wgrad") and patch_bytes(q) > limit:
        reasons.append(f"the input patch of an {TP}x{TQ} output tile needs {patch_bytes(q)} bytes of shared "
                       f"memory (stride {q.stride[1:]}, dilation {q.dilation[1:]}), over {limit}")
    return reasons


def fwd(rt, q, x, w, bias, flip: bool = False):
    y = rt.empty(q.y_shape, q.dtype)
    rpt = rows_per_thread(q)
    tiles = -(-q.out_size[1] // (TP * rpt)) * -(-q.out_size[2] // TQ)
    rt.launch(kernel(rt, "depthwise.cu", "depthwise_fwd", q.dtype), (blocks(q.n * q.c_out * q.out_size[0] * tiles, 1),),
              (256,), (x, w, bias_arg(rt, bias, q.dtype), y, geometry(q, bias is not None), np.int32(rpt),
                       np.int32(flip)), shared_mem=patch_bytes(q, rpt))
    return y


def dgrad_as_fwd(q) -> ConvProblem | None:
    """The forward problem a dgrad is, when it is one fwd can run: stride 1,
    one output channel per input channel (Kg = 1), padding at most
    dilation*(k-1) (the gradient dy is padded by the rest on each side), the
    weight flipped, and its patch within SHARED_LIMIT; else None."""
    pad = tuple((d * (k - 1) - lo, d * (k - 1) - hi) for d, k, (lo, hi) in zip(q.dilation, q.kernel, q.padding))
    # (a canonical problem has stride 1 along dims of one output however large its
    # stride was: then the output may be shorter than a stride-1 one, and it is no fwd)
    stride1_out = tuple(i + lo + hi - d * (k - 1)
                        for i, (lo, hi), d, k in zip(q.in_size, q.padding, q.dilation, q.kernel))
    if (q.c_out != q.c_in or any(s != 1 for s in q.stride) or min(min(p) for p in pad) < 0
            or q.out_size != stride1_out):
        return None
    f = ConvProblem.forward(n=q.n, c_in=q.c_in, c_out=q.c_in, in_size=q.out_size, kernel=q.kernel, stride=q.stride,
                            padding=pad, dilation=q.dilation, groups=q.c_in, dtype=q.dtype)
    return f if f.out_size == q.in_size and patch_bytes(f) <= SHARED_LIMIT else None


def dgrad(rt, q, dy, w, bias):
    f = dgrad_as_fwd(q)
    # (fwd multiplies the weight by dy's zero padding too: exact only for a finite weight)
    if f is not None and all_finite(w):
        return fwd(rt, f, dy, w, bias, flip=True)
    dx = rt.empty(q.x_shape, q.dtype)
    total = int(np.prod(q.x_shape))
    rt.launch(kernel(rt, "depthwise.cu", "depthwise_dgrad", q.dtype), (blocks(total),), (256,),
              (dy, w, bias_arg(rt, bias, q.dtype), dx, geometry(q, bias is not None, mode="zeros")))
    return dx


def wgrad_plan(q) -> tuple[int, int, int]:
    """(blocks, splits, chunk): wgrad's blocks over (k, t, tap group) and its
    slices of the output-tile list, enough of them for
    config.cuda_depthwise_wgrad_blocks blocks, at most config.cuda_max_splits,
    each ``chunk`` tiles long; a function of the problem only."""
    taps = q.kernel[1] * q.kernel[2]
    elements = q.c_out * q.kernel[0] * -(-taps // WG_TAPS)
    tiles = q.n * q.out_size[0] * -(-q.out_size[1] // TP) * -(-q.out_size[2] // TQ)
    splits = max(1, min(-(-config.cuda_depthwise_wgrad_blocks // elements), config.cuda_max_splits, tiles))
    chunk = max(1, -(-tiles // splits))
    return min(elements, config.cuda_max_grid_blocks), -(-tiles // chunk) if tiles else 1, chunk


def wgrad(rt, q, x, dy):
    nblocks, splits, chunk = wgrad_plan(q)
    partial = rt.empty((splits,) + q.w_shape, acc_dtype(q.dtype))
    rt.launch(kernel(rt, "depthwise.cu", "depthwise_wgrad", q.dtype), (nblocks, splits), (256,),
              (x, dy, partial, geometry(q), np.int32(chunk)), shared_mem=patch_bytes(q))
    dw = rt.empty(q.w_shape, q.dtype)
    count = int(np.prod(q.w_shape))
    rt.launch(kernel(rt, "implicit_gemm.cu", "sum_splits", q.dtype), (blocks(count),), (256,),
              (partial, dw, np.int64(count), np.int32(splits)))
    return dw


def workspace_bytes(problem) -> int:
    if problem.op != "wgrad":
        return 0
    q = problem.expand(3).canonical()
    return wgrad_plan(q)[1] * int(np.prod(q.w_shape)) * np.dtype(acc_dtype(q.dtype)).itemsize


register_algorithm("depthwise", Passes(fwd, dgrad, wgrad), supports=supports, workspace_bytes=workspace_bytes,
                   description="CUDA depthwise: shared-memory halo tiles (fwd and wgrad: one accumulator per tap, "
                               "deterministic reductions), gather (dgrad); any multiplier, stride, dilation")
