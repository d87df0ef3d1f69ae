"""``depthwise``: groups == C (one input channel per group), any channel
multiplier m = K / C, any stride, dilation and zero padding.

Memory-bound, so it streams: a parallel iteration owns one (image, input
channel) pair and makes one pass over that plane from memory.  It first
copies the plane into a zero-padded scratch plane split into ``stride``
column phases (phase f holds padded columns f, f + s, f + 2s, ...), so every
tap of every output row is a contiguous, in-range slice: no bounds tests,
unit-stride loads even for strided convolutions, three taps fused per pass
over the output row.  Output channel k = c*m + j reads input channel c.

    fwd    y[n, c*m + j] = sum_taps w[c*m + j, 0, tap] * x[n, c] shifted
    dgrad  the adjoint, accumulated in the iteration's padded phase plane, then cropped
    wgrad  dw[c*m + j]   = sum over n and rows of row dot products (iteration = c)

The unit-stride dgrad kernels gather: each input row is a correlation of a
zero-extended output-gradient row with the flipped taps.  That multiplies
weights by zeros that are not outputs, which is exact only for finite
weights; with a NaN or infinite weight dgrad scatters tap by tap over the
real outputs instead, so the NaN reaches exactly the inputs it reaches in
the reference.

Scratch: each parallel iteration holds one padded plane (plus a row), so the
workspace is (threads x padded plane); a problem whose planes do not fit
the workspace cap is declined (``direct`` runs it).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange, uint64

from .. import config
from .common import Kernels, all_finite, kernel_problem, register_algorithm
from .rows import FASTMATH, axpy


@njit(inline="always")
def _phase_shape(D, H, W, pad, hi, stride2):
    """(phases, D', H', W') of a padded plane split into stride2 column phases."""
    Dp, Hp, Wp = D + pad[0] + hi[0], H + pad[1] + hi[1], W + pad[2] + hi[2]
    return stride2, Dp, Hp, (Wp + stride2 - 1) // stride2


@njit(inline="always")
def _tap_columns(S, dilation, stride):
    """Column phase and shift of each tap along the last axis (divisions hoisted
    out of the loops: a division per tap per row costs more than the FMAs)."""
    phase = np.empty(S, np.uint64)
    shift = np.empty(S, np.uint64)
    for s in range(S):
        phase[s] = (s * dilation) % stride
        shift[s] = (s * dilation) // stride
    return phase, shift


@njit(inline="always")
def _phase_span(pad2, f, st, W):
    """Columns of phase f holding image columns: the phase's padded column
    i*st + f is image column i*st + f - pad2; returns (first i, its image
    column, how many)."""
    first = (pad2 - f + st - 1) // st if pad2 > f else 0
    start = first * st + f - pad2
    return first, start, (W - start + st - 1) // st if start < W else 0


@njit(inline="always")
def _phase_pair(pad2, W):
    """Stride 2: (phase holding image columns 0, 2, 4, ..., its first index,
    phase holding 1, 3, 5, ..., its first index) -- for the loops of _load
    and _store that fill or read both phases at once."""
    fa, fb = (0, 1) if _phase_span(pad2, 0, 2, W)[1] == 0 else (1, 0)
    return fa, _phase_span(pad2, fa, 2, W)[0], fb, _phase_span(pad2, fb, 2, W)[0]


@njit(inline="always")
def _load(plane, pad, buf):
    """buf[f, z, y, i] = padded plane[z, y, i*stride + f] (zero outside the plane)."""
    st = buf.shape[0]
    if st == 1 and plane.shape[0] == buf.shape[1]:  # no depth padding: zero only the border
        buf[0, :, :pad[1]] = 0
        buf[0, :, pad[1] + plane.shape[1]:] = 0
        buf[0, :, :, :pad[2]] = 0
        buf[0, :, :, pad[2] + plane.shape[2]:] = 0
    else:
        buf[:] = 0
    D, H, W = plane.shape
    if st == 2 and W >= 2:
        # One loop fills both phases (even and odd image columns): LLVM turns
        # it into permutes; the strided slice copy below became a gather or
        # scalar code, and was most of a stride-2 layer's time.
        fa, ia, fb, ib = _phase_pair(pad[2], W)
        half = W // 2
        for z in range(D):
            for yy in range(H):
                src = plane[z, yy]
                ev = buf[fa, z + pad[0], yy + pad[1], ia:ia + half]
                od = buf[fb, z + pad[0], yy + pad[1], ib:ib + half]
                for i in range(half):
                    ev[i] = src[2 * i]
                    od[i] = src[2 * i + 1]
                if W % 2:
                    buf[fa, z + pad[0], yy + pad[1], ia + half] = src[W - 1]
        return
    for z in range(D):
        for yy in range(H):
            src = plane[z, yy]
            for f in range(st):
                first, start, count = _phase_span(pad[2], f, st, W)
                if count <= 0:
                    continue
                dst = buf[f, z + pad[0], yy + pad[1], first:first + count]
                if st == 1:
                    dst[:] = src[start:start + count]
                else:
                    dst[:] = src[start::st][:count]


@njit(inline="always")
def _store(buf, pad, plane, bias):
    """plane[z, y, x] = buf at the padded position of (z, y, x) (+ bias): the crop
    that is the adjoint of zero padding."""
    st = buf.shape[0]
    D, H, W = plane.shape
    if st == 2 and W >= 2:  # both phases in one loop, as in _load
        fa, ia, fb, ib = _phase_pair(pad[2], W)
        half = W // 2
        for z in range(D):
            for yy in range(H):
                dst = plane[z, yy]
                ev = buf[fa, z + pad[0], yy + pad[1], ia:ia + half]
                od = buf[fb, z + pad[0], yy + pad[1], ib:ib + half]
                for i in range(half):
                    dst[2 * i] = ev[i] + bias
                    dst[2 * i + 1] = od[i] + bias
                if W % 2:
                    dst[W - 1] = buf[fa, z + pad[0], yy + pad[1], ia + half] + bias
        return
    for z in range(D):
        for yy in range(H):
            dst = plane[z, yy]
            for f in range(st):
                first, start, count = _phase_span(pad[2], f, st, W)
                if count <= 0:
                    continue
                src = buf[f, z + pad[0], yy + pad[1], first:first + count]
                out = dst[start::st]  # no temporary for src + bias: a loop
                for i in range(count):
                    out[i] = src[i] + bias


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _fwd(x, w, bias, y, stride, dilation, pad, hi):
    N, C, D, H, W = x.shape
    K, _, T, R, S = w.shape
    P0, P1, P2 = y.shape[2], y.shape[3], y.shape[4]
    m = K // C
    st = stride[2]
    phase, shift = _tap_columns(S, dilation[2], st)
    for job in prange(N * C):
        n = job // C
        c = job % C
        buf = np.empty(_phase_shape(D, H, W, pad, hi, st), dtype=x.dtype)
        _load(x[n, c], pad, buf)
        for j in range(m):
            k = c * m + j
            b = bias[k] if bias.size else y.dtype.type(0)
            for p0 in range(P0):
                for p1 in range(P1):
                    out = y[n, k, p0, p1]
                    out[:] = b
                    for t in range(T):
                        iz = p0 * stride[0] + t * dilation[0]
                        for r in range(R):
                            iy = p1 * stride[1] + r * dilation[1]
                            # contiguous 1-D phase rows, unsigned indices: no wraparound test, unit stride
                            wr = w[k, 0, t, r]
                            s = 0
                            while s + 2 < S:
                                x0, x1, x2 = buf[phase[s], iz, iy], buf[phase[s + 1], iz, iy], buf[phase[s + 2], iz, iy]
                                o0, o1, o2 = shift[s], shift[s + 1], shift[s + 2]
                                a0, a1, a2 = wr[s], wr[s + 1], wr[s + 2]
                                for q in range(uint64(P2)):
                                    out[q] += a0 * x0[q + o0] + a1 * x1[q + o1] + a2 * x2[q + o2]
                                s += 3
                            while s < S:
                                x0, o0, a0 = buf[phase[s], iz, iy], shift[s], wr[s]
                                for q in range(uint64(P2)):
                                    out[q] += a0 * x0[q + o0]
                                s += 1


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _fwd_3x3(x, w, bias, y, stride, dilation, pad, hi):
    """_fwd for the common case, R = S = 3 at unit column stride: all nine taps
    of a kernel plane in one pass over the output row, from three row views
    (a kernel of its own: inside the generic one LLVM did not vectorize it)."""
    N, C, D, H, W = x.shape
    K, _, T, R, S = w.shape
    P0, P1, P2 = y.shape[2], y.shape[3], y.shape[4]
    m = K // C
    e1 = uint64(dilation[2])
    e2 = e1 + e1
    for job in prange(N * C):
        n = job // C
        c = job % C
        buf = np.empty(_phase_shape(D, H, W, pad, hi, 1), dtype=x.dtype)
        _load(x[n, c], pad, buf)
        plane = buf[0]
        for j in range(m):
            k = c * m + j
            b = bias[k] if bias.size else y.dtype.type(0)
            for p0 in range(P0):
                for t in range(T):
                    iz = p0 * stride[0] + t * dilation[0]
                    wt = w[k, 0, t]
                    w00, w01, w02 = wt[0, 0], wt[0, 1], wt[0, 2]
                    w10, w11, w12 = wt[1, 0], wt[1, 1], wt[1, 2]
                    w20, w21, w22 = wt[2, 0], wt[2, 1], wt[2, 2]
                    for p1 in range(P1):
                        out = y[n, k, p0, p1]
                        iy = p1 * stride[1]
                        ra = plane[iz, iy]
                        rb = plane[iz, iy + dilation[1]]
                        rc = plane[iz, iy + 2 * dilation[1]]
                        if t == 0:
                            for q in range(uint64(P2)):
                                out[q] = (b + w00 * ra[q] + w01 * ra[q + e1] + w02 * ra[q + e2]
                                          + w10 * rb[q] + w11 * rb[q + e1] + w12 * rb[q + e2]
                                          + w20 * rc[q] + w21 * rc[q + e1] + w22 * rc[q + e2])
                        else:
                            for q in range(uint64(P2)):
                                out[q] += (w00 * ra[q] + w01 * ra[q + e1] + w02 * ra[q + e2]
                                           + w10 * rb[q] + w11 * rb[q + e1] + w12 * rb[q + e2]
                                           + w20 * rc[q] + w21 * rc[q + e1] + w22 * rc[q + e2])


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _fwd_3x3_strided(x, w, bias, y, stride, dilation, pad, hi):
    """_fwd_3x3 at a column stride > 1: tap s reads column phase phase[s] at
    shift[s], so each of the nine taps is its own unit-stride row view
    (nine views measured 15% slower than _fwd_3x3's three at unit stride,
    and 1.3-1.5x faster than _fwd at stride 2)."""
    N, C, D, H, W = x.shape
    K, _, T, R, S = w.shape
    P0, P1, P2 = y.shape[2], y.shape[3], y.shape[4]
    m = K // C
    st = stride[2]
    phase, shift = _tap_columns(3, dilation[2], st)
    e0, e1, e2 = shift[0], shift[1], shift[2]
    for job in prange(N * C):
        n = job // C
        c = job % C
        buf = np.empty(_phase_shape(D, H, W, pad, hi, st), dtype=x.dtype)
        _load(x[n, c], pad, buf)
        pa, pb, pc = buf[phase[0]], buf[phase[1]], buf[phase[2]]
        for j in range(m):
            k = c * m + j
            b = bias[k] if bias.size else y.dtype.type(0)
            for p0 in range(P0):
                for t in range(T):
                    iz = p0 * stride[0] + t * dilation[0]
                    wt = w[k, 0, t]
                    w00, w01, w02 = wt[0, 0], wt[0, 1], wt[0, 2]
                    w10, w11, w12 = wt[1, 0], wt[1, 1], wt[1, 2]
                    w20, w21, w22 = wt[2, 0], wt[2, 1], wt[2, 2]
                    for p1 in range(P1):
                        out = y[n, k, p0, p1]
                        iy = p1 * stride[1]
                        iy1 = iy + dilation[1]
                        iy2 = iy1 + dilation[1]
                        a0, a1, a2 = pa[iz, iy], pb[iz, iy], pc[iz, iy]
                        b0, b1, b2 = pa[iz, iy1], pb[iz, iy1], pc[iz, iy1]
                        c0, c1, c2 = pa[iz, iy2], pb[iz, iy2], pc[iz, iy2]
                        if t == 0:
                            for q in range(uint64(P2)):
                                out[q] = (b + w00 * a0[q + e0] + w01 * a1[q + e1] + w02 * a2[q + e2]
                                          + w10 * b0[q + e0] + w11 * b1[q + e1] + w12 * b2[q + e2]
                                          + w20 * c0[q + e0] + w21 * c1[q + e1] + w22 * c2[q + e2])
                        else:
                            for q in range(uint64(P2)):
                                out[q] += (w00 * a0[q + e0] + w01 * a1[q + e1] + w02 * a2[q + e2]
                                           + w10 * b0[q + e0] + w11 * b1[q + e1] + w12 * b2[q + e2]
                                           + w20 * c0[q + e0] + w21 * c1[q + e1] + w22 * c2[q + e2])


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _dgrad(dy, w, bias, dx, stride, dilation, pad, hi, gather):
    """Scatter of each output-gradient row into the padded phase plane.  With
    ``gather`` (unit column stride, finite weights) the row is first copied
    into a zero-padded scratch row so that three taps become one in-range
    pass."""
    N, C, D, H, W = dx.shape
    K, _, T, R, S = w.shape
    P0, P1, P2 = dy.shape[2], dy.shape[3], dy.shape[4]
    m = K // C
    st = stride[2]
    d2 = dilation[2]
    phase, shift = _tap_columns(S, d2, st)
    span = (S - 1) * d2
    gather = gather and st == 1
    for job in prange(N * C):
        n = job // C
        c = job % C
        buf = np.zeros(_phase_shape(D, H, W, pad, hi, st), dtype=dx.dtype)
        grow_padded = np.zeros(P2 + 2 * span, dtype=dx.dtype)
        for j in range(m):
            k = c * m + j
            for p0 in range(P0):
                for p1 in range(P1):
                    grow = dy[n, k, p0, p1]
                    if gather:
                        grow_padded[span:span + P2] = grow
                    for t in range(T):
                        iz = p0 * stride[0] + t * dilation[0]
                        for r in range(R):
                            iy = p1 * stride[1] + r * dilation[1]
                            wr = w[k, 0, t, r]
                            if gather:
                                # buf[iy, i] += sum_s wr[s] * grow[i - s*d2], i in [0, P2 + span)
                                out = buf[0, iz, iy]
                                s = 0
                                while s + 2 < S:
                                    o0, o1, o2 = uint64(span - s * d2), uint64(span - (s + 1) * d2), uint64(span - (s + 2) * d2)
                                    a0, a1, a2 = wr[s], wr[s + 1], wr[s + 2]
                                    for i in range(uint64(P2 + span)):
                                        out[i] += a0 * grow_padded[i + o0] + a1 * grow_padded[i + o1] + a2 * grow_padded[i + o2]
                                    s += 3
                                while s < S:
                                    o0, a0 = uint64(span - s * d2), wr[s]
                                    for i in range(uint64(P2 + span)):
                                        out[i] += a0 * grow_padded[i + o0]
                                    s += 1
                            else:
                                for s in range(S):
                                    axpy(buf[phase[s], iz, iy, shift[s]:shift[s] + P2], grow, wr[s])
        _store(buf, pad, dx[n, c], bias[c] if bias.size else dx.dtype.type(0))


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _wgrad(x, dy, dw, stride, dilation, pad, hi):
    N, C, D, H, W = x.shape
    K, _, T, R, S = dw.shape
    P0, P1, P2 = dy.shape[2], dy.shape[3], dy.shape[4]
    m = K // C
    st = stride[2]
    phase, shift = _tap_columns(S, dilation[2], st)
    for c in prange(C):
        acc = np.zeros((m, T, R, S), dtype=dw.dtype)
        buf = np.empty(_phase_shape(D, H, W, pad, hi, st), dtype=x.dtype)
        for n in range(N):
            _load(x[n, c], pad, buf)
            for j in range(m):
                for p0 in range(P0):
                    for p1 in range(P1):
                        grow = dy[n, c * m + j, p0, p1]
                        for t in range(T):
                            iz = p0 * stride[0] + t * dilation[0]
                            for r in range(R):
                                iy = p1 * stride[1] + r * dilation[1]
                                for s in range(S):
                                    x0, o0 = buf[phase[s], iz, iy], shift[s]
                                    total = dw.dtype.type(0)
                                    for q in range(uint64(P2)):
                                        total += grow[q] * x0[q + o0]
                                    acc[j, t, r, s] += total
        for j in range(m):
            dw[c * m + j, 0] = acc[j]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _dgrad_3x3(dy, w, bias, dx, dilation, pad):
    """_dgrad for R = S = 3 and unit stride, in gather form: with the output
    gradient plane copied into a box padded by the kernel span on every side,
    dx[z, y, x] = sum_taps w[tap] * dyp[z + pad0 + span0 - t*d0, y + ..., x + ...],
    nine taps fused per pass over each dx row, written once (+ bias)."""
    N, C, D, H, W = dx.shape
    K, _, T, R, S = w.shape
    P0, P1, P2 = dy.shape[2], dy.shape[3], dy.shape[4]
    m = K // C
    sp0, sp1, sp2 = dilation[0] * (T - 1), dilation[1] * 2, dilation[2] * 2
    e1 = uint64(dilation[2])
    e2 = e1 + e1
    for job in prange(N * C):
        n = job // C
        c = job % C
        # big enough for every read: a truncated output (P below the natural
        # size) leaves reads past P, which must find zeros
        dyp = np.zeros((max(P0 + 2 * sp0, D + pad[0] + sp0), max(P1 + 2 * sp1, H + pad[1] + sp1),
                        max(P2 + 2 * sp2, W + pad[2] + sp2)), dtype=dx.dtype)
        plane = dx[n, c]
        for j in range(m):
            k = c * m + j
            dyp[sp0:sp0 + P0, sp1:sp1 + P1, sp2:sp2 + P2] = dy[n, k]
            for z in range(D):
                for t in range(T):
                    zz = z + pad[0] + sp0 - t * dilation[0]
                    wt = w[k, 0, t]
                    # flipped taps: column offset of tap s is sp2 - s*d2 (+ pad2)
                    w00, w01, w02 = wt[0, 2], wt[0, 1], wt[0, 0]
                    w10, w11, w12 = wt[1, 2], wt[1, 1], wt[1, 0]
                    w20, w21, w22 = wt[2, 2], wt[2, 1], wt[2, 0]
                    first = j == 0 and t == 0
                    b = (bias[c] if bias.size else dx.dtype.type(0)) if first else dx.dtype.type(0)
                    for yy in range(H):
                        base = yy + pad[1] + sp1
                        ra = dyp[zz, base][pad[2]:]
                        rb = dyp[zz, base - dilation[1]][pad[2]:]
                        rc = dyp[zz, base - 2 * dilation[1]][pad[2]:]
                        out = plane[z, yy]
                        # row r of the kernel reads dyp row base - r*d1: ra is r = 0, rb r = 1, rc r = 2
                        if first:
                            for q in range(uint64(W)):
                                out[q] = (b + w00 * ra[q] + w01 * ra[q + e1] + w02 * ra[q + e2]
                                          + w10 * rb[q] + w11 * rb[q + e1] + w12 * rb[q + e2]
                                          + w20 * rc[q] + w21 * rc[q + e1] + w22 * rc[q + e2])
                        else:
                            for q in range(uint64(W)):
                                out[q] += (w00 * ra[q] + w01 * ra[q + e1] + w02 * ra[q + e2]
                                           + w10 * rb[q] + w11 * rb[q + e1] + w12 * rb[q + e2]
                                           + w20 * rc[q] + w21 * rc[q + e1] + w22 * rc[q + e2])


def fwd(q, x, w, bias):
    y = np.empty(q.y_shape, x.dtype)
    if q.kernel[1:] != (3, 3):
        kernel = _fwd
    else:
        kernel = _fwd_3x3 if q.stride[2] == 1 else _fwd_3x3_strided
    kernel(x, w, bias, y, q.stride, q.dilation, q.pad_lo, q.reached_high_pad)
    return y


def _is_3x3(q, strides) -> bool:
    return q.kernel[1:] == (3, 3) and all(s == 1 for s in strides)


def dgrad(q, dy, w, bias):
    dx = np.empty(q.x_shape, dy.dtype)
    finite = all_finite(w)
    if finite and _is_3x3(q, q.stride):
        _dgrad_3x3(dy, w, bias, dx, q.dilation, q.pad_lo)
    else:
        _dgrad(dy, w, bias, dx, q.stride, q.dilation, q.pad_lo, q.reached_high_pad, finite)
    return dx


def wgrad(q, x, dy):
    dw = np.empty(q.w_shape, x.dtype)
    # (dedicated 3x3 variants -- nine running sums, or column-wise partial
    # sums -- were measured slower than this generic kernel)
    _wgrad(x, dy, dw, q.stride, q.dilation, q.pad_lo, q.reached_high_pad)
    return dw


def workspace_bytes(problem) -> int:
    """At most: one padded plane (phase-split, or the 3x3 dgrad's output-gradient
    box padded by the kernel span) and one padded row per thread."""
    q = kernel_problem(problem)
    span = tuple(d * (k - 1) for d, k in zip(q.dilation, q.kernel))
    padded = tuple(max(i + lo + hi, o + 2 * sp) for i, lo, hi, o, sp in
                   zip(q.in_size, q.pad_lo, q.reached_high_pad, q.out_size, span))
    plane = padded[0] * padded[1] * (padded[2] + q.stride[2])
    row = q.out_size[2] + 2 * span[2]
    return numba.config.NUMBA_NUM_THREADS * (plane + row) * np.dtype(q.dtype).itemsize


def _supports(p):
    if not p.is_depthwise:
        return [f"not depthwise: groups={p.groups}, C={p.c_in} (needs groups == C)"]
    need = workspace_bytes(p)
    if need > config.cpu_workspace_bytes:
        return [f"needs {need} bytes of padded planes (one per thread), over the workspace cap "
                f"{config.cpu_workspace_bytes} (config.cpu_workspace_bytes)"]
    return []


register_algorithm("depthwise", Kernels(fwd, dgrad, wgrad), supports=_supports, workspace_bytes=workspace_bytes,
                   description="streaming depthwise (groups == C, any multiplier) on padded phase planes")
