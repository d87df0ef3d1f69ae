"""Array helpers of the phase decompositions (polyphase, subpixel,
space_to_batch).  The sizes come from ConvProblem
(``stride_phase_problems``, ``dilation_batch_problem``, ``input_extent``);
the sub-problems run through ``dispatch`` like any call, so ``explain``
shows which implementation runs each phase.

Arrays are (N, C, D, H, W) in the compute dtype; ``q`` is the kernel problem
(3-D, zero padding, see common.kernel_problem).
"""

from __future__ import annotations

import numpy as np

from .common import kernel_problem

_ALL = (slice(None), slice(None))


def zero_padded(x: np.ndarray, q) -> np.ndarray:
    """x with its zero padding made explicit, cut or extended to exactly the
    extent the outputs read (``q.input_extent``)."""
    size = q.input_extent
    xp = np.zeros(x.shape[:2] + size, x.dtype)
    src = tuple(slice(0, max(0, min(i, e - p))) for i, e, p in zip(q.in_size, size, q.pad_lo))
    dst = tuple(slice(p, p + sl.stop) for p, sl in zip(q.pad_lo, src))
    xp[_ALL + dst] = x[_ALL + src]
    return xp


def crop_padding(gxp: np.ndarray, q) -> np.ndarray:
    """The adjoint of zero_padded: the input's region of a padded gradient."""
    gx = np.zeros((gxp.shape[0], gxp.shape[1]) + q.in_size, gxp.dtype)
    src = tuple(slice(p, min(e, p + i)) for i, e, p in zip(q.in_size, gxp.shape[2:], q.pad_lo))
    dst = tuple(slice(0, max(0, sl.stop - sl.start)) for sl in src)
    gx[_ALL + dst] = gxp[_ALL + src]
    return gx


def phase_index(combo, stride, size) -> tuple:
    """Index of the phase sub-image ``combo`` (``size`` elements per dim,
    from its first tap's shift) in a padded array."""
    return _ALL + tuple(slice(ph.start + ph.shift * s, ph.start + ph.shift * s + n * s, s)
                        for ph, s, n in zip(combo, stride, size))


def phase_weight(w: np.ndarray, combo) -> np.ndarray:
    """The weight's taps of one phase combination."""
    return np.ascontiguousarray(w[np.ix_(range(w.shape[0]), range(w.shape[1]), *[ph.taps for ph in combo])])


def run_subproblem(sub, a, b, bias=None):
    """Run a sub-problem on the numba backend with the implementation
    ``select`` chooses for it (the one ``explain`` shows)."""
    from .. import dispatch  # dispatch imports the backends: import at call time
    return dispatch.plan_subproblem(sub, "numba").chosen.run(sub, a, b, bias if bias is not None and bias.size
                                                             else None)


def stride_subproblems(problem) -> list:
    """The sub-problems a stride-phase decomposition runs (for ``explain``)."""
    return [sub for _, sub in kernel_problem(problem).stride_phase_problems()]


def subproblem_workspace(subproblems):
    """``workspace_bytes`` of a decomposition: the most any of its sub-problems'
    implementations holds (they run one after another)."""
    from .. import dispatch

    def workspace_bytes(problem) -> int:
        return max((dispatch.plan_subproblem(sub, "numba").chosen.workspace_bytes(sub) for sub in subproblems(problem)),
                   default=0)
    return workspace_bytes
