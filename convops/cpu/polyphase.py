"""``polyphase``: strided convolution as a sum of stride-1 convolutions of
the input's stride phases (``ConvProblem.stride_phase_problems``), so the
sub-problems run unit-stride work that vectorizes and no output is computed
only to be discarded.

    fwd    y = sum over phase combinations f of conv(x_f, w_f)     (in phase order)
    wgrad  dw[taps of f] = wgrad(x_f, dy)                          (each tap in one phase)

dgrad of a strided convolution is the ``subpixel`` algorithm.  Each
sub-problem runs on the implementation ``select`` picks for it.
"""

from __future__ import annotations

import numpy as np

from .common import Kernels, register_algorithm
from .phases import (phase_index, phase_weight, run_subproblem, stride_subproblems, subproblem_workspace,
                     zero_padded)


def _phase_input(xp, combo, q, sub):
    return np.ascontiguousarray(xp[phase_index(combo, q.stride, sub.in_size)])


def fwd(q, x, w, bias):
    xp = zero_padded(x, q)
    y = None
    for combo, sub in q.stride_phase_problems():
        part = run_subproblem(sub, _phase_input(xp, combo, q, sub), phase_weight(w, combo), bias if y is None else None)
        if y is None:
            y = part
        else:
            y += part
    return y


def wgrad(q, x, dy):
    xp = zero_padded(x, q)
    dw = np.zeros(q.w_shape, x.dtype)
    for combo, sub in q.stride_phase_problems():
        dw[np.ix_(range(q.c_out), range(q.c_in // q.groups), *[ph.taps for ph in combo])] = \
            run_subproblem(sub, _phase_input(xp, combo, q, sub), dy)
    return dw


def _supports(p):
    return [] if any(s > 1 for s in p.stride) else ["stride 1: nothing to decompose"]


def _declines(p):
    # im2col gathers strided columns at no extra cost, and the phase split
    # shrinks the GEMMs; depthwise already splits column phases in its planes.
    return ["im2col/depthwise handle strides directly at least as fast (measured)"]


register_algorithm("polyphase", Kernels(fwd, None, wgrad), supports=_supports, declines=_declines,
                   subproblems=stride_subproblems, workspace_bytes=subproblem_workspace(stride_subproblems),
                   description="strided fwd/wgrad as stride-1 phase sub-problems")
