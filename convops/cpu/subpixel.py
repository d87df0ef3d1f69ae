"""``subpixel``: the input gradient of a strided convolution (a transposed
convolution) without multiplying the zeros a transposed convolution inserts.

Each stride phase of the padded input gradient is the stride-1 dgrad of its
phase sub-problem (``ConvProblem.stride_phase_problems``): gx_f[h] = sum over
the phase's taps of dy[h - shift_r] * w[r].  Phases own disjoint positions,
so each is written once; phases with no tap stay zero.  Then the zero
padding is cropped.  Each sub-problem runs on the implementation ``select``
picks for it.
"""

from __future__ import annotations

import numpy as np

from .common import Kernels, register_algorithm
from .phases import (crop_padding, phase_index, phase_weight, run_subproblem, stride_subproblems,
                     subproblem_workspace)


def dgrad(q, dy, w, bias):
    gxp = np.zeros((q.n, q.c_in) + q.input_extent, dy.dtype)
    for combo, sub in q.stride_phase_problems():
        gxp[phase_index(combo, q.stride, sub.in_size)] = run_subproblem(sub, dy, phase_weight(w, combo))
    dx = crop_padding(gxp, q)
    if bias.size:
        dx += bias.reshape((-1,) + (1,) * 3)
    return dx


def _supports(p):
    return [] if any(s > 1 for s in p.stride) else ["stride 1: no inserted zeros to skip"]


def _declines(p):
    return ["im2col's col2im skips the inserted zeros too and was faster on every layer measured "
            "(bench/results)"]


register_algorithm("subpixel", Kernels(None, dgrad, None), supports=_supports, declines=_declines,
                   subproblems=stride_subproblems, workspace_bytes=subproblem_workspace(stride_subproblems),
                   description="strided dgrad / transposed conv as stride-1 phase sub-problems")
