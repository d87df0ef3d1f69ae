"""Winograd minimal filtering F(2x2, 3x3) (Lavin & Gray, 2015) for dense
convolutions whose last two filter dims are 3x3 with stride 1 there: 2-D,
dilated (any dilation), and 3-D with T x 3 x 3 filters (any depth stride,
dilation and padding).  Forward; dgrad as the forward convolution of dy
with the flipped, channel-transposed filter (depth stride 1); wgrad through
the adjoint transforms (dW = G^T [sum over tiles (A g A^T) (B^T d B)^T] G).

Each 4x4 input tile d (stride 2, overlapping by 2) gives a 2x2 output tile

    Y = A^T [ sum_c (G g_kc G^T) * (B^T d_c B) ] A          (* elementwise)

so the 9 multiplications per output per channel pair become 16 per 2x2 tile
(2.25x fewer), done as 16 GEMMs (K x C) @ (C x tiles) on BLAS, one per
transform-domain position.  A dilated layer is one such convolution per
output phase (rows and columns dil apart: the taps of a phase are adjacent
in its sub-image); a 3-D layer sums its depth taps inside the GEMMs, whose
reduction runs over (tap, channel) pairs.

Work is split into chunks of whole tile rows (a fixed size, decided by the
problem and the workspace cap's share per pool thread; a row wider than a
chunk is split into column blocks): a
parallel iteration gathers its rows' inputs, transforms them into its
workspace, runs the 16 GEMMs on one BLAS thread while the chunk is in cache,
and transforms the products back into the output.  Every output element is
computed by exactly one iteration in a fixed order, so results are bitwise
identical across runs and thread counts; wgrad sums its chunks into a fixed
number of partial-sum slots, each in chunk order.

The transforms have only 0, +-1 and +-1/2 (G) as coefficients, so the error
stays within a small factor of direct summation's (tests/test_winograd.py
measures it against the reference at 512 channels).  Unlike direct
summation, a NaN or infinity in one input element would reach whole 2x2
output tiles around it (inf - inf in the transforms), and finite values near
the dtype's limit can overflow in the transforms where direct summation does
not; so operands that are not all finite, and calls whose result is not all
finite, run through im2col's kernels instead (direct's where im2col's do not
fit the workspace cap; same call, exact IEEE propagation).

Limits (``supports``): filters (T x) 3 x 3, stride 1 in height and width
(and in depth for dgrad), groups 1.  Strided and transposed layers reach it
through the phase algorithms (polyphase, subpixel) where their stride-1
sub-problems fit.
"""

from __future__ import annotations

import math

from typing import NamedTuple

import numpy as np
from numba import get_thread_id, njit, prange

from .. import config
from .blas import THREADS_LOCAL, gemm, gemm_for, single_threaded_blas
from . import direct, im2col
from .im2col import _threads  # workspace rows: the whole Numba pool
from .common import Kernels, kernel_problem, register_algorithm

FASTMATH = set(config.cpu_fastmath)

# The filter transforms run in float64, (k, c) pair by pair, rounded once.
# G (4x3) = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].  (As
# NumPy einsums over float64 blocks they took 1.3 ms for 64 x 64 filters and
# 4.5 ms for 128 x 128, a seventh of the layer.)


@njit(inline="always")
def _g3(a, b, c):
    """G (a, b, c): the 4 values of a length-3 vector's filter transform."""
    return a, 0.5 * (a + b + c), 0.5 * (a - b + c), c


@njit(parallel=True, cache=True)
def _filter_transform(w3, u):
    K, C = w3.shape[0], w3.shape[1]
    for k in prange(K):
        t = np.empty((4, 3))
        for c in range(C):
            for s in range(3):  # G g: columns
                t[0, s], t[1, s], t[2, s], t[3, s] = _g3(np.float64(w3[k, c, 0, s]), np.float64(w3[k, c, 1, s]),
                                                         np.float64(w3[k, c, 2, s]))
            for a in range(4):  # (G g) G^T: rows
                v0, v1, v2, v3 = _g3(t[a, 0], t[a, 1], t[a, 2])
                u[4 * a, k, c] = v0
                u[4 * a + 1, k, c] = v1
                u[4 * a + 2, k, c] = v2
                u[4 * a + 3, k, c] = v3


def filter_transform(w3: np.ndarray) -> np.ndarray:
    """(K, C, 3, 3) filters -> (16, K, C) transform-domain filters G g G^T,
    computed in float64 and rounded once to the compute dtype (an overflow
    gives inf: the caller sees a non-finite result)."""
    K, C = w3.shape[:2]
    u = np.empty((16, K, C), w3.dtype)
    _filter_transform(np.ascontiguousarray(w3), u)
    return u


@njit(inline="always")
def _gt4(a, b, c, d):
    """G^T (a, b, c, d): the adjoint of _g3."""
    return a + 0.5 * (b + c), 0.5 * (b - c), 0.5 * (b + c) + d


@njit(parallel=True, cache=True)
def _filter_gradient(partial, dw):
    slots, K, C = partial.shape[0], partial.shape[2], partial.shape[3]
    for k in prange(K):
        du = np.empty(16)
        t = np.empty((4, 3))
        for c in range(C):
            for xi in range(16):  # the slots' sum, in order
                acc = np.float64(partial[0, xi, k, c])
                for slot in range(1, slots):
                    acc += partial[slot, xi, k, c]
                du[xi] = acc
            for a in range(4):  # dU G: rows
                t[a, 0], t[a, 1], t[a, 2] = _gt4(du[4 * a], du[4 * a + 1], du[4 * a + 2], du[4 * a + 3])
            for s in range(3):  # G^T (dU G): columns
                dw[k, c, 0, s], dw[k, c, 1, s], dw[k, c, 2, s] = _gt4(t[0, s], t[1, s], t[2, s], t[3, s])


def filter_gradient(partial: np.ndarray, dtype) -> np.ndarray:
    """(slots, 16, K, C) gradients of the transformed filters -> (K, C, 3, 3)
    dW = G^T (sum of the slots, in order, in float64) G, rounded once."""
    _, _, K, C = partial.shape
    dw = np.empty((K, C, 3, 3), dtype)
    _filter_gradient(partial, dw)
    return dw


# Transform-domain planes (one per position xi) sit this many elements apart
# beyond their size: planes a multiple of 4 KiB apart would share cache sets
# and the 16 streams of a transform evict each other (3x slower measured).
PLANE_GAP = 16


# ---- the kernels (fwd, dgrad, wgrad): chunks of whole tile rows, transforms as long vector loops ----
#
# Tiles are numbered in rows of tw + 1 (one "junk" tile past the last real
# one), so that within a chunk the 4x4 tile t starts at column 2t of a
# gathered copy of its 4 input rows whose rows are 2*(tw + 1) columns long,
# split into even and odd columns: every transform is then a loop over all
# of the chunk's tiles with stride-1 reads, which LLVM vectorizes.  (The
# tile-by-tile transforms before were scalar: 6.8 ms serial for ResNet's c64
# 56x56 input transform, now 1.6 ms plus the gather.)  The junk tiles'
# results are computed and never stored (wgrad: their dy tiles are zero).
# Each loop writes one plane, so LLVM's run-time alias checks stay few
# enough for it to vectorize.


@njit(inline="always")
def _tile_row(g, geo):
    """(n, z, fh, ty) of tile row g = ((n*Z + z)*dh + fh)*th + ty."""
    Z, dh, th = geo[0], geo[1], geo[2]
    ty = g % th
    g //= th
    fh = g % dh
    g //= dh
    return g // Z, g % Z, fh, ty


@njit(cache=True, fastmath=FASTMATH)
def _gather_rows(x, geo, g0, rows, fw, tx0, cols, rf, rs):
    """Input rows of the chunk's tiles, split by column parity: for channel
    cv = t*C + c (depth tap t, channel c), row i = 0..3 of the tiles of tile
    row g = g0 + gl (n, z, fh, ty), j = 0..2*cols + 1,

        rf[((cv*4 + i)*2 + j%2)*rs + gl*(cols + 1) + j//2]
            = x[n, c, z*sd + t*dd - pd, dh*(2ty + i) + fh - ph, dw*(2*tx0 + j) + fw - pw]

    (zero outside x), and one zero after each plane's last row, which the
    last junk tile reads.  The parity split lets the transforms read with
    stride 1 (stride-2 reads became gathers, 3x slower).
    geo = (Z, dh, th, T, sd, dd, dw, pd, ph, pw); x (N, C, D, H, W)."""
    C, D, H, W = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    T, sd, dd, dh, dw = geo[3], geo[4], geo[5], geo[1], geo[6]
    pd, ph, pw = geo[7], geo[8], geo[9]
    twv = cols + 1
    xf = x.reshape(-1)
    step = 2 * dw  # x columns between a parity's elements
    shift = step * tx0 + fw - pw  # x column of j = 0
    h_lo = min(twv, max(0, (step - 1 - shift) // step))  # first h with 0 <= shift + step*h
    h_hi = max(h_lo, min(twv, (W - dw - shift + step - 1) // step))  # h < h_hi: shift + step*h + dw < W
    zero = x.dtype.type(0)
    for gl in range(rows):  # tile row outermost: its indices once (divisions are slow)
        n, z, fh, ty = _tile_row(g0 + gl, geo)
        for t in range(T):
            d = z * sd + t * dd - pd
            for c in range(C):
                for i in range(4):
                    base = ((t * C + c) * 4 + i) * 2 * rs
                    r = dh * (2 * ty + i) + fh - ph
                    ev = rf[base + gl * twv:base + (gl + 1) * twv]
                    od = rf[base + rs + gl * twv:base + rs + (gl + 1) * twv]
                    if r < 0 or r >= H or d < 0 or d >= D:
                        for h in range(twv):
                            ev[h] = zero
                            od[h] = zero
                        continue
                    row = (((n * C + c) * D + d) * H + r) * W
                    m = h_hi - h_lo
                    if dw == 1:
                        src = xf[row + shift + 2 * h_lo:row + shift + 2 * h_hi]
                        e_mid = ev[h_lo:h_hi]
                        o_mid = od[h_lo:h_hi]
                        for h in range(m):  # both parities in one loop: permutes, not gathers
                            e_mid[h] = src[2 * h]
                            o_mid[h] = src[2 * h + 1]
                    else:
                        for h in range(h_lo, h_hi):
                            ev[h] = xf[row + shift + step * h]
                            od[h] = xf[row + shift + step * h + dw]
                    for e in range(twv - m):  # the edges: checked reads
                        h = e if e < h_lo else e - h_lo + h_hi
                        col = shift + step * h
                        ev[h] = xf[row + col] if 0 <= col < W else zero
                        od[h] = xf[row + col + dw] if 0 <= col + dw < W else zero
    for cv in range(T * C * 4):
        base = cv * 2 * rs
        rf[base + rows * twv] = zero
        rf[base + rs + rows * twv] = zero


@njit(inline="always", fastmath=FASTMATH)
def _v_plane(a0, a1, b0, b1, row_plus, a_off, b_off, col_plus, out, n):
    """out[t] = u_a[t + a_off] +- u_b[t + b_off], u_a = a0 +- a1 (the two
    rows' planes of column a's parity), u_b likewise: one of the 16 elements
    of B^T d B for n tiles (the signs are literals at each call)."""
    for t in range(n):
        ua = a0[t + a_off] + a1[t + a_off] if row_plus else a0[t + a_off] - a1[t + a_off]
        ub = b0[t + b_off] + b1[t + b_off] if row_plus else b0[t + b_off] - b1[t + b_off]
        out[t] = ua + ub if col_plus else ua - ub


@njit(inline="always", fastmath=FASTMATH)
def _v_row(pe, po, qe, qo, row_plus, vf, vo, vs, n):
    """Elements 4i..4i+3 of B^T d B, row i of B^T being (row p) +- (row q),
    p's even and odd columns in pe, po: to vf[vo + j*vs + t].  Columns of B:
    (d0 - d2, d1 + d2, d2 - d1, d1 - d3); column j of tile t is
    (pe if j even else po)[t + j//2]."""
    _v_plane(pe, qe, pe, qe, row_plus, 0, 1, False, vf[vo:vo + n], n)
    _v_plane(po, qo, pe, qe, row_plus, 0, 1, True, vf[vo + vs:vo + vs + n], n)
    _v_plane(pe, qe, po, qo, row_plus, 1, 0, False, vf[vo + 2 * vs:vo + 2 * vs + n], n)
    _v_plane(po, qo, po, qo, row_plus, 0, 1, False, vf[vo + 3 * vs:vo + 3 * vs + n], n)


@njit(cache=True, fastmath=FASTMATH)
def _input_transform(rf, rs, C, width, vf, vs):
    """vf[xi*vs + c*width + t] = (B^T d B)[xi] of tile t of every channel c,
    d's rows i = 0..3 from the (c, i) planes of _gather_rows.
    B^T = [[1,0,-1,0], [0,1,1,0], [0,-1,1,0], [0,1,0,-1]]."""
    n1 = width + 1
    for c in range(C):
        o = c * 8 * rs
        e0, o0 = rf[o:o + n1], rf[o + rs:o + rs + n1]
        e1, o1 = rf[o + 2 * rs:o + 2 * rs + n1], rf[o + 3 * rs:o + 3 * rs + n1]
        e2, o2 = rf[o + 4 * rs:o + 4 * rs + n1], rf[o + 5 * rs:o + 5 * rs + n1]
        e3, o3 = rf[o + 6 * rs:o + 6 * rs + n1], rf[o + 7 * rs:o + 7 * rs + n1]
        vo = c * width
        _v_row(e0, o0, e2, o2, False, vf, vo, vs, width)
        _v_row(e1, o1, e2, o2, True, vf, vo + 4 * vs, vs, width)
        _v_row(e2, o2, e1, o1, False, vf, vo + 8 * vs, vs, width)
        _v_row(e1, o1, e3, o3, False, vf, vo + 12 * vs, vs, width)


@njit(inline="always", fastmath=FASTMATH)
def _sum3(a, b, c, b_plus, c_plus, out, n):
    """out[t] = a[t] +- b[t] +- c[t] (the signs are literals at each call)."""
    for t in range(n):
        s = a[t] + b[t] if b_plus else a[t] - b[t]
        out[t] = s + c[t] if c_plus else s - c[t]


@njit(cache=True, fastmath=FASTMATH)
def _output_transform(mf, ms, k0, kn, geo, g0, rows, fw, tx0, cols, bias, y, sf):
    """y[n, k, z, dh*(2ty + a) + fh, dw*(2tx + b) + fw] = (A^T m A)[a, b]
    (+ bias), cropped to y's extent, for output channels k0..k0+kn, tile
    rows g0..g0+rows (n, z, fh, ty) and tile columns tx0..tx0+cols, m's
    element xi of (k, tile t) at mf[xi*ms + (k - k0)*width + t], tiles in
    rows of cols + 1 (the last is junk).  A^T = [[1,1,1,0], [0,1,-1,-1]].
    sf: scratch of 6*width elements."""
    K, Z, P, Q = y.shape[1], y.shape[2], y.shape[3], y.shape[4]
    dh, dw = geo[1], geo[6]
    twv = cols + 1
    width = rows * twv
    yf = y.reshape(-1)
    q_phase = (Q - fw + dw - 1) // dw  # outputs of column phase fw
    full = max(0, min(cols, q_phase // 2 - tx0))  # tiles with both output columns
    part = 1 if full < cols and 2 * (tx0 + full) < q_phase else 0  # and one with its first only
    s0 = sf[0:width]
    s1 = sf[width:2 * width]
    s2 = sf[2 * width:3 * width]
    s3 = sf[3 * width:4 * width]
    e0 = sf[4 * width:5 * width]
    e1 = sf[5 * width:6 * width]
    first = np.empty((rows, 2), np.int64)  # y offset of (gl, a) for output channel 0, -1: past P
    for gl in range(rows):
        n, z, fh, ty = _tile_row(g0 + gl, geo)
        for a in range(2):
            p = dh * (2 * ty + a) + fh
            first[gl, a] = (((n * K * Z + z) * P + p) * Q + dw * 2 * tx0 + fw) if p < P else -1
    plane = Z * P * Q
    for k in range(kn):
        b = bias[k0 + k] if bias.size else y.dtype.type(0)
        mo = k * width
        for a in range(2):  # output row 2ty + a of the phase: row a of A^T applied to m's rows
            if a == 0:
                _sum3(mf[mo:], mf[mo + 4 * ms:], mf[mo + 8 * ms:], True, True, s0, width)
                _sum3(mf[mo + ms:], mf[mo + 5 * ms:], mf[mo + 9 * ms:], True, True, s1, width)
                _sum3(mf[mo + 2 * ms:], mf[mo + 6 * ms:], mf[mo + 10 * ms:], True, True, s2, width)
                _sum3(mf[mo + 3 * ms:], mf[mo + 7 * ms:], mf[mo + 11 * ms:], True, True, s3, width)
            else:
                _sum3(mf[mo + 4 * ms:], mf[mo + 8 * ms:], mf[mo + 12 * ms:], False, False, s0, width)
                _sum3(mf[mo + 5 * ms:], mf[mo + 9 * ms:], mf[mo + 13 * ms:], False, False, s1, width)
                _sum3(mf[mo + 6 * ms:], mf[mo + 10 * ms:], mf[mo + 14 * ms:], False, False, s2, width)
                _sum3(mf[mo + 7 * ms:], mf[mo + 11 * ms:], mf[mo + 15 * ms:], False, False, s3, width)
            _sum3(s0, s1, s2, True, True, e0, width)   # output column 2tx
            _sum3(s1, s2, s3, False, False, e1, width)  # output column 2tx + 1
            for gl in range(rows):
                if first[gl, a] < 0:
                    continue
                yrow = yf[first[gl, a] + (k0 + k) * plane:]
                te = e0[gl * twv:]
                to = e1[gl * twv:]
                if dw == 1:
                    for tx in range(full):
                        yrow[2 * tx] = te[tx] + b
                        yrow[2 * tx + 1] = to[tx] + b
                else:
                    for tx in range(full):
                        yrow[2 * dw * tx] = te[tx] + b
                        yrow[2 * dw * tx + dw] = to[tx] + b
                if part:  # an odd phase width: the last tile's first column
                    yrow[2 * dw * full] = te[full] + b


@njit(inline="always")
def _chunk_grid(n_images, Q, geo, rb, cb):
    """(tile rows, tile columns per row, column blocks, chunks) of a chunked
    Winograd convolution with output width Q."""
    th, dw = geo[2], geo[6]
    tw = ((Q + dw - 1) // dw + 1) // 2
    grows = n_images * geo[0] * geo[1] * th
    col_blocks = (tw + cb - 1) // cb
    return grows, tw, col_blocks, (grows + rb - 1) // rb * col_blocks * dw


@njit(inline="always")
def _chunk(job, grid, dw, rb, cb):
    """(first tile row, column phase, first tile column, rows, columns, width
    in tiles with the junk ones) of chunk ``job``."""
    grows, tw, col_blocks = grid[0], grid[1], grid[2]
    g0 = job // (col_blocks * dw) * rb
    tx0 = job % col_blocks * cb
    rows = min(rb, grows - g0)
    cols = min(cb, tw - tx0)
    return g0, job // col_blocks % dw, tx0, rows, cols, rows * (cols + 1)


@njit(parallel=True, cache=True)
def _winograd(fn, tl, x, u, bias, y, geo, rb, cb, kb, ws):
    """y (N, K, Z, P, Q) = the correlation of x (N, C, D, H, W) with T x 3 x 3
    filters, depth stride sd, dilation (dd, dh, dw), padding (pd, ph, pw)
    before each dim (geo = (Z, dh, th, T, sd, dd, dw, pd, ph, pw)), from
    transform-domain filters u (16, K, T*C): a 2-D F(2x2, 3x3) Winograd
    convolution per output plane and dilation phase (fh, fw), summed over
    the depth taps inside its GEMMs (their reduction is over T*C).

    Iteration = one chunk: rb tile rows (g = ((n*Z + z)*dh + fh)*th + ty) by
    cb tile columns (+ 1 junk) of one column phase fw; workspace row per
    thread: the gathered input rows (8*T*C planes: rows by column parity),
    16 planes (T*C, width) of v, 16 planes (kb, width) of m, each v and m
    plane PLANE_GAP elements past the last, then the output transform's
    scratch."""
    C = x.shape[1] * geo[3]
    K = y.shape[1]
    grid = _chunk_grid(x.shape[0], y.shape[4], geo, rb, cb)
    for job in prange(grid[3]):
        g0, fw, tx0, rows, cols, width = _chunk(job, grid, geo[6], rb, cb)
        tid = get_thread_id()
        rs = width + 1
        vs = C * width + PLANE_GAP
        rf = ws[tid, :8 * C * rs]
        vf = ws[tid, 8 * C * rs:8 * C * rs + 16 * vs]
        _gather_rows(x, geo, g0, rows, fw, tx0, cols, rf, rs)
        _input_transform(rf, rs, C, width, vf, vs)
        top = 8 * C * rs + 16 * vs
        for k0 in range(0, K, kb):
            kn = min(kb, K - k0)
            ms = kn * width + PLANE_GAP
            mf = ws[tid, top:top + 16 * ms]
            for xi in range(16):
                gemm(fn, tl, False, False, kn, width, C, 1.0, u[xi, k0:], C, vf[xi * vs:], width, 0.0,
                     mf[xi * ms:], width)
            _output_transform(mf, ms, k0, kn, geo, g0, rows, fw, tx0, cols, bias, y, ws[tid, top + 16 * ms:])


@njit(cache=True, fastmath=FASTMATH)
def _gather_grad(dy, geo, g0, rows, fw, tx0, cols, gf, gs):
    """The chunk's 2x2 output-gradient tiles, one plane per element: for
    output channel k, row a and column b of the tiles of tile row
    g = g0 + gl (n, z, fh, ty),

        gf[((k*2 + a)*2 + b)*gs + gl*(cols + 1) + tx]
            = dy[n, k, z, dh*(2ty + a) + fh, dw*(2*(tx0 + tx) + b) + fw]

    for tx < cols, zero outside dy and for the junk tile tx = cols (it
    must add nothing to the gradient).  dy (N, K, Z, P, Q)."""
    K, P, Q = dy.shape[1], dy.shape[3], dy.shape[4]
    Z, dh, dw = geo[0], geo[1], geo[6]
    twv = cols + 1
    gflat = dy.reshape(-1)
    q_phase = (Q - fw + dw - 1) // dw  # outputs of column phase fw
    full = max(0, min(cols, q_phase // 2 - tx0))  # tiles with both columns inside dy
    zero = dy.dtype.type(0)
    for gl in range(rows):
        n, z, fh, ty = _tile_row(g0 + gl, geo)
        for k in range(K):
            for a in range(2):
                base = (k * 2 + a) * 2 * gs + gl * twv
                ev = gf[base:base + twv]
                od = gf[base + gs:base + gs + twv]
                p = dh * (2 * ty + a) + fh
                if p >= P:
                    for tx in range(twv):
                        ev[tx] = zero
                        od[tx] = zero
                    continue
                row = (((n * K + k) * Z + z) * P + p) * Q + dw * 2 * tx0 + fw
                if dw == 1:
                    src = gflat[row:row + 2 * full]
                    for tx in range(full):  # both parities in one loop: permutes, not gathers
                        ev[tx] = src[2 * tx]
                        od[tx] = src[2 * tx + 1]
                else:
                    for tx in range(full):
                        ev[tx] = gflat[row + 2 * dw * tx]
                        od[tx] = gflat[row + 2 * dw * tx + dw]
                for tx in range(full, twv):  # cut tiles and the junk tile
                    inside = tx < cols and 2 * (tx0 + tx) < q_phase
                    ev[tx] = gflat[row + 2 * dw * tx] if inside else zero
                    od[tx] = zero


@njit(inline="always", fastmath=FASTMATH)
def _lin(a, b, mode, out, n):
    """out[t] = a, a + b, a - b, -b, -a, -(a + b), b - a or b (mode 0..7, a literal)."""
    for t in range(n):
        if mode == 0:
            out[t] = a[t]
        elif mode == 1:
            out[t] = a[t] + b[t]
        elif mode == 2:
            out[t] = a[t] - b[t]
        elif mode == 3:
            out[t] = -b[t]
        elif mode == 4:
            out[t] = -a[t]
        elif mode == 5:
            out[t] = -(a[t] + b[t])
        elif mode == 6:
            out[t] = b[t] - a[t]
        else:
            out[t] = b[t]


@njit(cache=True, fastmath=FASTMATH)
def _grad_transform(gf, gs, K, width, zf, zs, sf):
    """zf[xi*zs + k*width + t] = (A g A^T)[xi] for the 2x2 tiles g of every
    output channel k (the adjoint of the output transform), g's planes from
    _gather_grad.  A = [[1,0], [1,1], [1,-1], [0,-1]]: rows of A g are g0,
    g0 + g1, g0 - g1, -g1, and each row (a, b) gives (a, a + b, a - b, -b).
    sf: scratch of 4*width elements."""
    s0 = sf[0:width]
    s1 = sf[width:2 * width]
    s2 = sf[2 * width:3 * width]
    s3 = sf[3 * width:4 * width]
    for k in range(K):
        o = k * 4 * gs
        a0, b0 = gf[o:o + width], gf[o + gs:o + gs + width]  # row 0: columns 0, 1
        a1, b1 = gf[o + 2 * gs:o + 2 * gs + width], gf[o + 3 * gs:o + 3 * gs + width]  # row 1
        _lin(a0, a1, 1, s0, width)  # g0 + g1
        _lin(b0, b1, 1, s1, width)
        _lin(a0, a1, 2, s2, width)  # g0 - g1
        _lin(b0, b1, 2, s3, width)
        zo = k * width
        for i in range(4):
            if i == 0:
                ra, rb = a0, b0
            elif i == 1:
                ra, rb = s0, s1
            elif i == 2:
                ra, rb = s2, s3
            else:
                ra, rb = a1, b1  # the row is -g1: modes 4..7
            z0 = zf[zo + 4 * i * zs:zo + 4 * i * zs + width]
            z1 = zf[zo + (4 * i + 1) * zs:zo + (4 * i + 1) * zs + width]
            z2 = zf[zo + (4 * i + 2) * zs:zo + (4 * i + 2) * zs + width]
            z3 = zf[zo + (4 * i + 3) * zs:zo + (4 * i + 3) * zs + width]
            if i < 3:
                _lin(ra, rb, 0, z0, width)
                _lin(ra, rb, 1, z1, width)
                _lin(ra, rb, 2, z2, width)
                _lin(ra, rb, 3, z3, width)
            else:
                _lin(ra, rb, 4, z0, width)
                _lin(ra, rb, 5, z1, width)
                _lin(ra, rb, 6, z2, width)
                _lin(ra, rb, 7, z3, width)


@njit(parallel=True, cache=True)
def _winograd_wgrad(fn, tl, x, dy, geo, rb, cb, partial, ws):
    """partial[slot, xi] (K, T*C) = sum over the chunks j = slot (mod slots)
    of Z_j[xi] @ V_j[xi]^T: the gradient of the transform-domain filters,
    Z the transformed 2x2 tiles of dy (N, K, Z, P, Q), V the transformed 4x4
    tiles of x (N, C, D, H, W), chunks and geo as in _winograd (whole K per
    chunk).  Iteration = one slot, its chunks in order: the sums do not
    depend on the thread count.  Workspace row per thread: the gathered x
    rows, 16 planes (T*C, width) of V, the gathered dy tiles (4K planes),
    16 planes (K, width) of Z, scratch."""
    C = x.shape[1] * geo[3]
    K = dy.shape[1]
    grid = _chunk_grid(x.shape[0], dy.shape[4], geo, rb, cb)
    slots = partial.shape[0]
    for slot in prange(slots):
        tid = get_thread_id()
        for job in range(slot, grid[3], slots):
            g0, fw, tx0, rows, cols, width = _chunk(job, grid, geo[6], rb, cb)
            rs = width + 1
            vs = C * width + PLANE_GAP
            zs = K * width + PLANE_GAP
            o1 = 8 * C * rs
            o2 = o1 + 16 * vs
            o3 = o2 + 4 * K * rs
            o4 = o3 + 16 * zs
            _gather_rows(x, geo, g0, rows, fw, tx0, cols, ws[tid, :o1], rs)
            _input_transform(ws[tid, :o1], rs, C, width, ws[tid, o1:o2], vs)
            _gather_grad(dy, geo, g0, rows, fw, tx0, cols, ws[tid, o2:o3], rs)
            _grad_transform(ws[tid, o2:o3], rs, K, width, ws[tid, o3:o4], zs, ws[tid, o4:])
            vf = ws[tid, o1:o2]
            zf = ws[tid, o3:o4]
            for xi in range(16):
                gemm(fn, tl, False, True, K, C, width, 1.0, zf[xi * zs:], width, vf[xi * vs:], width, 1.0,
                     partial[slot, xi], C)


class _Conv(NamedTuple):
    """The correlation winograd's kernel runs for a pass: c_in channels
    (times T depth taps: the GEMMs' reduction), c_out output channels, output
    size, and geo = (Z, dh, th, T, sd, dd, dw, pd, ph, pw) for the kernel
    (th: tile rows per output plane and row phase)."""
    c_in: int
    c_out: int
    out_size: tuple
    geo: tuple

    @property
    def tile_columns(self) -> int:
        dw = self.geo[6]
        return (-(-self.out_size[2] // dw) + 1) // 2


def _conv(q) -> _Conv:
    """fwd: x (*) w as given; dgrad: dy (*) w flipped in every tap and
    transposed (C <-> K), padding dil*(k - 1) - pad before each dim
    (negative: cropped), stride 1."""
    T = q.kernel[0]
    dd, dh, dw = q.dilation
    if q.op != "dgrad":  # fwd, and wgrad (which correlates fwd's tiles)
        c_in, c_out, out_size, sd, pad = q.c_in, q.c_out, q.out_size, q.stride[0], q.pad_lo
    else:
        c_in, c_out, out_size, sd = q.c_out, q.c_in, q.in_size, 1
        pad = tuple(d * (k - 1) - p for d, k, p in zip(q.dilation, q.kernel, q.pad_lo))
    th = (-(-out_size[1] // dh) + 1) // 2
    return _Conv(c_in, c_out, tuple(out_size), (out_size[0], dh, th, T, sd, dd, dw) + tuple(pad))


def _chunk_budget(q, chunk_bytes=None, reserve=0) -> int:
    """Elements per thread a chunk aims for: ``chunk_bytes``
    (config.cpu_winograd_chunk_bytes by default), or less where the
    workspace cap's share per pool thread (after the transformed filters
    and ``reserve`` bytes) is smaller; ``chunk_bytes=math.inf``: that share."""
    share = max(0, config.cpu_workspace_bytes - _filter_bytes(q) - reserve) // _threads()
    chunk = config.cpu_winograd_chunk_bytes if chunk_bytes is None else chunk_bytes
    return int(min(chunk, share)) // np.dtype(q.dtype).itemsize


def _chunking(q, conv):
    """(tile rows per chunk, tile columns per chunk, output channels per
    block, workspace elements per thread) of fwd/dgrad: a chunk's arrays fill
    about config.cpu_winograd_chunk_bytes, with 16 to 512 tiles (narrower
    GEMMs run poorly); whole tile rows unless one row is over 512 tiles;
    many channels block the output channels first.  (wgrad's floor of
    max(T*C, K) tiles per chunk, _wgrad_plan, made fwd slower on c256 14x14:
    8.3 -> 9.6 ms, though faster on c128 28x28: 8.9 -> 7.6.)"""
    budget = _chunk_budget(q)
    c_in, c_out = conv.c_in * conv.geo[3], conv.c_out  # the reduction covers the depth taps

    def per_thread(tiles, kb):  # gathered rows, v, m, output scratch
        return 8 * c_in * (tiles + 1) + 16 * ((c_in + kb) * tiles + 2 * PLANE_GAP) + 6 * tiles

    budget = max(0, budget - per_thread(0, 0))  # the parts that do not grow with the tiles first
    kb = c_out
    tiles = budget // (24 * c_in + 16 * kb + 6)
    if tiles < 16:
        kb = max(1, min(c_out, (budget // 16 - 24 * c_in - 6) // 16))
        tiles = budget // (24 * c_in + 16 * kb + 6)
    tiles = min(max(tiles, 16), 512)  # the budget is a preference; supports() enforces the workspace cap
    rb, cb = _rows_and_columns(tiles, conv.tile_columns)
    return rb, cb, kb, per_thread(rb * (cb + 1), kb)


def _rows_and_columns(tiles, tw):
    """(tile rows, tile columns) of a chunk of about ``tiles`` tiles: whole
    rows of tw tiles (+ 1 junk), or one block of a row wider than that."""
    if tw + 1 <= tiles:
        return max(1, tiles // (tw + 1)), tw
    return 1, tiles - 1


def _chunk_count(q, conv, rb, cb):
    """Chunks (jobs) of _winograd/_winograd_wgrad."""
    Z, dh, th, dw = conv.geo[0], conv.geo[1], conv.geo[2], conv.geo[6]
    return -(-(q.n * Z * dh * th) // rb) * -(-conv.tile_columns // cb) * dw


def _run(q, a, u, bias):
    """The pass's correlation (_conv) of a (N, C, D, H, W) with the
    transform-domain filters u (16, K, T*C)."""
    conv = _conv(q)
    rb, cb, kb, per_thread = _chunking(q, conv)
    y = np.empty((a.shape[0], conv.c_out) + conv.out_size, a.dtype)
    ws = np.empty((_threads(), per_thread), a.dtype)
    with single_threaded_blas:
        _winograd(gemm_for(a.dtype), THREADS_LOCAL, a, u, bias, y, conv.geo, rb, cb, kb, ws)
    return y


def _exact(q):
    """The kernels of the exact path: im2col's, or direct's (no workspace)
    where im2col's tiling does not fit the workspace cap (a depth-strided
    3-D layer with wide rows, which winograd splits into column blocks but
    im2col's strided path needs whole)."""
    return direct.KERNELS if isinstance(im2col._tiling(q), str) else im2col


def _finite(*arrays) -> bool:
    """No NaN or infinity in the arrays (a finite sum says so; a sum that
    overflows only sends the call to the exact path)."""
    return all(np.isfinite(np.sum(a)) for a in arrays)


def fwd(q, x, w, bias):
    # The transforms would spread a NaN/inf over whole tiles, and can overflow
    # (to inf, then NaN) on finite values near the dtype's limit that direct
    # summation handles: non-finite operands go to the exact path, and so does
    # a call whose result is not finite (an inf or NaN never turns finite again).
    if _finite(x, w, bias):
        T = q.kernel[0]  # (K, C, T, 3, 3) -> (K, T*C, 3, 3): the depth taps join the reduction
        u = filter_transform(np.ascontiguousarray(w.transpose(0, 2, 1, 3, 4)).reshape(q.c_out, T * q.c_in, 3, 3))
        y = _run(q, x, u, bias)
        if _finite(y):
            return y
    return _exact(q).fwd(q, x, w, bias)


def dgrad(q, dy, w, bias):
    """dx = the correlation of dy with w flipped in every tap and transposed
    (C <-> K), with padding dil*(k - 1) - pad before each dim (negative:
    cropped).  Non-finite operands or results: the exact path, as in fwd."""
    if _finite(dy, w, bias):
        T = q.kernel[0]  # wt[c, t*K + k] = w[k, c, T-1-t, ::-1, ::-1]
        wt = np.ascontiguousarray(w[:, :, ::-1, ::-1, ::-1].transpose(1, 2, 0, 3, 4)).reshape(q.c_in, T * q.c_out, 3, 3)
        dx = _run(q, dy, filter_transform(wt), bias)
        if _finite(dx):
            return dx
    return _exact(q).dgrad(q, dy, w, bias)


def _supports(problem):
    q = kernel_problem(problem)
    reasons = []
    if q.kernel[1:] != (3, 3):
        reasons.append(f"kernel {problem.kernel} is not 3x3 in its last two dims")
    if q.stride[1:] != (1, 1):
        reasons.append(f"stride {problem.stride} is not 1 (in height and width)")
    if q.op == "dgrad" and q.stride[0] != 1:
        reasons.append(f"dgrad with depth stride {q.stride[0]} (a transposed convolution in depth)")
    if q.groups != 1:
        reasons.append(f"groups={problem.groups} (dense convolutions only)")
    if not reasons and workspace_bytes(problem) > config.cpu_workspace_bytes:
        reasons.append("one chunk of tiles does not fit config.cpu_workspace_bytes")
    return reasons


def _declines(problem):
    """Where im2col (direct summation) is the better choice."""
    reasons = []
    q = kernel_problem(problem)
    if q.op == "wgrad" and not config.cpu_winograd_wgrad:
        reasons.append("wgrad: turned off (config.cpu_winograd_wgrad, CONVOPS_CPU_WINOGRAD_WGRAD=0)")
    small = min(q.c_in, q.c_out)
    if small < config.cpu_winograd_min_channels:
        reasons.append(f"{small} channels: the transforms outweigh the saved multiplications "
                       f"(config.cpu_winograd_min_channels = {config.cpu_winograd_min_channels})")
    tw = _conv(q).tile_columns
    if tw < config.cpu_winograd_min_tile_columns:
        reasons.append(f"rows of {tw} tiles per dilation phase: the junk tile per row and the edges outweigh "
                       f"the saved multiplications (config.cpu_winograd_min_tile_columns = "
                       f"{config.cpu_winograd_min_tile_columns})")
    filters = 16 * q.kernel[0] * q.c_in * q.c_out * np.dtype(q.dtype).itemsize
    if filters > config.cpu_winograd_max_filter_bytes:
        reasons.append(f"transformed filters of {filters} bytes, over config.cpu_winograd_max_filter_bytes "
                       f"({config.cpu_winograd_max_filter_bytes}): every chunk rereads them from memory")
    return reasons


def _wgrad_plan(q):
    """(tile rows per chunk, tile columns per chunk, workspace elements per
    thread, partial-sum slots) of wgrad: whole K per chunk, about
    config.cpu_winograd_wgrad_chunk_bytes per thread; slots fixed by the problem
    (chunk count) and the cap, at most config.cpu_wgrad_max_slots (slot 0 is
    the result's own accumulator, the others count as workspace).  A chunk
    has at least max(T*C, K) tiles (up to 512) where the cap allows: each
    chunk reads and writes the 16 (K x T*C) accumulators once, so shorter
    reductions are bound by that traffic (c256 14x14: 50 ms at 32 tiles,
    12.8 ms at 256).  The slots are wgrad's parallel iterations, so the
    chunks are sized in what min(threads, config.cpu_wgrad_max_slots) slots
    leave of the cap (found by review: at 16 threads 4 MiB chunks left room
    for one slot, and the whole pass ran on one thread)."""
    conv = _conv(q)
    c_in, K = conv.c_in * conv.geo[3], conv.c_out
    itemsize = np.dtype(q.dtype).itemsize

    def elements(width):  # x rows, V, dy tiles, Z, scratch
        return 8 * c_in * (width + 1) + 16 * (c_in * width + PLANE_GAP) + 4 * K * (width + 1) \
            + 16 * (K * width + PLANE_GAP) + 4 * width

    def fitting(budget):  # tiles whose chunk fits ``budget`` elements
        return (budget - elements(0)) // (24 * c_in + 20 * K + 4)

    slot = max(1, 16 * c_in * K)  # no channels: nothing to sum, one slot
    reserve = (max(1, min(config.cpu_wgrad_max_slots, _threads())) - 1) * slot * itemsize
    tiles = max(fitting(_chunk_budget(q, config.cpu_winograd_wgrad_chunk_bytes, reserve)),
                min(max(c_in, K), 512, fitting(_chunk_budget(q, math.inf, reserve))))
    tiles = min(max(tiles, 16), 512)
    rb, cb = _rows_and_columns(tiles, conv.tile_columns)
    per_thread = elements(rb * (cb + 1))
    spare = (config.cpu_workspace_bytes - _filter_bytes(q)) // itemsize - _threads() * per_thread
    slots = max(1, min(config.cpu_wgrad_max_slots, _chunk_count(q, conv, rb, cb), 1 + spare // slot))
    return rb, cb, per_thread, slots


def _filter_bytes(q) -> int:
    """The transformed filters (16, K, T*C) in the compute dtype (wgrad: the
    result's accumulator, slot 0)."""
    return q.c_in * q.c_out * q.kernel[0] * 16 * np.dtype(q.dtype).itemsize


def workspace_bytes(problem) -> int:
    q = kernel_problem(problem)
    itemsize = np.dtype(q.dtype).itemsize
    if q.op == "wgrad":
        _, _, per_thread, slots = _wgrad_plan(q)
        return (per_thread * _threads() + (slots - 1) * 16 * q.kernel[0] * q.c_in * q.c_out) * itemsize \
            + _filter_bytes(q)
    return _chunking(q, _conv(q))[3] * _threads() * itemsize + _filter_bytes(q)


def wgrad(q, x, dy):
    """dw = G^T dU G, dU[xi] = sum over tiles of (A g A^T)[xi] (B^T d B)[xi]^T
    (the adjoint of fwd's transforms), over (K, T*C); non-finite operands or
    results: the exact path."""
    if _finite(x, dy):
        rb, cb, per_thread, slots = _wgrad_plan(q)
        T = q.kernel[0]
        partial = np.zeros((slots, 16, q.c_out, T * q.c_in), x.dtype)
        ws = np.empty((_threads(), per_thread), x.dtype)
        with single_threaded_blas:
            _winograd_wgrad(gemm_for(x.dtype), THREADS_LOCAL, x, dy, _conv(q).geo, rb, cb, partial, ws)
        dw = filter_gradient(partial, x.dtype)  # (K, T*C, 3, 3) -> (K, C, T, 3, 3)
        dw = np.ascontiguousarray(dw.reshape(q.c_out, T, q.c_in, 3, 3).transpose(0, 2, 1, 3, 4))
        if _finite(dw):
            return dw
    return _exact(q).wgrad(q, x, dy)


register_algorithm("winograd", Kernels(fwd, dgrad, wgrad), supports=_supports, declines=_declines,
                   workspace_bytes=workspace_bytes,
                   description="Winograd F(2x2,3x3): transforms in Numba, 16 transform-domain GEMMs per tile chunk")
