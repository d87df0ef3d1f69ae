"""``im2col``: column matrices built in Numba, multiplied by BLAS GEMM, both
inside one parallel loop so every worker multiplies its columns while they
are in its own cache (see blas.py).

Shapes: x (N, C, D, H, W), w (K, C/g, T, R, S), y (N, K, P0, P1, P2); one
column row per (channel, tap), ``taps = T*R*S``.  Per image n and group g:

    fwd    Y[K/g, L] = W_g[K/g, C/g*taps] @ col[C/g*taps, L]
    dgrad  col = W_g^T @ dY[K/g, L], then col2im into dx[n]
    wgrad  dW_g += dY[K/g, L] @ col^T          (fixed partial-sum slots, summed in order)

Two layouts of the columns:

- strided (any stride): a chunk is a run of whole output rows (a unit is
  one output row (p0, p1) of P2 positions); the GEMM writes y in place.
- flat (unit stride): over the padded images flattened, output position
  e = p0*Hp*Wp + p1*Wp + p2 reads xpad_flat[c, e + offset(tap)], so every
  column row of a chunk of consecutive e is ONE contiguous copy.  Box
  positions whose p1/p2 lie in the padding are not outputs ("fake"): fwd
  computes and drops them; wgrad and dgrad zero their columns, so nothing
  that is not a real product (0 * inf) reaches a result.

Tiling (``_tiling``, the one place sizes are chosen): chunks of output
positions, blocks of input channels (the GEMM's reduction in fwd) and blocks
of output channels (the flat temporaries), so that each thread's columns and
temporaries fit ``config.cpu_chunk_bytes`` and all threads together
``config.cpu_workspace_bytes``; a problem whose smallest tile (one channel,
one output channel, one position) does not fit is declined.  The workspace
is allocated per call and released with it.  A 1x1 convolution with unit
stride and no padding needs no columns: the input rows are the matrix.

Every parallel iteration writes its own outputs, the wgrad partial sums are
assigned to slots by chunk index (not by thread) and summed in slot order,
so results are identical for any thread count.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
from numba import get_thread_id, njit, prange

from .. import config
from .blas import THREADS_LOCAL, gemm, gemm_for, single_threaded_blas
from .common import Kernels, kernel_problem, register_algorithm
from .rows import FASTMATH, source_index, valid_range


@njit(cache=True, fastmath=FASTMATH)
def _im2col(x, c0, cn, kernel, stride, dilation, pad, out_size, u0, u1, col):
    """col[(c, t, r, s), (u - u0)*P2 + q] = x[c0 + c, iz, iy, q*s2 + s*d2 - pad2]
    for channels c < cn of one image x (C, D, H, W) and output rows u0 <= u < u1;
    zero where the tap falls in the padding.  With a column stride, each source
    row is first split into its stride phases, so that every tap's segment is a
    contiguous copy, not a gather."""
    C, D, H, W = x.shape
    T, R, S = kernel
    P0, P1, P2 = out_size
    st = stride[2]
    phases = np.empty((st, (W + st - 1) // st), x.dtype)
    for c in range(cn):
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
                        if lo < hi:
                            if st == 1:
                                seg[lo:hi] = xrow[lo + off:hi + off]
                            else:
                                f = off % st
                                shift = (off - f) // st
                                seg[lo:hi] = phases[f, lo + shift:hi + shift]
                        seg[hi:] = 0
                    base += P2


@njit(cache=True, fastmath=FASTMATH)
def _col2im(col, c0, cn, kernel, stride, dilation, pad, out_size, u0, u1, dx, W):
    """The adjoint of _im2col: dx[c0 + c, iz, iy, q*s2 + off] += col[(c, t, r, s), ...]
    for one image dx (C, D, H, W), rows in order (deterministic).

    With a column stride s2 > 1, dx's rows are held split by column phase
    (dx[..., f*m + j] is column j*s2 + f, m = ceil(W/s2); _join_phases undoes it,
    so its last axis is s2*m long): every tap's segment is then one
    contiguous add instead of a strided scatter."""
    D, H = dx.shape[1], dx.shape[2]
    T, R, S = kernel
    P0, P1, P2 = out_size
    st = stride[2]
    m = (W + st - 1) // st
    row = 0
    for c in range(cn):
        dc = dx[c0 + c]
        for t in range(T):
            for r in range(R):
                for s in range(S):
                    off = s * dilation[2] - pad[2]
                    lo, hi = valid_range(off, st, W, P2)
                    crow = col[row]
                    row += 1
                    if lo >= hi:
                        continue
                    f = off % st  # column q*st + off = (q + shift)*st + f
                    start = f * m + (off - f) // st
                    base = 0
                    for u in range(u0, u1):
                        iz = source_index(u // P1, stride[0], t, dilation[0], pad[0], D)
                        iy = source_index(u % P1, stride[1], r, dilation[1], pad[1], H)
                        seg = crow[base:base + P2]
                        base += P2
                        if iz < 0 or iy < 0:
                            continue
                        drow = dc[iz, iy]
                        dst = drow[start + lo:start + hi]
                        src = seg[lo:hi]
                        for i in range(hi - lo):
                            dst[i] += src[i]


@njit(inline="always")
def _join_phases(split, dx, st):
    """dx[..., j*st + f] = split[..., f*m + j] over one image's channel planes
    (C', D, H, st*m) -> (C', D, H, W): undo _col2im's column-phase split."""
    C, D, H, W = dx.shape
    m = split.shape[3] // st
    for c in range(C):
        for z in range(D):
            for y in range(H):
                src = split[c, z, y]
                dst = dx[c, z, y]
                for f in range(st):
                    for j in range((W - f + st - 1) // st):
                        dst[j * st + f] = src[f * m + j]


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
def _fwd(fn, tl, x, w2, bias, y, kernel, stride, dilation, pad, groups, upc, cb, pointwise, ws):
    """Strided columns.  Iteration = (n, chunk, group): y[n, group's K/g, chunk]
    = bias + sum over channel blocks of W_g[:, block] @ col[block]."""
    N, C = x.shape[0], x.shape[1]
    K = y.shape[1]
    P0, P1, P2 = y.shape[2], y.shape[3], y.shape[4]
    taps = kernel[0] * kernel[1] * kernel[2]
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
            for c0 in range(0, Cg, cb):
                cn = min(cb, Cg - c0)
                col = ws[get_thread_id(), :cn * taps * width].reshape(cn * taps, width)
                _im2col(x[n], g * Cg + c0, cn, kernel, stride, dilation, pad, (P0, P1, P2), u0, u1, col)
                gemm(fn, tl, False, False, Kg, width, cn * taps, 1.0, w2[g * Kg:, c0 * taps:], rows, col, width,
                     beta, out, ptot)
                beta = 1.0


@njit(parallel=True, cache=True)
def _dgrad(fn, tl, dy, w2, dx, split, kernel, stride, dilation, pad, groups, upc, cblock, pointwise, ws):
    """Strided columns.  Iteration = (n, group, block of cblock input channels):
    for every chunk, col = W_g[:, block]^T @ dY_chunk, then col2im into the
    block's planes of ``split`` (zeroed by the job): dx itself
    for a unit column stride, else dx's rows split by column phase (see
    _col2im), joined into dx once the block is done."""
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
        if not pointwise:  # col2im accumulates: the job's planes start at zero (here: in parallel, in cache)
            split[n, g * Cg + c0:g * Cg + c0 + cn] = 0
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
                _col2im(col, g * Cg + c0, cn, kernel, stride, dilation, pad, (P0, P1, P2), u0, u1, split[n],
                        dx.shape[4])
        if stride[2] > 1 and not pointwise:
            c1 = g * Cg + c0
            _join_phases(split[n, c1:c1 + cn], dx[n, c1:c1 + cn], stride[2])


@njit(parallel=True, cache=True)
def _wgrad(fn, tl, x, dy, partial, kernel, stride, dilation, pad, groups, upc, cb, pointwise, ws):
    """Strided columns.  Iteration = slot: partial[slot, g, :, block] +=
    dY_chunk @ col[block]^T over the chunks whose index is congruent to the
    slot (fixed, thread-independent), channel block by channel block."""
    N, C = x.shape[0], x.shape[1]
    K = dy.shape[1]
    P0, P1, P2 = dy.shape[2], dy.shape[3], dy.shape[4]
    taps = kernel[0] * kernel[1] * kernel[2]
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
                for c0 in range(0, Cg, cb):
                    cn = min(cb, Cg - c0)
                    col = ws[get_thread_id(), :cn * taps * width].reshape(cn * taps, width)
                    _im2col(x[n], g * Cg + c0, cn, kernel, stride, dilation, pad, (P0, P1, P2), u0, u1, col)
                    gemm(fn, tl, False, True, Kg, cn * taps, width, 1.0, src, ptot, col, width, 1.0,
                         partial[slot, g, :, c0 * taps:], rows)


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
def _box_row(u, e0, width, Hp, Wp, P1, P2):
    """Box row u = p0*Hp + p1 within the chunk [e0, e0 + width): (p0, p1, a, z, end)
    with [a, z) its output positions (p2 < P2; none when p1 >= P1) and [a, end)
    all its positions in the chunk, relative to e0."""
    p1 = u % Hp
    a = max(u * Wp, e0)
    z = min(u * Wp + P2, e0 + width) if p1 < P1 else a
    return u // Hp, p1, a - e0, max(z, a) - e0, min((u + 1) * Wp, e0 + width) - e0


@njit(inline="always")
def _zero_fake_columns(col, e0, width, Hp, Wp, P1, P2):
    """Zero the columns of box positions e0 <= e < e0 + width that are not
    outputs (p1 >= P1 or p2 >= P2): they must not carry a product into a
    gradient (a real input times a zero that is not an output gradient can
    be 0 * inf)."""
    for u in range(e0 // Wp, (e0 + width - 1) // Wp + 1):
        _, _, a, z, end = _box_row(u, e0, width, Hp, Wp, P1, P2)
        if z < end:
            col[:, z:end] = 0


@njit(inline="always")
def _extend_rows(dy_n, k0, kn, Hp, Wp, e0, width, out):
    """out[k, l] = dy_n[k0 + k] at box position e0 + l, zero where (p1, p2) is padding."""
    P1, P2 = dy_n.shape[2], dy_n.shape[3]
    out[:] = 0
    for u in range(e0 // Wp, (e0 + width - 1) // Wp + 1):
        p0, p1, a, z, _ = _box_row(u, e0, width, Hp, Wp, P1, P2)
        if a < z:
            q = e0 - u * Wp  # box position e0 + l is column l + q of the row
            for k in range(kn):
                out[k, a:z] = dy_n[k0 + k, p0, p1, a + q:z + q]


@njit(parallel=True, cache=True)
def _fwd_flat(fn, tl, xp, w2, bias, y, kernel, dilation, groups, chunk, cb, kb, ws):
    """Unit stride over the flattened padded box.  Iteration = (n, chunk,
    group); per block of kb output channels the chunk result (a sum over
    channel blocks) is formed in a temporary and cropped into y (fake
    positions dropped).  With one channel block the columns are built once."""
    N, C = xp.shape[0], xp.shape[1]
    Dp, Hp, Wp = xp.shape[2], xp.shape[3], xp.shape[4]
    K = y.shape[1]
    P0, P1, P2 = y.shape[2], y.shape[3], y.shape[4]
    T, R, S = kernel
    taps = T * R * S
    Cg, Kg = C // groups, K // groups
    rows = w2.shape[1]
    plane = Hp * Wp
    E = (P0 - 1) * plane + (P1 - 1) * Wp + P2
    nch = (E + chunk - 1) // chunk
    one_block = cb >= Cg
    colsz = min(cb, Cg) * taps * chunk
    xf = xp.reshape(N, C, Dp * plane)
    for job in prange(N * nch * groups):
        g, n, e0, width = _chunk_job(job, groups, nch, chunk, E)
        tid = get_thread_id()
        for k0 in range(0, Kg, kb):
            kn = min(kb, Kg - k0)
            out = ws[tid, colsz:colsz + kn * width].reshape(kn, width)
            for c0 in range(0, Cg, cb):
                cn = min(cb, Cg - c0)
                col = ws[tid, :cn * taps * width].reshape(cn * taps, width)
                if k0 == 0 or not one_block:
                    _flat_columns(xf[n], g * Cg + c0, cn, kernel, dilation, Hp, Wp, e0, width, col)
                gemm(fn, tl, False, False, kn, width, cn * taps, 1.0, w2[g * Kg + k0:, c0 * taps:], rows, col, width,
                     0.0 if c0 == 0 else 1.0, out, width)
            # crop: keep the output positions of each box row (p1 < P1, p2 < P2)
            for u in range(e0 // Wp, (e0 + width - 1) // Wp + 1):
                p0, p1, a, z, _ = _box_row(u, e0, width, Hp, Wp, P1, P2)
                if a >= z:
                    continue
                q = e0 - u * Wp
                for k in range(kn):
                    kk = g * Kg + k0 + k
                    b = bias[kk] if bias.size else y.dtype.type(0)
                    dst = y[n, kk, p0, p1, a + q:z + q]
                    src = out[k, a:z]
                    for i in range(dst.size):
                        dst[i] = src[i] + b


@njit(parallel=True, cache=True)
def _wgrad_flat(fn, tl, xp, dy, partial, kernel, dilation, groups, chunk, cb, kb, ws):
    """Unit stride over the flattened padded box (see _fwd_flat): per chunk and
    channel block, columns with the fake positions zeroed, then per block of
    output channels partial[slot, g, kblock, cblock] += dY_ext @ col^T."""
    N, C = xp.shape[0], xp.shape[1]
    Dp, Hp, Wp = xp.shape[2], xp.shape[3], xp.shape[4]
    K = dy.shape[1]
    P0, P1, P2 = dy.shape[2], dy.shape[3], dy.shape[4]
    T, R, S = kernel
    taps = T * R * S
    Cg, Kg = C // groups, K // groups
    rows = partial.shape[3]
    E = (P0 - 1) * Hp * Wp + (P1 - 1) * Wp + P2
    nch = (E + chunk - 1) // chunk
    colsz = min(cb, Cg) * taps * chunk
    xf = xp.reshape(N, C, Dp * Hp * Wp)
    slots = partial.shape[0]
    for slot in prange(slots):
        for job in range(slot, N * nch * groups, slots):
            g, n, e0, width = _chunk_job(job, groups, nch, chunk, E)
            tid = get_thread_id()
            for c0 in range(0, Cg, cb):
                cn = min(cb, Cg - c0)
                col = ws[tid, :cn * taps * width].reshape(cn * taps, width)
                _flat_columns(xf[n], g * Cg + c0, cn, kernel, dilation, Hp, Wp, e0, width, col)
                _zero_fake_columns(col, e0, width, Hp, Wp, P1, P2)
                for k0 in range(0, Kg, kb):
                    kn = min(kb, Kg - k0)
                    dye = ws[tid, colsz:colsz + kn * width].reshape(kn, width)
                    _extend_rows(dy[n], g * Kg + k0, kn, Hp, Wp, e0, width, dye)
                    gemm(fn, tl, False, True, kn, cn * taps, width, 1.0, dye, width, col, width, 1.0,
                         partial[slot, g, k0:, c0 * taps:], rows)


@njit(parallel=True, cache=True)
def _dgrad_flat(fn, tl, dy, w2, gxp, kernel, dilation, groups, chunk, cblock, kb, ws):
    """Unit stride over the flattened padded box: per chunk, col = sum over
    output-channel blocks of W_g[kblock, cblock]^T @ dY_ext[kblock], its fake
    columns zeroed, then each column row is added back with one contiguous
    add.  Iteration = (n, group, channel block): it owns those gxp planes."""
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
    colsz = min(cblock, Cg) * taps * chunk
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
            for k0 in range(0, Kg, kb):
                kn = min(kb, Kg - k0)
                dye = ws[tid, colsz:colsz + kn * width].reshape(kn, width)
                _extend_rows(dy[n], g * Kg + k0, kn, Hp, Wp, e0, width, dye)
                gemm(fn, tl, True, False, rows, width, kn, 1.0, w2[g * Kg + k0:, c0 * taps:], rows_g, dye, width,
                     0.0 if k0 == 0 else 1.0, col, width)
            _zero_fake_columns(col, e0, width, Hp, Wp, P1, P2)
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


# ---- tiling: the one place sizes are chosen ----------------------------------------
class Tiling(NamedTuple):
    """How a kernel problem is cut (see the module docstring)."""

    flat: bool        # unit stride over the flattened padded box
    pointwise: bool   # 1x1, unit stride, no padding: no columns at all
    cb: int           # input channels per column block (dgrad: per parallel iteration)
    kb: int           # output channels per block of the flat temporaries
    step: int         # flat: positions per chunk; strided: output rows (of P2) per chunk
    per_thread: int   # workspace elements per thread
    slots: int        # wgrad partial-sum slots (1 otherwise)


def _threads() -> int:
    """Workspace rows: Numba thread ids range over the whole pool."""
    return max(1, numba.config.NUMBA_NUM_THREADS)


def _tiling(q) -> "Tiling | str":
    """The tiling of kernel problem ``q``, or why none fits the workspace cap."""
    itemsize = np.dtype(q.dtype).itemsize
    taps = math.prod(q.kernel)
    cg, kg = q.c_in // q.groups, q.c_out // q.groups
    P0, P1, P2 = q.out_size
    units = P0 * P1
    threads = _threads()
    if q.is_empty:  # never run (dispatch answers empty problems); nothing to tile
        return Tiling(False, False, 1, 1, 1, 0, 1)
    budget = min(config.cpu_chunk_bytes, config.cpu_workspace_bytes // threads) // itemsize
    pointwise = q.kernel == (1, 1, 1) and q.stride == (1, 1, 1) and q.pad_lo == (0, 0, 0) and q.in_size == q.out_size
    flat = q.stride == (1, 1, 1) and not pointwise
    cb, kb = cg, kg
    if q.op == "dgrad":  # enough parallel iterations, decided by the problem alone
        jobs = q.n * q.groups
        if jobs < config.cpu_dgrad_min_jobs:
            cb = max(1, -(-cg // -(-config.cpu_dgrad_min_jobs // jobs)))
    if flat:
        box = q.input_extent
        total = (P0 - 1) * box[1] * box[2] + (P1 - 1) * box[2] + P2
        want = min(total, config.cpu_min_chunk_positions)
        # Too big: block the channels (the GEMMs' reduction) first; output
        # channels only when one channel's columns leave no room.  (The other
        # order cut kb to 1 on 512 x 512 layers, rebuilding the columns for
        # every output channel: 1.6 s for a 4 x 512 x 28 x 28 forward.)
        if (cb * taps + kb) * want > budget:
            cb = max(1, min(cb, (budget // want - kb) // taps))
        if (cb * taps + kb) * want > budget:
            kb = max(1, min(kb, budget // want - cb * taps))
        step = min(total, budget // (cb * taps + kb))
        if step < 1:
            return (f"one column block (one channel x {taps} taps, plus one output channel) needs "
                    f"{(taps + 1) * itemsize} bytes per thread, over the workspace cap's share "
                    f"{budget * itemsize} (config.cpu_workspace_bytes / {threads} threads)")
        per_thread = (cb * taps + kb) * step
        chunks = -(-total // step)
    elif pointwise:
        per_thread = 0
        step = max(1, min(units, budget // max(cg * P2, 1)))
        chunks = -(-units // step)
    else:
        if cb * taps * P2 > budget:
            cb = budget // (taps * P2)
        if cb < 1:
            return (f"one column block (one channel x {taps} taps x one output row of {P2}) needs "
                    f"{taps * P2 * itemsize} bytes per thread, over the workspace cap's share {budget * itemsize} "
                    f"(config.cpu_workspace_bytes / {threads} threads)")
        step = min(units, budget // (cb * taps * P2))
        per_thread = cb * taps * P2 * step
        chunks = -(-units // step)
    slots = 1
    if q.op == "wgrad":  # slot 0 is the result's accumulator; the others count as workspace
        spare = config.cpu_workspace_bytes // itemsize - threads * per_thread
        slots = max(1, min(config.cpu_wgrad_max_slots, q.n * q.groups * chunks, 1 + spare // (q.c_out * cg * taps)))
    return Tiling(flat, pointwise, cb, kb, step, per_thread, slots)


def workspace_bytes(problem) -> int:
    """Columns and temporaries of every thread, plus wgrad's extra partial-sum
    slots.  Not counted: the zero-padded copy of the input (or of the input
    gradient) the flat layout works on, about the size of the operand; and
    strided dgrad's column-phase split of the input gradient, rows of
    st*ceil(W/st) elements (dx's size, up to st times it when W < st)."""
    q = kernel_problem(problem)
    t = _tiling(q)
    if isinstance(t, str):
        return 0
    extra_slots = (t.slots - 1) * q.c_out * (q.c_in // q.groups) * math.prod(q.kernel)
    return (_threads() * t.per_thread + extra_slots) * np.dtype(q.dtype).itemsize


def _supports(problem):
    t = _tiling(kernel_problem(problem))
    return [t] if isinstance(t, str) else []


def _plan(q):
    t = _tiling(q)
    assert not isinstance(t, str), t  # supports() declined this problem
    return t, np.empty((_threads(), max(t.per_thread, 1)), q.dtype)


def fwd(q, x, w, bias):
    t, ws = _plan(q)
    y = np.empty(q.y_shape, x.dtype)
    w2 = w.reshape(q.c_out, -1)
    with single_threaded_blas:
        if t.flat:
            xp = np.empty((q.n, q.c_in) + q.input_extent, x.dtype)
            _box_copy(x, xp, q.pad_lo, True)
            _fwd_flat(gemm_for(x.dtype), THREADS_LOCAL, xp, w2, bias, y, q.kernel, q.dilation, q.groups, t.step, t.cb,
                      t.kb, ws)
        else:
            _fwd(gemm_for(x.dtype), THREADS_LOCAL, x, w2, bias, y, q.kernel, q.stride, q.dilation, q.pad_lo, q.groups,
                 t.step, t.cb, t.pointwise, ws)
    return y


def dgrad(q, dy, w, bias):
    t, ws = _plan(q)
    w2 = w.reshape(q.c_out, -1)
    with single_threaded_blas:
        if t.flat:
            gxp = np.empty((q.n, q.c_in) + q.input_extent, dy.dtype)
            _dgrad_flat(gemm_for(dy.dtype), THREADS_LOCAL, dy, w2, gxp, q.kernel, q.dilation, q.groups, t.step, t.cb,
                        t.kb, ws)
            dx = np.empty(q.x_shape, dy.dtype)
            _box_copy(dx, gxp, q.pad_lo, False)
        else:
            st = q.stride[2]
            if st > 1 and not t.pointwise:  # _col2im's column-phase split rows
                dx = np.empty(q.x_shape, dy.dtype)
                split = np.empty(q.x_shape[:-1] + (st * -(-q.in_size[2] // st),), dy.dtype)
            else:  # (pointwise: the GEMM writes every position)
                dx = split = np.empty(q.x_shape, dy.dtype)
            _dgrad(gemm_for(dy.dtype), THREADS_LOCAL, dy, w2, dx, split, q.kernel, q.stride, q.dilation, q.pad_lo,
                   q.groups, t.step, t.cb, t.pointwise, ws)
    if bias.size:
        dx += bias.reshape((-1,) + (1,) * 3)
    return dx


def wgrad(q, x, dy):
    t, ws = _plan(q)
    rows = (q.c_in // q.groups) * math.prod(q.kernel)
    partial = np.zeros((t.slots, q.groups, q.c_out // q.groups, rows), x.dtype)
    with single_threaded_blas:
        if t.flat:
            xp = np.empty((q.n, q.c_in) + q.input_extent, x.dtype)
            _box_copy(x, xp, q.pad_lo, True)
            _wgrad_flat(gemm_for(x.dtype), THREADS_LOCAL, xp, dy, partial, q.kernel, q.dilation, q.groups, t.step,
                        t.cb, t.kb, ws)
        else:
            _wgrad(gemm_for(x.dtype), THREADS_LOCAL, x, dy, partial, q.kernel, q.stride, q.dilation, q.pad_lo,
                   q.groups, t.step, t.cb, t.pointwise, ws)
    return np.add.reduce(partial, axis=0).reshape(q.w_shape)


KERNELS = Kernels(fwd, dgrad, wgrad)
register_algorithm("im2col", KERNELS, supports=_supports, workspace_bytes=workspace_bytes,
                   description="Numba im2col/col2im + BLAS GEMM per worker, chunked under the workspace cap")
