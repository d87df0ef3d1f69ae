"""``space_to_batch``: a dilated convolution as one undilated convolution of
a batch of phase sub-images, so no skipped tap is ever touched.

With stride 1 and dilation d (per dim), output o = d*o' + f reads
xp[d*(o' + r) + f] = x_f[o' + r] with x_f = xp[f::d]: every output phase f
is an undilated convolution of input phase f.  The padded input (extended
with zeros to a multiple of d) is rearranged so the d^3 phases become batch
entries (``ConvProblem.dilation_batch_problem``), the sub-problem runs once
(on the implementation ``select`` picks), and the result is rearranged back:

    fwd    y phases   = conv(x phases, w)          (outputs past P dropped)
    dgrad  dx phases  = dgrad(dy phases, w)
    wgrad  dw         = wgrad(x phases, dy phases): the batch sum covers the phases

The batch needs every phase to have the same number of outputs; for dgrad
and wgrad that means P a multiple of d (a zero standing in for a missing
output gradient would multiply real operands: 0 * inf), so they are
declined otherwise.
"""

from __future__ import annotations

import numpy as np

from .common import Kernels, kernel_problem, register_algorithm
from .phases import crop_padding, run_subproblem, subproblem_workspace, zero_padded


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


def fwd(q, x, w, bias):
    sub = q.dilation_batch_problem()
    xb = _to_batch(zero_padded(x, q), q.dilation, sub.in_size)
    return _from_batch(run_subproblem(sub, xb, w, bias), q.dilation, q.n, q.out_size)


def dgrad(q, dy, w, bias):
    sub = q.dilation_batch_problem()
    dyb = _to_batch(dy, q.dilation, sub.out_size)
    gxp = _from_batch(run_subproblem(sub, dyb, w), q.dilation, q.n, q.input_extent)
    dx = crop_padding(gxp, q)
    if bias.size:
        dx += bias.reshape((-1,) + (1,) * 3)
    return dx


def wgrad(q, x, dy):
    sub = q.dilation_batch_problem()
    xb = _to_batch(zero_padded(x, q), q.dilation, sub.in_size)
    dyb = _to_batch(dy, q.dilation, sub.out_size)
    return run_subproblem(sub, xb, dyb)


def _supports(p):
    reasons = []
    if all(d == 1 for d in p.dilation):
        reasons.append("no dilation: nothing to skip")
    if any(s > 1 for s in p.stride):
        reasons.append(f"stride {p.stride}: phases of a strided dilated conv are not batched here (use polyphase)")
    if p.op != "fwd" and any(o % d for o, d in zip(p.out_size, p.dilation)):
        reasons.append(f"output size {p.out_size} is not a multiple of the dilation {p.dilation}: the phases "
                       f"differ in size, and a stand-in zero gradient would multiply real operands")
    return reasons


def _declines(p):
    return ["im2col gathers dilated taps at no extra cost; the phase rearrangement made it slower on every "
            "layer measured (bench/results)"]


def _subproblems(p):
    return [kernel_problem(p).dilation_batch_problem()]


register_algorithm("space_to_batch", Kernels(fwd, dgrad, wgrad), supports=_supports, declines=_declines,
                   subproblems=_subproblems, workspace_bytes=subproblem_workspace(_subproblems),
                   description="dilated conv as an undilated conv over a batch of phase sub-images")
