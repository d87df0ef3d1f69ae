"""Row primitives shared by the direct and depthwise kernels.

Numba wraps negative indices, and a loop whose index may be negative keeps
that test and does not vectorize; so every inner loop here runs from 0 over
views cut to the valid range (LLVM then emits packed FMAs).  Taps along the
last axis are applied three at a time where all three are in range, so the
output row is loaded and stored once per three taps.

These helpers are inlined into the kernels that use them.  Numba's on-disk
cache keys a kernel on its own file only: after editing this file, clear the
caches (``find convops -name '*.nb[ic]' -delete``) or the kernels keep the
old inlined code.  (An installed release is unaffected: new files, new keys.)
"""

from __future__ import annotations

from numba import njit

from .. import config

FASTMATH = set(config.cpu_fastmath)


@njit(inline="always")
def valid_range(offset, stride, size, count):
    """[lo, hi) of q in [0, count) with 0 <= q*stride + offset < size; never
    reversed (0 <= lo <= hi <= count), so slices built from it are empty,
    not wrapped, when no q qualifies."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = (size - offset + stride - 1) // stride if size > offset else 0
    lo = min(lo, count)
    return lo, min(max(hi, lo), count)


@njit(inline="always")
def source_index(o, stride, tap, dilation, pad, size):
    """Input index read by output o through tap, or -1 when it is padding."""
    i = o * stride + tap * dilation - pad
    return i if 0 <= i < size else -1


@njit(inline="always", fastmath=FASTMATH)
def axpy(dst, src, a):
    """dst += a * src (same length)."""
    for q in range(dst.size):
        dst[q] += a * src[q]


@njit(inline="always", fastmath=FASTMATH)
def axpy_strided(dst, src, a, stride):
    """dst[q] += a * src[q * stride]."""
    for q in range(dst.size):
        dst[q] += a * src[q * stride]


@njit(inline="always", fastmath=FASTMATH)
def dot(a, b):
    total = a.dtype.type(0)
    for q in range(a.size):
        total += a[q] * b[q]
    return total


@njit(inline="always", fastmath=FASTMATH)
def correlate_row(dst, src, w, w0, ntaps, dilation, offset, stride):
    """dst[q] += sum_s w[w0 + s] * src[q*stride + s*dilation + offset] over the
    taps s < ntaps that fall inside src (zero padding elsewhere).  Unit
    stride applies taps three at a time over their common range."""
    n_dst, n_src = dst.size, src.size
    s = 0
    if stride == 1:
        while s + 2 < ntaps:
            o0 = s * dilation + offset
            o1 = o0 + dilation
            o2 = o1 + dilation
            lo0, hi0 = valid_range(o0, 1, n_src, n_dst)
            lo2, hi2 = valid_range(o2, 1, n_src, n_dst)
            lo, hi = max(lo0, lo2), min(hi0, hi2)  # o1 lies between: valid where both ends are
            a0, a1, a2 = w[w0 + s], w[w0 + s + 1], w[w0 + s + 2]
            if lo < hi:
                d = dst[lo:hi]
                x0 = src[lo + o0:hi + o0]
                x1 = src[lo + o1:hi + o1]
                x2 = src[lo + o2:hi + o2]
                for q in range(d.size):
                    d[q] += a0 * x0[q] + a1 * x1[q] + a2 * x2[q]
                edges = ((0, lo), (hi, n_dst))
            else:
                edges = ((0, n_dst), (0, 0))
            for e in range(2):
                e_lo, e_hi = edges[e]
                for k in range(3):
                    ok = o0 + k * dilation
                    klo, khi = valid_range(ok, 1, n_src, n_dst)
                    klo, khi = max(klo, e_lo), min(khi, e_hi)
                    if klo < khi:
                        axpy(dst[klo:khi], src[klo + ok:khi + ok], w[w0 + s + k])
            s += 3
    while s < ntaps:
        o = s * dilation + offset
        lo, hi = valid_range(o, stride, n_src, n_dst)
        if lo < hi:
            if stride == 1:
                axpy(dst[lo:hi], src[lo + o:hi + o], w[w0 + s])
            else:
                axpy_strided(dst[lo:hi], src[lo * stride + o:], w[w0 + s], stride)
        s += 1


@njit(inline="always", fastmath=FASTMATH)
def scatter_row(dst, src, w, w0, ntaps, dilation, offset, stride):
    """The adjoint of correlate_row: dst[q*stride + s*dilation + offset] += w[w0 + s] * src[q].
    Unit stride is a correlation with negated offsets; otherwise tap by tap."""
    n_dst, n_src = dst.size, src.size
    for s in range(ntaps):
        o = s * dilation + offset
        lo, hi = valid_range(o, stride, n_dst, n_src)
        if lo < hi:
            a = w[w0 + s]
            if stride == 1:
                axpy(dst[lo + o:hi + o], src[lo:hi], a)
            else:
                d = dst[lo * stride + o:]
                g = src[lo:hi]
                for q in range(g.size):
                    d[q * stride] += a * g[q]


@njit(inline="always", fastmath=FASTMATH)
def tap_dots(acc, a0, grow, xrow, ntaps, dilation, offset, stride):
    """acc[a0 + s] += sum_q grow[q] * xrow[q*stride + s*dilation + offset] (valid q only)."""
    n_g, n_x = grow.size, xrow.size
    for s in range(ntaps):
        o = s * dilation + offset
        lo, hi = valid_range(o, stride, n_x, n_g)
        if lo < hi:
            if stride == 1:
                acc[a0 + s] += dot(grow[lo:hi], xrow[lo + o:hi + o])
            else:
                g = grow[lo:hi]
                x = xrow[lo * stride + o:]
                total = acc.dtype.type(0)
                for q in range(g.size):
                    total += g[q] * x[q * stride]
                acc[a0 + s] += total
