"""``implicit_gemm`` on the CUDA backends: kernels/implicit_gemm.cu, the SIMT
performance path.  fwd and wgrad are one GEMM per group over gathered
operands; dgrad of a strided problem runs as stride-1 phase sub-problems
(``ConvProblem.stride_phase_problems``), so no inserted zero is multiplied;
wgrad splits its long reduction (split-K) and adds the slices in a fixed
order."""

from __future__ import annotations

import functools

import numpy as np

from .. import config
from .common import (Passes, acc_dtype, all_finite, bias_arg, blocks, declare_source, geometry, int32_index_reasons,
                     kernel, register_algorithm)
from . import direct

declare_source("implicit_gemm.cu", ("igemm_fwd", "igemm_dgrad", "igemm_wgrad", "sum_splits"))

BK = 8


def tile(dtype: str) -> tuple[int, int]:
    """(BM, BN) of Tiles<T> in gemm_tile.cuh."""
    return (64, 64) if dtype == "float64" else (128, 128)


@functools.lru_cache(maxsize=256)
def _taps_host(channels: int, kernel: tuple, dilation: tuple) -> np.ndarray:
    """(channels*T*R*S, 4) int32: for kk = (ch, t, r, s): ch, t*dd, r*dh, s*dw
    (the kernels' precomputed filter offsets)."""
    grids = np.meshgrid(np.arange(channels), *[np.arange(k) * d for k, d in zip(kernel, dilation)], indexing="ij")
    out = np.stack([g.ravel() for g in grids], axis=1).astype(np.int32)
    out.setflags(write=False)
    return out


def _taps(rt, channels, q):
    key = ("taps", channels, q.kernel, q.dilation)
    return rt.constant(key, lambda: _taps_host(channels, q.kernel, q.dilation))


def _grid(m: int, n: int, z: int, dtype: str) -> tuple:
    bm, bn = tile(dtype)
    return (-(-m // bm), -(-n // bn), max(1, min(z, 65535)))


def fwd(rt, q, x, w, bias):
    y = rt.empty(q.y_shape, q.dtype)
    grid = _grid(q.n * int(np.prod(q.out_size)), q.c_out // q.groups, q.groups, q.dtype)
    rt.launch(kernel(rt, "implicit_gemm.cu", "igemm_fwd", q.dtype), grid, (256,),
              (x, w, bias_arg(rt, bias, q.dtype), _taps(rt, q.c_in // q.groups, q), y, geometry(q, bias is not None)))
    return y


def _dgrad_stride1(rt, q, dy, w, bias):
    dx = rt.empty(q.x_shape, q.dtype)
    grid = _grid(q.n * int(np.prod(q.in_size)), q.c_in // q.groups, q.groups, q.dtype)
    rt.launch(kernel(rt, "implicit_gemm.cu", "igemm_dgrad", q.dtype), grid, (256,),
              (dy, w, bias_arg(rt, bias, q.dtype), _taps(rt, q.c_out // q.groups, q), dx,
               geometry(q, bias is not None, mode="zeros")))
    return dx


def dgrad(rt, q, dy, w, bias):
    # Zero-filled borders multiply the weight: exact only when it is finite
    # (a NaN/Inf weight must reach only the inputs it touches).
    if not all_finite(w):
        return direct.dgrad(rt, q, dy, w, bias)
    return phase_dgrad(rt, q, dy, w, bias, _dgrad_stride1)


def phase_dgrad(rt, q, dy, w, bias, stride1):
    """dgrad through ``stride1(rt, sub, dy, w_sub, bias)``, a stride-1 dgrad:
    directly for a stride-1 problem, else once per stride phase
    (``ConvProblem.stride_phase_problems``) into the padded gradient."""
    if all(s == 1 for s in q.stride):
        return stride1(rt, q, dy, w, bias)
    # positions no phase reaches hold the bias alone; the phases add it in their
    # epilogue (one rounding, as on the stride-1 path)
    gxp = rt.zeros((q.n, q.c_in) + q.input_extent, q.dtype)
    if bias is not None:
        gxp[...] = bias.reshape((-1, 1, 1, 1))
    for combo, sub in q.stride_phase_problems():
        if 0 in sub.in_size:
            continue
        wsub = w
        for axis, ph in enumerate(combo, start=2):
            wsub = wsub[(slice(None),) * axis + (list(ph.taps),)]
        part = stride1(rt, sub, dy, rt.to_device(wsub), bias)
        index = (slice(None), slice(None)) + tuple(slice(ph.start + ph.shift * s, ph.start + ph.shift * s + n * s, s)
                                                  for ph, s, n in zip(combo, q.stride, sub.in_size))
        gxp[index] = part
    # the input's region of the padded gradient (the extent may end inside
    # the low padding: then nothing, and dx stays zero)
    spans = [max(0, min(e, p + i) - p) for i, e, p in zip(q.in_size, q.input_extent, q.pad_lo)]
    dx = rt.zeros(q.x_shape, q.dtype)
    if bias is not None:  # inputs past the extent the outputs reach
        dx[...] = bias.reshape((-1, 1, 1, 1))
    dx[(slice(None), slice(None)) + tuple(slice(0, n) for n in spans)] = \
        gxp[(slice(None), slice(None)) + tuple(slice(p, p + n) for p, n in zip(q.pad_lo, spans))]
    return dx


def wgrad_splits(q, red: int | None = None) -> tuple[int, int]:
    """(splits, chunk) of wgrad's reduction over ``red`` (default N*Z*P*Q)
    output positions: enough slices to give config.cuda_target_blocks
    blocks, at most config.cuda_max_splits, none shorter than
    config.cuda_min_split; a function of the problem only."""
    red = q.n * int(np.prod(q.out_size)) if red is None else red
    bm, bn = tile(q.dtype)
    tiles = -(-(q.c_out // q.groups) // bm) * -(-(q.c_in // q.groups * int(np.prod(q.kernel))) // bn) * q.groups
    splits = max(1, min(-(-config.cuda_target_blocks // tiles), config.cuda_max_splits,
                        red // config.cuda_min_split))
    if red == 0:
        return 1, BK
    chunk = -(-(-(-red // splits)) // BK) * BK
    return -(-red // chunk), chunk


def workspace_bytes(problem) -> int:
    if problem.op != "wgrad":
        return 0
    q = problem.expand(3).canonical()
    splits, _ = wgrad_splits(q)
    return splits * int(np.prod(q.w_shape)) * np.dtype(acc_dtype(q.dtype)).itemsize


def wgrad(rt, q, x, dy):
    splits, chunk = wgrad_splits(q)
    kk = q.c_in // q.groups * int(np.prod(q.kernel))
    partial = rt.empty((splits,) + q.w_shape, acc_dtype(q.dtype))
    grid = _grid(q.c_out // q.groups, kk, q.groups * splits, q.dtype)
    rt.launch(kernel(rt, "implicit_gemm.cu", "igemm_wgrad", q.dtype), grid, (256,),
              (x, dy, _taps(rt, q.c_in // q.groups, q), partial, geometry(q), np.int32(splits), np.int64(chunk)))
    dw = rt.empty(q.w_shape, q.dtype)
    count = int(np.prod(q.w_shape))
    rt.launch(kernel(rt, "implicit_gemm.cu", "sum_splits", q.dtype), (blocks(count),), (256,),
              (partial, dw, np.int64(count), np.int32(splits)))
    return dw


def supports(problem) -> list:
    q = problem.expand(3).canonical()
    bm, bn = tile(q.dtype)
    cols = {"fwd": q.c_out // q.groups, "dgrad": q.c_in // q.groups,
            "wgrad": q.c_in // q.groups * int(np.prod(q.kernel))}[q.op]
    reasons = int32_index_reasons(problem)
    if -(-cols // bn) > 65535:
        reasons.append(f"{cols} GEMM columns need more than 65535 tiles of {bn} (grid y)")
    if q.op == "wgrad" and -(-(q.c_out // q.groups) // bm) > 2**31 - 1:
        reasons.append("too many output channels per group for grid x")
    return reasons


register_algorithm("implicit_gemm", Passes(fwd, dgrad, wgrad), supports=supports, workspace_bytes=workspace_bytes,
                   description="CUDA implicit GEMM (CUTLASS-style): 128x128x8 tiles double-buffered in shared "
                               "memory, 8x8 register micro-tiles; phase-decomposed strided dgrad; split-K wgrad")
