"""``depthwise`` on the CUDA backends: kernels/depthwise.cu (groups == C, any
channel multiplier, stride and dilation): fwd on shared-memory tiles with
their halo, dgrad a gather, wgrad one deterministic block reduction per
weight element."""

from __future__ import annotations

import numpy as np

from .common import (Passes, bias_arg, blocks, declare_source, geometry, int32_index_reasons, kernel,
                     register_algorithm)
from .implicit_gemm import acc_dtype

declare_source("depthwise.cu", ("depthwise_fwd", "depthwise_dgrad", "depthwise_wgrad"))

TP, TQ, RPT = 8, 32, 4  # DW_TP, DW_TQ, DW_RPT in depthwise.cu
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
    if problem.op == "fwd" and patch_bytes(q) > SHARED_LIMIT:
        reasons.append(f"the input patch of an {TP}x{TQ} output tile needs {patch_bytes(q)} bytes of shared "
                       f"memory (stride {q.stride[1:]}, dilation {q.dilation[1:]}), over {SHARED_LIMIT}")
    return reasons


def fwd(rt, q, x, w, bias):
    y = rt.empty(q.y_shape, q.dtype)
    rpt = rows_per_thread(q)
    tiles = -(-q.out_size[1] // (TP * rpt)) * -(-q.out_size[2] // TQ)
    rt.launch(kernel(rt, "depthwise.cu", "depthwise_fwd", q.dtype), (blocks(q.n * q.c_out * q.out_size[0] * tiles, 1),),
              (256,), (x, w, bias_arg(rt, bias, q.dtype), y, geometry(q, bias is not None), np.int32(rpt)),
              shared_mem=patch_bytes(q, rpt))
    return y


def dgrad(rt, q, dy, w, bias):
    dx = rt.empty(q.x_shape, q.dtype)
    total = int(np.prod(q.x_shape))
    rt.launch(kernel(rt, "depthwise.cu", "depthwise_dgrad", q.dtype), (blocks(total),), (256,),
              (dy, w, bias_arg(rt, bias, q.dtype), dx, geometry(q, bias is not None, mode="zeros")))
    return dx


def wgrad(rt, q, x, dy):
    dw = rt.empty(q.w_shape, q.dtype)
    count = int(np.prod(q.w_shape))
    rt.launch(kernel(rt, "depthwise.cu", "depthwise_wgrad", q.dtype), (blocks(count, 1),), (256,),
              (x, dy, dw, geometry(q)))
    return dw


register_algorithm("depthwise", Passes(fwd, dgrad, wgrad), supports=supports,
                   description="CUDA depthwise: shared-memory halo tiles (fwd), gather (dgrad), deterministic "
                               "block reduction per weight element (wgrad); any multiplier, stride, dilation")
