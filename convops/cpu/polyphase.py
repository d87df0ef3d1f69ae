"""``polyphase``: strided convolution as a sum of stride-1 convolutions of
the input's stride phases (phases.py), so the core kernels run unit-stride
work that vectorizes and no output is computed only to be discarded.

    fwd    y = sum over phase combinations f of conv(x_f, w_f)     (in phase order)
    wgrad  dw[taps of f] = wgrad(x_f, dy)                          (each tap in one phase)

dgrad of a strided convolution is the ``subpixel`` algorithm.
"""

from __future__ import annotations

import numpy as np

from .common import Kernels, register_algorithm
from .phases import core, phase_combinations, phase_view, phase_weight, zero_padded

_NO_BIAS = None


def fwd(g, x, w, bias):
    xp = zero_padded(x, g)
    y = None
    for combo, sub in phase_combinations(g):
        xs = np.ascontiguousarray(xp[phase_view(xp, combo, g.stride)][(slice(None), slice(None)) +
                                                                       tuple(slice(0, i) for i in sub.in_size)])
        part = core(sub).fwd(sub, xs, phase_weight(w, combo), bias if y is None else bias[:0])
        if y is None:
            y = part
        else:
            y += part
    return y


def wgrad(g, x, dy):
    xp = zero_padded(x, g)
    dw = np.zeros(g.w_shape, g.dtype)
    for combo, sub in phase_combinations(g):
        xs = np.ascontiguousarray(xp[phase_view(xp, combo, g.stride)][(slice(None), slice(None)) +
                                                                       tuple(slice(0, i) for i in sub.in_size)])
        dw[np.ix_(range(g.k), range(g.c // g.groups), *[ph.taps for ph in combo])] = core(sub).wgrad(sub, xs, dy)
    return dw


def _supports(p):
    return [] if any(s > 1 for s in p.stride) else ["stride 1: nothing to decompose"]


def _declines(p):
    # im2col gathers strided columns at no extra cost, and the phase split
    # shrinks the GEMMs; depthwise already splits column phases in its planes.
    return ["im2col/depthwise handle strides directly at least as fast (measured)"]


register_algorithm("polyphase", Kernels(fwd, None, wgrad), supports=_supports, declines=_declines, priority=60,
                   description="strided fwd/wgrad as stride-1 phase sub-problems")
