"""``im2col``: column matrices built in Numba, multiplied by BLAS GEMM, both
inside one parallel loop so every worker multiplies its columns while they
are in its own cache (see blas.py).

Work is split into chunks of whole output rows of one image (a unit is one
output row (p0, p1) of P2 positions) whose column matrix (C/g*T*R*S rows x
chunk positions) fits ``config.cpu_chunk_bytes`` (and never more than
``config.cpu_workspace_bytes``).  Per image n, group g and chunk:

    fwd    Y[K/g, L] = W_g[K/g, C/g*TRS] @ col[C/g*TRS, L]    (written in place in y)
    dgrad  col = W_g^T @ dY[K/g, L], then col2im into dx[n]   (iteration owns (n, g, channel block))
    wgrad  dW_g += dY[K/g, L] @ col^T                           (fixed slots, summed in order)

A 1x1 convolution with unit stride and no padding needs no columns: the
input rows are the matrix.  Every parallel iteration writes its own outputs,
the wgrad partial sums are assigned to slots by chunk index (not by thread)
and summed in slot order, so results are identical for any thread count.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import numba
from numba import get_thread_id, njit, prange

from .. import config
from .blas import THREADS_LOCAL, gemm, gemm_for, single_threaded_blas
from .common import Kernels, register_algorithm
from .rows import FASTMATH, source_index, valid_range


@njit(cache=True, fastmath=FASTMATH)
def _im2col(x, c0, kernel, stride, dilation, pad, out_size, u0, u1, col):
    """col[(c, t, r, s), (u - u0)*P2 + q] = x[c0 + c, iz, iy, q*s2 + s*d2 - pad2]
    for one image x (C, D, H, W); zero where the tap falls in the padding.
    With a column stride, each source row is first split into its stride
    phases, so that every tap's segment is a contiguous copy, not a gather."""
    C, D, H, W = x.shape
    T, R, S = kernel
    P0, P1, P2 = out_size
    st = stride[2]
    phases = np.empty((st, (W + st - 1) // st), x.dtype)
    for c in range(col.shape[0] // (T * R * S)):
        xc = x[c0 + c]
        for t in range(T):
            for r in range(R):
                row0 = ((c * T + t) * R + r) * S
                base = 0
                for u in range(u0, u1):
                    iz = source_index(u // P1, stride[0], t, dilation[0], pad[0], D)
                    iy = source_index(u % P1, stride[1], r, dilation[1], pad[1], H)
                    if iz < 0 or iy < 0:
                        for s in range(S):
                            col[row0 + s, base:base + P2] = 0
                        base += P2
                        continue
                    xrow = xc[iz, iy]
                    if st > 1:
                        for f in range(st):
                            n_f = (W - f + st - 1) // st
                            phases[f, :n_f] = xrow[f::st]
                    for s in range(S):
                        off = s * dilation[2] - pad[2]
                        lo, hi = valid_range(off, st, W, P2)
                        seg = col[row0 + s, base:base + P2]
                        seg[:lo] = 0
                        if st == 1:
                            seg[lo:hi] = xrow[lo + off:hi + off]
                        else:
                            f = off % st
                            shift = (off - f) // st
                            seg[lo:hi] = phases[f, lo + shift:hi + shift]
                        seg[hi:] = 0
                    base += P2


@njit(cache=True, fastmath=FASTMATH)
def _col2im(col, c0, kernel, stride, dilation, pad, out_size, u0, u1, dx):
    """The adjoint of _im2col: dx[c0 + c, iz, iy, q*s2 + off] += col[(c, t, r, s), ...]
    for one image dx (C, D, H, W), rows in order (deterministic)."""
    C, D, H, W = dx.shape
    T, R, S = kernel
    P0, P1, P2 = out_size
    row = 0
    for c in range(col.shape[0] // (T * R * S)):
        dc = dx[c0 + c]
        for t in range(T):
            for r in range(R):
                for s in range(S):
                    off = s * dilation[2] - pad[2]
                    lo, hi = valid_range(off, stride[2], W, P2)
                    crow = col[row]
                    row += 1
                    base = 0
                    for u in range(u0, u1):
                        iz = source_index(u // P1, stride[0], t, dilation[0], pad[0], D)
                        iy = source_index(u % P1, stride[1], r, dilation[1], pad[1], H)
                        seg = crow[base:base + P2]
                        base += P2
                        if iz < 0 or iy < 0:
                            continue
                        drow = dc[iz, iy]
                        if stride[2] == 1:
                            drow[lo + off:hi + off] += seg[lo:hi]
                        else:
                            for q in range(lo, hi):
                                drow[q * stride[2] + off] += seg[q]


@njit(inline="always")
def _chunk_job(job, groups, nch, step, total):
    """Iteration ``job`` = (image n, chunk, group) -> (group, n, first, count):
    the chunk covers items [first, first + count) of ``total``, ``step`` per chunk."""
    g = job % groups
    ch = (job // groups) % nch
    n = job // (groups * nch)
    first = ch * step
    return g, n, first, min(total, first + step) - first


@njit(parallel=True, cache=True)
def _fwd(fn, tl, x, w2, bias, y, kernel, stride, dilation, pad, groups, upc, pointwise, ws):
    """Iteration = (n, chunk, group): y[n, group's K/g, chunk] = W_g @ col."""
    N, C = x.shape[0], x.shape[1]
    K = y.shape[1]
    P0, P1, P2 = y.shape[2], y.shape[3], y.shape[4]
    Cg, Kg = C // groups, K // groups
    rows = w2.shape[1]
    units = P0 * P1
    nch = (units + upc - 1) // upc
    ptot = units * P2
    y2 = y.reshape(N, K, ptot)
    x2 = x.reshape(N, C, x.shape[2] * x.shape[3] * x.shape[4])
    for job in prange(N * nch * groups):
        g, n, u0, count = _chunk_job(job, groups, nch, upc, units)
        u1 = u0 + count
        width = count * P2
        out = y2[n, g * Kg:(g + 1) * Kg, u0 * P2:u1 * P2]
        beta = 0.0
        if bias.size:
            for k in range(Kg):
                out[k, :] = bias[g * Kg + k]
            beta = 1.0
        if pointwise:
            gemm(fn, tl, False, False, Kg, width, rows, 1.0, w2[g * Kg:], rows, x2[n, g * Cg:, u0 * P2:], ptot,
                 beta, out, ptot)
        else:
            col = ws[get_thread_id(), :rows * width].reshape(rows, width)
            _im2col(x[n], g * Cg, kernel, stride, dilation, pad, (P0, P1, P2), u0, u1, col)
            gemm(fn, tl, False, False, Kg, width, rows, 1.0, w2[g * Kg:], rows, col, width, beta, out, ptot)


@njit(parallel=True, cache=True)
def _dgrad(fn, tl, dy, w2, dx, kernel, stride, dilation, pad, groups, upc, cblock, pointwise, ws):
    """Iteration = (n, group, block of cblock input channels): for every chunk,
    col = W_g[:, block]^T @ dY_chunk, then col2im into the block's dx planes
    (zero-initialized by the caller)."""
    N, C = dx.shape[0], dx.shape[1]
    K = dy.shape[1]
    P0, P1, P2 = dy.shape[2], dy.shape[3], dy.shape[4]
    Cg, Kg = C // groups, K // groups
    taps = kernel[0] * kernel[1] * kernel[2]
    rows_g = w2.shape[1]
    units = P0 * P1
    nch = (units + upc - 1) // upc
    ptot = units * P2
    dy2 = dy.reshape(N, K, ptot)
    dx2 = dx.reshape(N, C, dx.shape[2] * dx.shape[3] * dx.shape[4])
    ncb = (Cg + cblock - 1) // cblock
    for job in prange(N * groups * ncb):
        cb = job % ncb
        g = (job // ncb) % groups
        n = job // (ncb * groups)
        c0 = cb * cblock
        cn = min(cblock, Cg - c0)
        rows = cn * taps
        for ch in range(nch):
            u0 = ch * upc
            u1 = min(units, u0 + upc)
            width = (u1 - u0) * P2
            src = dy2[n, g * Kg:(g + 1) * Kg, u0 * P2:u1 * P2]
            wblock = w2[g * Kg:, c0 * taps:]
            if pointwise:
                gemm(fn, tl, True, False, rows, width, Kg, 1.0, wblock, rows_g, src, ptot, 0.0,
                     dx2[n, g * Cg + c0:, u0 * P2:], ptot)
            else:
                col = ws[get_thread_id(), :rows * width].reshape(rows, width)
                gemm(fn, tl, True, False, rows, width, Kg, 1.0, wblock, rows_g, src, ptot, 0.0, col, width)
                _col2im(col, g * Cg + c0, kernel, stride, dilation, pad, (P0, P1, P2), u0, u1, dx[n])


@njit(parallel=True, cache=True)
def _wgrad(fn, tl, x, dy, partial, kernel, stride, dilation, pad, groups, upc, pointwise, ws):
    """Iteration = slot: partial[slot, g] += dY_chunk @ col^T over the chunks
    whose index is congruent to the slot (fixed, thread-independent)."""
    N, C = x.shape[0], x.shape[1]
    K = dy.shape[1]
    P0, P1, P2 = dy.shape[2], dy.shape[3], dy.shape[4]
    Cg, Kg = C // groups, K // groups
    rows = partial.shape[3]
    units = P0 * P1
    nch = (units + upc - 1) // upc
    ptot = units * P2
    dy2 = dy.reshape(N, K, ptot)
    x2 = x.reshape(N, C, x.shape[2] * x.shape[3] * x.shape[4])
    slots = partial.shape[0]
    total = N * nch * groups
    for slot in prange(slots):
        for job in range(slot, total, slots):
            g, n, u0, count = _chunk_job(job, groups, nch, upc, units)
            u1 = u0 + count
            width = count * P2
            src = dy2[n, g * Kg:(g + 1) * Kg, u0 * P2:u1 * P2]
            if pointwise:
                gemm(fn, tl, False, True, Kg, rows, width, 1.0, src, ptot, x2[n, g * Cg:, u0 * P2:], ptot, 1.0,
                     partial[slot, g], rows)
            else:
                col = ws[get_thread_id(), :rows * width].reshape(rows, width)
                _im2col(x[n], g * Cg, kernel, stride, dilation, pad, (P0, P1, P2), u0, u1, col)
                gemm(fn, tl, False, True, Kg, rows, width, 1.0, src, ptot, col, width, 1.0, partial[slot, g], rows)


@njit(parallel=True, cache=True)
def _box_copy(image, box, pad, into_box):
    """Between images (N, C, D, H, W) and zero-padded boxes (N, C, Dp, Hp, Wp)
    with the image at offset ``pad`` (cut to the box): into_box fills the box
    (zeros around the image), otherwise the image is cut out of the box
    (zeros where the box does not reach): the two are adjoint."""
    N, C, D, H, W = image.shape
    Dp, Hp, Wp = box.shape[2], box.shape[3], box.shape[4]
    lo = max(0, -pad[2])
    hi = min(W, Wp - pad[2])
    for job in prange(N * C):
        n = job // C
        c = job % C
        if into_box:
            box[n, c] = 0
        else:
            image[n, c] = 0
        for z in range(max(0, -pad[0]), min(D, Dp - pad[0])):
            for yy in range(max(0, -pad[1]), min(H, Hp - pad[1])):
                if lo < hi:
                    inside = box[n, c, z + pad[0], yy + pad[1], lo + pad[2]:hi + pad[2]]
                    if into_box:
                        inside[:] = image[n, c, z, yy, lo:hi]
                    else:
                        image[n, c, z, yy, lo:hi] = inside


@njit(parallel=True, cache=True)
def _fwd_flat(fn, tl, xp, w2, bias, y, kernel, dilation, groups, chunk, ws):
    """Unit stride: over the padded images flattened, output position e =
    p0*Hp*Wp + p1*Wp + p2 reads xp_flat[c, e + offset(tap)], so each column
    row of a chunk of consecutive e is ONE contiguous copy.  Positions whose
    p1/p2 fall in the padding are computed and dropped (the waste is
    Hp*Wp/(P1*P2) - 1).  Iteration = (n, chunk, group); the chunk result is
    cropped into y."""
    N, C = xp.shape[0], xp.shape[1]
    Dp, Hp, Wp = xp.shape[2], xp.shape[3], xp.shape[4]
    K = y.shape[1]
    P0, P1, P2 = y.shape[2], y.shape[3], y.shape[4]
    T, R, S = kernel
    Cg, Kg = C // groups, K // groups
    rows = w2.shape[1]
    plane = Hp * Wp
    E = (P0 - 1) * plane + (P1 - 1) * Wp + P2
    nch = (E + chunk - 1) // chunk
    xf = xp.reshape(N, C, Dp * plane)
    for job in prange(N * nch * groups):
        g, n, e0, width = _chunk_job(job, groups, nch, chunk, E)
        tid = get_thread_id()
        col = ws[tid, :rows * width].reshape(rows, width)
        out = ws[tid, rows * chunk:rows * chunk + Kg * width].reshape(Kg, width)
        _flat_columns(xf[n], g * Cg, Cg, kernel, dilation, Hp, Wp, e0, width, col)
        gemm(fn, tl, False, False, Kg, width, rows, 1.0, w2[g * Kg:], rows, col, width, 0.0, out, width)
        # crop: rows u = p0*Hp + p1 of the box; keep p1 < P1 and the first P2 columns
        for u in range(e0 // Wp, (e0 + width - 1) // Wp + 1):
            p1 = u % Hp
            if p1 >= P1:
                continue
            p0 = u // Hp
            a = max(u * Wp, e0)
            z = min(u * Wp + P2, e0 + width)
            if a >= z:
                continue
            for k in range(Kg):
                b = bias[g * Kg + k] if bias.size else y.dtype.type(0)
                dst = y[n, g * Kg + k, p0, p1, a - u * Wp:z - u * Wp]
                src = out[k, a - e0:z - e0]
                for q in range(dst.size):
                    dst[q] = src[q] + b

@njit(inline="always")
def _flat_columns(xf_n, c0, cn, kernel, dilation, Hp, Wp, e0, width, col):
    """col[(c, t, r, s), l] = xf_n[c0 + c, e0 + l + offset(t, r, s)]: one copy per row."""
    T, R, S = kernel
    plane = Hp * Wp
    row = 0
    for c in range(cn):
        src = xf_n[c0 + c]
        for t in range(T):
            for r in range(R):
                for s in range(S):
                    off = e0 + t * dilation[0] * plane + r * dilation[1] * Wp + s * dilation[2]
                    col[row, :] = src[off:off + width]
                    row += 1


@njit(inline="always")
def _extend_rows(dy_n, k0, kn, Hp, Wp, e0, width, out):
    """out[k, l] = dy_n[k0 + k] at box position e0 + l, zero where (p1, p2) is padding."""
    P1, P2 = dy_n.shape[2], dy_n.shape[3]
    out[:] = 0
    for u in range(e0 // Wp, (e0 + width - 1) // Wp + 1):
        p1 = u % Hp
        if p1 >= P1:
            continue
        p0 = u // Hp
        a = max(u * Wp, e0)
        z = min(u * Wp + P2, e0 + width)
        if a < z:
            for k in range(kn):
                out[k, a - e0:z - e0] = dy_n[k0 + k, p0, p1, a - u * Wp:z - u * Wp]


@njit(parallel=True, cache=True)
def _wgrad_flat(fn, tl, xp, dy, partial, kernel, dilation, groups, chunk, ws):
    """Unit stride over the flattened padded box (see _fwd_flat): per chunk,
    partial[slot, g] += dY_ext @ col^T with dY_ext zero at padding positions."""
    N, C = xp.shape[0], xp.shape[1]
    Dp, Hp, Wp = xp.shape[2], xp.shape[3], xp.shape[4]
    K = dy.shape[1]
    P0, P1, P2 = dy.shape[2], dy.shape[3], dy.shape[4]
    Cg, Kg = C // groups, K // groups
    rows = partial.shape[3]
    E = (P0 - 1) * Hp * Wp + (P1 - 1) * Wp + P2
    nch = (E + chunk - 1) // chunk
    xf = xp.reshape(N, C, Dp * Hp * Wp)
    slots = partial.shape[0]
    for slot in prange(slots):
        for job in range(slot, N * nch * groups, slots):
            g, n, e0, width = _chunk_job(job, groups, nch, chunk, E)
            tid = get_thread_id()
            col = ws[tid, :rows * width].reshape(rows, width)
            dye = ws[tid, rows * chunk:rows * chunk + Kg * width].reshape(Kg, width)
            _flat_columns(xf[n], g * Cg, Cg, kernel, dilation, Hp, Wp, e0, width, col)
            _extend_rows(dy[n], g * Kg, Kg, Hp, Wp, e0, width, dye)
            gemm(fn, tl, False, True, Kg, rows, width, 1.0, dye, width, col, width, 1.0, partial[slot, g], rows)


@njit(parallel=True, cache=True)
def _dgrad_flat(fn, tl, dy, w2, gxp, kernel, dilation, groups, chunk, cblock, ws):
    """Unit stride over the flattened padded box: per chunk, col = W_g[:, block]^T
    @ dY_ext, then each column row is added back with one contiguous add.
    Iteration = (n, group, channel block): it owns those gxp planes."""
    N, C = gxp.shape[0], gxp.shape[1]
    Dp, Hp, Wp = gxp.shape[2], gxp.shape[3], gxp.shape[4]
    K = dy.shape[1]
    P0, P1, P2 = dy.shape[2], dy.shape[3], dy.shape[4]
    T, R, S = kernel
    taps = T * R * S
    Cg, Kg = C // groups, K // groups
    rows_g = w2.shape[1]
    plane = Hp * Wp
    E = (P0 - 1) * plane + (P1 - 1) * Wp + P2
    nch = (E + chunk - 1) // chunk
    gf = gxp.reshape(N, C, Dp * plane)
    ncb = (Cg + cblock - 1) // cblock
    for job in prange(N * groups * ncb):
        cb = job % ncb
        g = (job // ncb) % groups
        n = job // (ncb * groups)
        c0 = cb * cblock
        cn = min(cblock, Cg - c0)
        rows = cn * taps
        for c in range(cn):
            gf[n, g * Cg + c0 + c, :] = 0
        tid = get_thread_id()
        for ch in range(nch):
            e0 = ch * chunk
            width = min(E, e0 + chunk) - e0
            col = ws[tid, :rows * width].reshape(rows, width)
            dye = ws[tid, cblock * taps * chunk:cblock * taps * chunk + Kg * width].reshape(Kg, width)
            _extend_rows(dy[n], g * Kg, Kg, Hp, Wp, e0, width, dye)
            gemm(fn, tl, True, False, rows, width, Kg, 1.0, w2[g * Kg:, c0 * taps:], rows_g, dye, width, 0.0, col, width)
            row = 0
            for c in range(cn):
                dst = gf[n, g * Cg + c0 + c]
                for t in range(T):
                    for r in range(R):
                        for s in range(S):
                            off = e0 + t * dilation[0] * plane + r * dilation[1] * Wp + s * dilation[2]
                            d = dst[off:off + width]
                            src = col[row]
                            for l in range(width):
                                d[l] += src[l]
                            row += 1

_scratch = threading.local()


def _workspace(per_thread: int, dtype) -> np.ndarray:
    """(threads, per_thread) scratch reused across calls on this Python thread
    (so the columns are not page-faulted in anew on every call)."""
    threads = numba.config.NUMBA_NUM_THREADS  # thread ids range over the whole pool
    key = np.dtype(dtype).str
    store = _scratch.__dict__.setdefault("buffers", {})
    buf = store.get(key)
    if buf is None or buf.shape[0] < threads or buf.shape[1] < per_thread:
        buf = store[key] = np.empty((max(threads, 1), max(per_thread, 1)), dtype)
    return buf


def _plan(g, rows: int):
    """Output rows per chunk, and whether columns are skipped (1x1, stride 1, no padding)."""
    pointwise = g.kernel == (1, 1, 1) and g.stride == (1, 1, 1) and g.pad == (0, 0, 0) and g.in_size == g.out_size
    per_unit = rows * g.out_size[2] * g.dtype.itemsize
    budget = min(config.cpu_chunk_bytes, config.cpu_workspace_bytes)
    upc = max(1, min(budget // max(per_unit, 1), g.out_size[0] * g.out_size[1]))
    return upc, pointwise


def _flat_extent(g):
    """Padded box the unit-stride outputs read: (P - 1) + d*(k - 1) + 1 per dim."""
    return tuple(o - 1 + d * (k - 1) + 1 for o, d, k in zip(g.out_size, g.dilation, g.kernel))


def _flat(g, pointwise) -> bool:
    """Unit stride (and not a plain 1x1): the flattened-box path applies."""
    return g.stride == (1, 1, 1) and not pointwise and 0 not in g.out_size


def _flat_chunk(g, rows) -> int:
    budget = min(config.cpu_chunk_bytes, config.cpu_workspace_bytes)
    return max(_flat_extent(g)[2], budget // (rows * g.dtype.itemsize))


def fwd(g, x, w, bias):
    rows = (g.c // g.groups) * math.prod(g.kernel)
    upc, pointwise = _plan(g, rows)
    y = np.empty(g.y_shape, g.dtype)
    kg = g.k // g.groups
    with single_threaded_blas:
        if _flat(g, pointwise):
            xp = np.empty((g.n, g.c) + _flat_extent(g), g.dtype)
            _box_copy(x, xp, g.pad, True)
            chunk = _flat_chunk(g, rows)
            ws = _workspace((rows + kg) * chunk, g.dtype)
            _fwd_flat(gemm_for(g.dtype), THREADS_LOCAL, xp, w.reshape(g.k, rows), bias, y, g.kernel, g.dilation, g.groups, chunk, ws)
            return y
        ws = _workspace(0 if pointwise else rows * upc * g.out_size[2], g.dtype)
        _fwd(gemm_for(g.dtype), THREADS_LOCAL, x, w.reshape(g.k, rows), bias, y, g.kernel, g.stride, g.dilation, g.pad,
             g.groups, upc, pointwise, ws)
    return y


def dgrad(g, dy, w, bias):
    taps = math.prod(g.kernel)
    cg = g.c // g.groups
    kg = g.k // g.groups
    # channel blocks: enough parallel iterations, decided by the problem alone
    cblock = cg if g.n * g.groups >= 8 else max(1, -(-cg // -(-8 // (g.n * g.groups))))
    upc, pointwise = _plan(g, cblock * taps)
    w2 = w.reshape(g.k, cg * taps)
    with single_threaded_blas:
        if _flat(g, pointwise):
            box = _flat_extent(g)
            gxp = np.empty((g.n, g.c) + box, g.dtype)
            chunk = _flat_chunk(g, cblock * taps)
            ws = _workspace((cblock * taps + kg) * chunk, g.dtype)
            _dgrad_flat(gemm_for(g.dtype), THREADS_LOCAL, dy, w2, gxp, g.kernel, g.dilation, g.groups, chunk, cblock, ws)
            dx = np.empty(g.x_shape, g.dtype)
            _box_copy(dx, gxp, g.pad, False)
        else:
            dx = np.zeros(g.x_shape, g.dtype)
            ws = _workspace(0 if pointwise else cblock * taps * upc * g.out_size[2], g.dtype)
            _dgrad(gemm_for(g.dtype), THREADS_LOCAL, dy, w2, dx, g.kernel, g.stride, g.dilation, g.pad, g.groups, upc, cblock,
                   pointwise, ws)
    if bias.size:
        dx += bias.reshape((-1,) + (1,) * 3)
    return dx


def wgrad(g, x, dy):
    rows = (g.c // g.groups) * math.prod(g.kernel)
    kg = g.k // g.groups
    upc, pointwise = _plan(g, rows)
    flat = _flat(g, pointwise)
    if flat:
        chunk = _flat_chunk(g, rows)
        e_total = (g.out_size[0] - 1) * math.prod(_flat_extent(g)[1:]) + (g.out_size[1] - 1) * _flat_extent(g)[2] \
            + g.out_size[2]
        chunks = g.n * -(-e_total // chunk) * g.groups
    else:
        chunks = g.n * -(-(g.out_size[0] * g.out_size[1]) // upc) * g.groups
    dw_bytes = g.k * rows * g.dtype.itemsize
    slots = max(1, min(16, chunks, config.cpu_workspace_bytes // max(dw_bytes, 1)))
    partial = np.zeros((slots, g.groups, kg, rows), g.dtype)
    with single_threaded_blas:
        if flat:
            xp = np.empty((g.n, g.c) + _flat_extent(g), g.dtype)
            _box_copy(x, xp, g.pad, True)
            ws = _workspace((rows + kg) * chunk, g.dtype)
            _wgrad_flat(gemm_for(g.dtype), THREADS_LOCAL, xp, dy, partial, g.kernel, g.dilation, g.groups, chunk, ws)
        else:
            ws = _workspace(0 if pointwise else rows * upc * g.out_size[2], g.dtype)
            _wgrad(gemm_for(g.dtype), THREADS_LOCAL, x, dy, partial, g.kernel, g.stride, g.dilation, g.pad, g.groups, upc,
                   pointwise, ws)
    return np.add.reduce(partial, axis=0).reshape(g.w_shape)


KERNELS = Kernels(fwd, dgrad, wgrad)
register_algorithm("im2col", KERNELS, priority=40,
                   description="Numba im2col/col2im + BLAS GEMM per worker, chunked under the workspace cap")
