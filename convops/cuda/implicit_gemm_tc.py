"""``implicit_gemm_tc`` on the CUDA backends: kernels/implicit_gemm_tc.cu, the
tensor-core path (sm_80 and newer).  float16 runs mma.sync m16n8k16 with
float32 accumulation; float32 splits each operand into three TF32 pieces and
sums six TF32 products per step (float32 accuracy) unless the user opts into
3xTF32 (``config.tf32x3``) or one TF32 product (``config.allow_tf32``).

Operands are packed into a workspace first: channels last, the channel count
rounded up to 16 bytes of elements, the padding materialized in the
problem's padding mode; fwd and wgrad then gather 16-byte chunks with
cp.async.  dgrad of a stride-1 problem is the fwd kernel on dy (padded by
dilation*(k-1) - pad) and the flipped, transposed weight; strided dgrad runs
as stride-1 phase sub-problems (``implicit_gemm.phase_dgrad``), and a
non-finite weight goes to ``direct`` (zero-filled borders would multiply it).
wgrad splits its reduction (split-K) and adds the slices in a fixed order.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import config
from .common import (INT32_LIMIT, Passes, acc_dtype, all_finite, bias_arg, blocks, declare_source, kernel,
                     register_algorithm)
from . import direct
from .implicit_gemm import phase_dgrad

declare_source("implicit_gemm_tc.cu", ("tc_pack_activation", "tc_pack_weight", "igemm_tc_fwd", "igemm_tc_wgrad"),
               types=("half_t", "float"), min_arch=80)

DTYPES = ("float16", "float32")
TILE = 128  # BM = BN


def stage_depth(dtype: str) -> int:
    """Reduction elements per pipeline stage (64 bytes: 32 halves, 16 floats;
    any dtype, so reasons() can be asked of float64)."""
    return 64 // np.dtype(dtype).itemsize

TC_FIELDS = ("N", "Cp", "Dp", "Hp", "Wp", "Z", "P", "Q", "T", "R", "S", "sd", "sh", "sw", "dd", "dh", "dw",
             "Kp", "Kout", "Cout", "has_bias", "passes")
TC_GEOM = np.dtype([(f, np.int32) for f in TC_FIELDS])
PACK_FIELDS = ("N", "C", "D", "H", "W", "Dp", "Hp", "Wp", "Cp", "lo_d", "lo_h", "lo_w", "mode")
PACK_GEOM = np.dtype([(f, np.int32) for f in PACK_FIELDS])
PACK_TILE = 32  # TC_PACK_TILE: tc_pack_activation's (x, c) tile
PAD_MODE = {"zeros": 0, "reflect": 1, "replicate": 2, "circular": 3, "symmetric": 4}


def packed(channels: int, dtype: str) -> int:
    """Channels rounded up to whole 16-byte chunks."""
    v = 16 // np.dtype(dtype).itemsize  # VEC in the kernel (any dtype, so reasons() can be asked of float64)
    return -(-channels // v) * v


def passes() -> int:
    """TF32 products per float32 tile: 6 (three-piece split, float32
    accuracy), 3 (3xTF32, config.tf32x3) or 1 (TF32, config.allow_tf32)."""
    return 1 if config.allow_tf32 else 3 if config.tf32x3 else 6


def _struct(dtype, values: dict) -> np.void:
    return _struct_of(dtype, tuple(int(values[f]) for f in dtype.names))


@functools.lru_cache(maxsize=1024)  # per launch; the same few geometries every training step
def _struct_of(dtype, row: tuple) -> np.void:
    for name, v in zip(dtype.names, row):
        if not -2**31 <= v < 2**31:
            raise ValueError(f"{name}={v} does not fit the kernels' 32-bit extents")
    return np.array(row, dtype)[()]


def _pack_activation(rt, a, dtype, lo, extent, mode):
    """(N, C, D, H, W) -> (N, Dp, Hp, Wp, Cp): dst[..., z, ...] = a[..., z - lo, ...]
    through the padding mode; extra channels zero."""
    n, c = a.shape[:2]
    cp = packed(c, dtype)
    out = rt.empty((n,) + tuple(extent) + (cp,), dtype)
    geom = _struct(PACK_GEOM, dict(N=n, C=c, D=a.shape[2], H=a.shape[3], W=a.shape[4], Dp=extent[0], Hp=extent[1],
                                   Wp=extent[2], Cp=cp, lo_d=lo[0], lo_h=lo[1], lo_w=lo[2], mode=PAD_MODE[mode]))
    tiles = n * int(np.prod(extent[:2])) * -(-extent[2] // PACK_TILE) * -(-cp // PACK_TILE)
    rt.launch(kernel(rt, "implicit_gemm_tc.cu", "tc_pack_activation", dtype), (blocks(tiles, 1),), (256,),
              (a, out, geom))
    return out


def _pack_weight(rt, w, dtype, flip: bool):
    """(K, C, T, R, S) -> (K, T, R, S, Cp), or flipped and transposed (C, T, R, S, Kp)."""
    k, c = w.shape[:2]
    rows, inner = (c, k) if flip else (k, c)
    out = rt.empty((rows,) + tuple(w.shape[2:]) + (packed(inner, dtype),), dtype)
    rt.launch(kernel(rt, "implicit_gemm_tc.cu", "tc_pack_weight", dtype), (blocks(out.size),), (256,),
              (w, out, np.int32(k), np.int32(c), np.int32(w.shape[2]), np.int32(w.shape[3]), np.int32(w.shape[4]),
               np.int32(out.shape[-1]), np.int32(int(flip))))
    return out


def _geom(q, act, out_size, kp, kout, cout=0, has_bias=False) -> np.void:
    values = dict(N=act.shape[0], Dp=act.shape[1], Hp=act.shape[2], Wp=act.shape[3], Cp=act.shape[4],
                  Kp=kp, Kout=kout, Cout=cout, has_bias=int(has_bias), passes=passes())
    values.update(zip(("Z", "P", "Q"), out_size))
    values.update(zip(("T", "R", "S"), q.kernel))
    values.update(zip(("sd", "sh", "sw"), q.stride))
    values.update(zip(("dd", "dh", "dw"), q.dilation))
    return _struct(TC_GEOM, values)


def _run_fwd(rt, q, act, wp, bias, y, out_size, channels):
    m = act.shape[0] * int(np.prod(out_size))
    grid = (-(-m // TILE), -(-channels // TILE), 1)
    rt.launch(kernel(rt, "implicit_gemm_tc.cu", "igemm_tc_fwd", q.dtype), grid, (256,),
              (act, wp, bias_arg(rt, bias, q.dtype), y, _geom(q, act, out_size, channels, channels,
                                                              has_bias=bias is not None)))
    return y


def fwd(rt, q, x, w, bias):
    act = _pack_activation(rt, x, q.dtype, q.pad_lo, q.padded_size, q.padding_mode)
    wp = _pack_weight(rt, w, q.dtype, flip=False)
    return _run_fwd(rt, q, act, wp, bias, rt.empty(q.y_shape, q.dtype), q.out_size, q.c_out)


def _dgrad_stride1(rt, q, dy, w, bias):
    # dx = the stride-1 convolution of dy, padded by dilation*(k-1) - pad_lo below
    # (negative: a window inside dy), with the flipped, transposed weight
    lo = tuple(d * (k - 1) - p for d, k, p in zip(q.dilation, q.kernel, q.pad_lo))
    extent = tuple(i + d * (k - 1) for i, d, k in zip(q.in_size, q.dilation, q.kernel))
    act = _pack_activation(rt, dy, q.dtype, lo, extent, "zeros")
    wp = _pack_weight(rt, w, q.dtype, flip=True)
    return _run_fwd(rt, q, act, wp, bias, rt.empty(q.x_shape, q.dtype), q.in_size, q.c_in)


def dgrad(rt, q, dy, w, bias):
    if not all_finite(w):
        return direct.dgrad(rt, q, dy, w, bias)
    return phase_dgrad(rt, q, dy, w, bias, _dgrad_stride1)


def wgrad_splits(q) -> tuple[int, int]:
    """(splits, chunk) of wgrad's reduction over N*Z*P*Q: enough slices for
    config.cuda_target_blocks blocks, at most config.cuda_max_splits, none
    shorter than config.cuda_min_split; chunk a multiple of the stage depth."""
    red = q.n * int(np.prod(q.out_size))
    bk = stage_depth(q.dtype)
    if red == 0:
        return 1, bk
    tiles = -(-q.c_out // TILE) * -(-(int(np.prod(q.kernel)) * packed(q.c_in, q.dtype)) // TILE)
    splits = max(1, min(-(-config.cuda_target_blocks // tiles), config.cuda_max_splits, red // config.cuda_min_split))
    chunk = -(-(-(-red // splits)) // bk) * bk
    return -(-red // chunk), chunk


def wgrad(rt, q, x, dy):
    act = _pack_activation(rt, x, q.dtype, q.pad_lo, q.padded_size, q.padding_mode)
    dyp = _pack_activation(rt, dy, q.dtype, (0, 0, 0), q.out_size, "zeros")
    splits, chunk = wgrad_splits(q)
    partial = rt.empty((splits,) + q.w_shape, "float32")
    cols = int(np.prod(q.kernel)) * act.shape[-1]
    grid = (-(-q.c_out // TILE), -(-cols // TILE), splits)
    rt.launch(kernel(rt, "implicit_gemm_tc.cu", "igemm_tc_wgrad", q.dtype), grid, (256,),
              (dyp, act, partial, _geom(q, act, q.out_size, dyp.shape[-1], q.c_out, q.c_in), np.int32(splits),
               np.int32(chunk)))
    dw = rt.empty(q.w_shape, q.dtype)
    count = int(np.prod(q.w_shape))
    rt.launch(kernel(rt, "implicit_gemm.cu", "sum_splits", q.dtype), (blocks(count),), (256,),
              (partial, dw, np.int64(count), np.int32(splits)))
    return dw


def _launched(problem) -> list:
    """The kernel problems the launchers pack for: dgrad of a non-zero padding
    mode runs on the materialized problem in the accumulation type
    (``run_with``); strided dgrad on its stride-phase sub-problems, one at a
    time (a phase can pack more than the whole problem's extent)."""
    q = problem.expand(3).canonical()
    if q.op != "dgrad":
        return [q]
    if q.padding_mode != "zeros":
        q = q.materialized().with_dtype(acc_dtype(q.dtype))
    if all(s == 1 for s in q.stride):
        return [q]
    return [sub for _, sub in q.stride_phase_problems() if 0 not in sub.in_size] or [q]


def _sizes(q):
    """(pixels of the packed activation, its elements, elements of the other
    packed operand, GEMM rows) of one launched kernel problem."""
    cin, cout = packed(q.c_in, q.dtype), packed(q.c_out, q.dtype)
    taps = int(np.prod(q.kernel))
    if q.op == "dgrad":  # dy padded by dilation*(k-1) - pad: an extent of in + dilation*(k-1)
        ext = tuple(i + d * (k - 1) for i, d, k in zip(q.in_size, q.dilation, q.kernel))
        pixels = q.n * int(np.prod(ext))
        return pixels, pixels * cout, q.c_in * taps * cout, q.n * int(np.prod(q.in_size))
    pixels = q.n * int(np.prod(q.padded_size))
    other = q.n * int(np.prod(q.out_size)) * cout if q.op == "wgrad" else q.c_out * taps * cin  # dy / weight
    return pixels, pixels * cin, other, q.n * int(np.prod(q.out_size))


def workspace_bytes(problem) -> int:
    most = 0
    for q in _launched(problem):
        _, act, other, _ = _sizes(q)
        extra = wgrad_splits(q)[0] * int(np.prod(q.w_shape)) * 4 if q.op == "wgrad" else 0  # float32 partial sums
        most = max(most, (act + other) * np.dtype(q.dtype).itemsize + extra)
    return most


def supports(problem) -> list:
    q = problem.expand(3).canonical()
    launched = _launched(problem)
    pixels = max(_sizes(sub)[0] for sub in launched)
    rows = max(_sizes(sub)[3] for sub in launched)
    reasons = []
    if q.groups != 1:
        reasons.append(f"groups={q.groups}: the tensor-core kernels run ungrouped convolutions")
    need = workspace_bytes(problem)
    if need > config.cuda_workspace_bytes:  # (implicit_gemm needs none)
        reasons.append(f"its packed operands need {need} bytes of workspace, more than CONVOPS_CUDA_WORKSPACE_BYTES "
                       f"({config.cuda_workspace_bytes})")
    if pixels >= INT32_LIMIT:
        reasons.append(f"a packed activation of {pixels} pixels: this kernel indexes pixels in 32 bits (< 2^31)")
    if rows >= INT32_LIMIT:
        reasons.append(f"{rows} GEMM rows: this kernel indexes rows in 32 bits (< 2^31)")
    cols = int(np.prod(q.kernel)) * packed(q.c_in, q.dtype) if q.op == "wgrad" else (
        q.c_in if q.op == "dgrad" else q.c_out)
    if -(-cols // TILE) > 65535:
        reasons.append(f"{cols} GEMM columns need more than 65535 tiles of {TILE} (grid y)")
    return reasons


TF32X3_TOLERANCE = 1e-4


def tolerance(problem) -> float:
    """float32 opted into less accuracy (config): TF32 is held to float16's
    tolerance, 3xTF32 to TF32X3_TOLERANCE; otherwise the dtype's."""
    from ..tolerance import TOLERANCE
    if problem.dtype == "float32" and passes() == 1:
        return TOLERANCE["float16"]
    if problem.dtype == "float32" and passes() == 3:
        return TF32X3_TOLERANCE
    return TOLERANCE[problem.dtype]


register_algorithm("implicit_gemm_tc", Passes(fwd, dgrad, wgrad), supports=supports, workspace_bytes=workspace_bytes,
                   tolerance=tolerance, dtypes=DTYPES, min_arch=80,
                   description="CUDA implicit GEMM on tensor cores (sm_80+): mma.sync m16n8k16 float16 / "
                               "float32 as six TF32 products of three-piece splits, ldmatrix, 3-stage cp.async, XOR-swizzled shared tiles; operands packed "
                               "channels-last into the workspace")
