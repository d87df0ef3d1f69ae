"""``direct`` on the CUDA backends: kernels/direct.cu, the generic fallback
(any geometry, every padding mode, no workspace)."""

from __future__ import annotations

import numpy as np

from .common import Passes, bias_arg, blocks, declare_source, geometry, kernel, register_algorithm

declare_source("direct.cu", ("conv_direct_fwd", "conv_direct_dgrad", "conv_direct_wgrad"))
declare_source("padding.cu", ("fold_padding",))

_TILE = 4  # DIRECT_TILE in direct.cu


def fwd(rt, q, x, w, bias):
    y = rt.empty(q.y_shape, q.dtype)
    kg = q.c_out // q.groups
    total = q.n * q.groups * -(-kg // _TILE) * int(np.prod(q.out_size))
    rt.launch(kernel(rt, "direct.cu", "conv_direct_fwd", q.dtype), (blocks(total),), (256,),
              (x, w, bias_arg(rt, bias, q.dtype), y, geometry(q, bias is not None)))
    return y


def dgrad(rt, q, dy, w, bias):
    dx = rt.empty(q.x_shape, q.dtype)
    cg = q.c_in // q.groups
    total = q.n * q.groups * -(-cg // _TILE) * int(np.prod(q.in_size))
    rt.launch(kernel(rt, "direct.cu", "conv_direct_dgrad", q.dtype), (blocks(total),), (256,),
              (dy, w, bias_arg(rt, bias, q.dtype), dx, geometry(q, bias is not None, mode="zeros")))
    return dx


def wgrad(rt, q, x, dy):
    dw = rt.empty(q.w_shape, q.dtype)
    total = int(np.prod(q.w_shape))
    rt.launch(kernel(rt, "direct.cu", "conv_direct_wgrad", q.dtype), (blocks(total),), (256,),
              (x, dy, dw, geometry(q)))
    return dw


register_algorithm("direct", Passes(fwd, dgrad, wgrad),
                   description="CUDA direct loops, a register tile of 4 channels per thread; generic, no workspace")
