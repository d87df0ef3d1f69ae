"""``subpixel``: the input gradient of a strided convolution (a transposed
convolution) without multiplying the zeros a transposed convolution inserts.

Each stride phase of the padded input gradient is the stride-1 dgrad of its
phase sub-problem (phases.py): gx_f[h] = sum over the phase's taps of
dy[h - shift_r] * w[r].  Phases own disjoint positions, so each is written
once; phases with no tap stay zero.  Then the zero padding is cropped.
"""

from __future__ import annotations

import numpy as np

from .common import Kernels, register_algorithm
from .phases import core, crop_padding, extent, phase_combinations, phase_view, phase_weight


def dgrad(g, dy, w, bias):
    gxp = np.zeros((g.n, g.c) + extent(g), g.dtype)
    for combo, sub in phase_combinations(g):
        part = core(sub).dgrad(sub, dy, phase_weight(w, combo), bias[:0])
        target = gxp[phase_view(gxp, combo, g.stride)]
        target[(slice(None), slice(None)) + tuple(slice(0, i) for i in sub.in_size)] = part
    dx = crop_padding(gxp, g)
    if bias.size:
        dx += bias.reshape((-1,) + (1,) * 3)
    return dx


def _supports(p):
    return [] if any(s > 1 for s in p.stride) else ["stride 1: no inserted zeros to skip"]


def _declines(p):
    return ["im2col's col2im skips the inserted zeros too and was faster on every layer measured "
            "(bench/results)"]


register_algorithm("subpixel", Kernels(None, dgrad, None), supports=_supports, declines=_declines, priority=30,
                   description="strided dgrad / transposed conv as stride-1 phase sub-problems")
