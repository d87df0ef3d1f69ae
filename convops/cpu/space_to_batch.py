"""``space_to_batch``: a dilated convolution as one undilated convolution of
a batch of phase sub-images, so no skipped tap is ever touched.

With stride 1 and dilation d (per dim), output o = d*o' + f reads
xp[d*(o' + r) + f] = x_f[o' + r] with x_f = xp[f::d]: every output phase f
is an undilated convolution of input phase f.  The padded input (extended
with zeros to a multiple of d) is rearranged so the d^3 phases become batch
entries, the core runs once, and the result is rearranged back:

    fwd    y phases   = conv(x phases, w)
    dgrad  dx phases  = dgrad(dy phases, w)     (dy phases padded with zeros past P)
    wgrad  dw         = wgrad(x phases, dy phases): the batch sum covers the phases
"""

from __future__ import annotations

import numpy as np

from .common import Kernels, register_algorithm
from .phases import core, crop_padding, zero_padded


def _plan(g):
    """Phase-batch geometry: input per phase ceil(extent/d), output ceil(P/d)."""
    d = g.dilation
    out = tuple(-(-o // di) for o, di in zip(g.out_size, d))
    inp = tuple(o + k - 1 for o, k in zip(out, g.kernel))
    sub = g._replace(n=g.n * d[0] * d[1] * d[2], in_size=inp, out_size=out, dilation=(1, 1, 1), pad=(0, 0, 0))
    return sub


def _to_batch(a, d, size):
    """(N, C, d0*s0, d1*s1, d2*s2) (zero-extended to ``size``*d) -> (d0*d1*d2*N, C, s0, s1, s2)."""
    full = np.zeros(a.shape[:2] + tuple(s * di for s, di in zip(size, d)), a.dtype)
    region = tuple(slice(0, min(e, s * di)) for e, s, di in zip(a.shape[2:], size, d))
    full[(slice(None), slice(None)) + region] = a[(slice(None), slice(None)) + region]
    n, c = a.shape[:2]
    v = full.reshape(n, c, size[0], d[0], size[1], d[1], size[2], d[2])
    return np.ascontiguousarray(v.transpose(3, 5, 7, 0, 1, 2, 4, 6)).reshape((-1, c) + tuple(size))


def _from_batch(b, d, n, size):
    """The inverse rearrangement, cropped to ``size``."""
    c = b.shape[1]
    s = b.shape[2:]
    v = b.reshape(d[0], d[1], d[2], n, c, s[0], s[1], s[2]).transpose(3, 4, 5, 0, 6, 1, 7, 2)
    full = v.reshape(n, c, s[0] * d[0], s[1] * d[1], s[2] * d[2])
    return np.ascontiguousarray(full[(slice(None), slice(None)) + tuple(slice(0, e) for e in size)])


def fwd(g, x, w, bias):
    sub = _plan(g)
    xb = _to_batch(zero_padded(x, g), g.dilation, sub.in_size)
    return _from_batch(core(sub).fwd(sub, xb, w, bias), g.dilation, g.n, g.out_size)


def dgrad(g, dy, w, bias):
    sub = _plan(g)
    dyb = _to_batch(dy, g.dilation, sub.out_size)
    extent = tuple((o - 1) + d * (k - 1) + 1 if o else 0 for o, d, k in zip(g.out_size, g.dilation, g.kernel))
    gxp = _from_batch(core(sub).dgrad(sub, dyb, w, bias[:0]), g.dilation, g.n, extent)
    dx = crop_padding(gxp, g)
    if bias.size:
        dx += bias.reshape((-1,) + (1,) * 3)
    return dx


def wgrad(g, x, dy):
    sub = _plan(g)
    xb = _to_batch(zero_padded(x, g), g.dilation, sub.in_size)
    dyb = _to_batch(dy, g.dilation, sub.out_size)
    return core(sub).wgrad(sub, xb, dyb)


def _supports(p):
    reasons = []
    if all(d == 1 for d in p.dilation):
        reasons.append("no dilation: nothing to skip")
    if any(s > 1 for s in p.stride):
        reasons.append(f"stride {p.stride}: phases of a strided dilated conv are not batched here (use polyphase)")
    return reasons


def _declines(p):
    return ["im2col gathers dilated taps at no extra cost; the phase rearrangement made it slower on every "
            "layer measured (bench/results)"]


register_algorithm("space_to_batch", Kernels(fwd, dgrad, wgrad), supports=_supports, declines=_declines, priority=45,
                   description="dilated conv as an undilated conv over a batch of phase sub-images")
