"""Phase decompositions shared by the polyphase, subpixel and space_to_batch
algorithms.  They turn a strided or dilated problem into stride-1 (or
undilated) sub-problems on phase sub-images, run by a core algorithm
(depthwise for depthwise problems, im2col otherwise), on the 3-D geometry
with the zero padding made explicit.

Stride phases, one dimension (stride s, dilation d, padded input xp): output
o reads xp[o*s + r*d].  With r*d = s*m_r + f_r, that is x_f[o + m_r] with
x_f = xp[f::s]: the taps of phase f form a stride-1 convolution of x_f with
dilation d/gcd(s, d), starting at shift m of its first tap.  Every tap is in
exactly one phase.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

from . import depthwise, im2col
from .common import Geometry


class Phase(NamedTuple):
    """One stride phase of one dimension: its taps, the shift of the first
    tap in the phase sub-image, and the dilation among its taps."""

    start: int
    taps: tuple
    shift: int
    dilation: int


def stride_phases(k: int, s: int, d: int) -> list[Phase]:
    """The non-empty stride phases of a kernel of size k (see module doc)."""
    out = []
    for f in range(s):
        taps = tuple(r for r in range(k) if (r * d) % s == f)
        if taps:
            out.append(Phase(f, taps, (taps[0] * d) // s, d // math.gcd(s, d)))
    return out


def extent(g: Geometry) -> tuple:
    """Padded input length each output reaches: (P - 1)*s + d*(k - 1) + 1."""
    return tuple((o - 1) * s + d * (k - 1) + 1 if o else 0
                 for o, s, d, k in zip(g.out_size, g.stride, g.dilation, g.kernel))


def zero_padded(x: np.ndarray, g: Geometry) -> np.ndarray:
    """x (N, C, D, H, W) with its zero padding made explicit, cut or extended
    to exactly the extent the outputs read."""
    size = extent(g)
    xp = np.zeros(x.shape[:2] + size, x.dtype)
    src = tuple(slice(0, max(0, min(i, e - p))) for i, e, p in zip(g.in_size, size, g.pad))
    dst = tuple(slice(p, p + sl.stop) for p, sl in zip(g.pad, src))
    xp[(slice(None), slice(None)) + dst] = x[(slice(None), slice(None)) + src]
    return xp


def crop_padding(gxp: np.ndarray, g: Geometry) -> np.ndarray:
    """The adjoint of zero_padded: the input's region of a padded gradient."""
    gx = np.zeros((gxp.shape[0], gxp.shape[1]) + g.in_size, gxp.dtype)
    src = tuple(slice(p, min(e, p + i)) for i, e, p in zip(g.in_size, gxp.shape[2:], g.pad))
    dst = tuple(slice(0, max(0, sl.stop - sl.start)) for sl in src)
    gx[(slice(None), slice(None)) + dst] = gxp[(slice(None), slice(None)) + src]
    return gx


def core(g: Geometry):
    """The algorithm that runs the sub-problems."""
    return depthwise if g.groups == g.c and g.c > 0 else im2col


def phase_combinations(g: Geometry):
    """Every combination of non-empty stride phases over the 3 dims, with the
    sub-problem geometry it defines (stride 1, no padding, output P)."""
    per_dim = [stride_phases(k, s, d) for k, s, d in zip(g.kernel, g.stride, g.dilation)]
    size = extent(g)
    for combo in itertools.product(*per_dim):
        in_size = tuple(-(-(e - ph.start) // s) - ph.shift for e, ph, s in zip(size, combo, g.stride))
        sub = g._replace(in_size=in_size, kernel=tuple(len(ph.taps) for ph in combo), stride=(1, 1, 1),
                         dilation=tuple(ph.dilation for ph in combo), pad=(0, 0, 0))
        yield combo, sub


def phase_view(a: np.ndarray, combo, stride) -> tuple:
    """Index of phase sub-image ``combo`` (from its first tap's shift) in a padded array."""
    return (slice(None), slice(None)) + tuple(slice(ph.start + ph.shift * s, None, s) for ph, s in zip(combo, stride))


def phase_weight(w: np.ndarray, combo) -> np.ndarray:
    return np.ascontiguousarray(w[np.ix_(range(w.shape[0]), range(w.shape[1]), *[ph.taps for ph in combo])])
