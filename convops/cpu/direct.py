"""``direct``: hand-written generic direct convolution, every pass.

Any stride, dilation, zero padding (other modes via common.run_with), groups
and 1-3 spatial dims (as 3-D).  Each parallel iteration owns a block of
output rows, accumulated in place, so no two iterations write the same
element (deterministic for any thread count) and no scratch is needed.  The
innermost loop runs along the contiguous last spatial axis over the range of
positions whose taps fall inside the input, so there are no bounds tests in
it and, at unit stride, it vectorizes.

Taps that land in zero padding are skipped, which is exact when the operand
they would multiply is finite.  When it is not (a NaN or infinite weight in
fwd, output gradient in wgrad), the padding is made explicit -- a
zero-padded copy of x, no padding left -- so that 0 * inf = NaN reaches
exactly the outputs it reaches in the reference.

Shapes: x (N, C, D, H, W), w (K, C/g, T, R, S), y (N, K, P0, P1, P2).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import config
from .common import Kernels, all_finite, pad_input, register_algorithm
from .rows import FASTMATH, correlate_row, scatter_row, source_index, tap_dots

KB = config.cpu_channel_block


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _fwd(x, w, bias, y, stride, dilation, pad, groups):
    """Iteration = (n, group, block of KB output channels, p0, p1): the output
    rows y[n, k0:k0+KB, p0, p1, :], accumulated in place (bias first)."""
    N, C, D, H, W = x.shape
    K, Cg, T, R, S = w.shape
    P0, P1 = y.shape[2], y.shape[3]
    Kg = K // groups
    nkb = (Kg + KB - 1) // KB
    for job in prange(N * groups * nkb * P0 * P1):
        p1 = job % P1
        p0 = (job // P1) % P0
        kb = (job // (P1 * P0)) % nkb
        g = (job // (P1 * P0 * nkb)) % groups
        n = job // (P1 * P0 * nkb * groups)
        k0 = g * Kg + kb * KB
        kn = min(KB, Kg - kb * KB)
        for kk in range(kn):
            y[n, k0 + kk, p0, p1, :] = bias[k0 + kk] if bias.size else y.dtype.type(0)
        for c in range(Cg):
            ci = g * Cg + c
            for t in range(T):
                iz = source_index(p0, stride[0], t, dilation[0], pad[0], D)
                if iz < 0:
                    continue
                for r in range(R):
                    iy = source_index(p1, stride[1], r, dilation[1], pad[1], H)
                    if iy < 0:
                        continue
                    row = x[n, ci, iz, iy]
                    for kk in range(kn):
                        correlate_row(y[n, k0 + kk, p0, p1], row, w[k0 + kk, c, t, r], 0, S, dilation[2], -pad[2],
                                      stride[2])


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _dgrad(dy, w, bias, dx, stride, dilation, pad, groups):
    """Iteration = (n, input channel c, z, y): one input-gradient row
    dx[n, c, z, y, :], gathered in place from every output row and tap that
    read it (only real taps: the zeros a transposed convolution inserts are
    never multiplied)."""
    N, C, D, H, W = dx.shape
    K, Cg, T, R, S = w.shape
    P0, P1 = dy.shape[2], dy.shape[3]
    Kg = K // groups
    for job in prange(N * C * D * H):
        iy = job % H
        iz = (job // H) % D
        ci = (job // (H * D)) % C
        n = job // (H * D * C)
        g = ci // Cg
        c = ci % Cg
        out = dx[n, ci, iz, iy]
        out[:] = bias[ci] if bias.size else dx.dtype.type(0)
        for t in range(T):
            zz = iz + pad[0] - t * dilation[0]
            if zz < 0 or zz % stride[0] != 0 or zz // stride[0] >= P0:
                continue
            p0 = zz // stride[0]
            for r in range(R):
                yy = iy + pad[1] - r * dilation[1]
                if yy < 0 or yy % stride[1] != 0 or yy // stride[1] >= P1:
                    continue
                p1 = yy // stride[1]
                for kk in range(Kg):
                    k = g * Kg + kk
                    scatter_row(out, dy[n, k, p0, p1], w[k, c, t, r], 0, S, dilation[2], -pad[2], stride[2])


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def _wgrad(x, dy, dw, stride, dilation, pad, groups):
    """Iteration = (k, c): the T*R*S weights dw[k, c], each a dot product of
    output-gradient rows with the input rows its tap read."""
    N, C, D, H, W = x.shape
    K, Cg, T, R, S = dw.shape
    P0, P1 = dy.shape[2], dy.shape[3]
    Kg = K // groups
    for job in prange(K * Cg):
        k = job // Cg
        c = job % Cg
        ci = (k // Kg) * Cg + c
        acc = dw[k, c]
        acc[:] = 0
        for n in range(N):
            for p0 in range(P0):
                for t in range(T):
                    iz = source_index(p0, stride[0], t, dilation[0], pad[0], D)
                    if iz < 0:
                        continue
                    for p1 in range(P1):
                        grow = dy[n, k, p0, p1]
                        for r in range(R):
                            iy = source_index(p1, stride[1], r, dilation[1], pad[1], H)
                            if iy < 0:
                                continue
                            tap_dots(acc[t, r], 0, grow, x[n, ci, iz, iy], S, dilation[2], -pad[2], stride[2])


def _explicit_padding(q, x):
    """x with its zero padding materialized, and the problem on it."""
    return q.materialized(), pad_input(q, x)


def fwd(q, x, w, bias):
    if not all_finite(w):
        q, x = _explicit_padding(q, x)
    y = np.empty(q.y_shape, x.dtype)
    _fwd(x, w, bias, y, q.stride, q.dilation, q.pad_lo, q.groups)
    return y


def dgrad(q, dy, w, bias):
    dx = np.empty(q.x_shape, dy.dtype)
    _dgrad(dy, w, bias, dx, q.stride, q.dilation, q.pad_lo, q.groups)
    return dx


def wgrad(q, x, dy):
    if not all_finite(dy):
        q, x = _explicit_padding(q, x)
    dw = np.empty(q.w_shape, x.dtype)
    _wgrad(x, dy, dw, q.stride, q.dilation, q.pad_lo, q.groups)
    return dw


KERNELS = Kernels(fwd, dgrad, wgrad)
register_algorithm("direct", KERNELS, description="hand-written direct loops, row-vectorized; generic, no scratch")
