"""The NumPy reference backend: naive, float64 accumulation, the oracle.

Each pass is a loop over kernel taps; for one tap the contribution of every
output position is a strided slice of the padded input times one weight
matrix (an einsum over the channels of a group).  Padding modes are applied
with ``np.pad`` on the way in; the adjoint passes fold the gradient of the
padded input back with the same index map ``np.pad`` would use, so dgrad is
the exact adjoint of fwd for every padding mode.

This module shares no code with the kernels except :class:`ConvProblem`.
Shapes: x (N, C, *in_size), w (K, C/g, *kernel), y (N, K, *out_size).
"""

from __future__ import annotations

import numpy as np

from .problem import ConvProblem

_NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
               "circular": "wrap", "symmetric": "symmetric"}


def _pad(x: np.ndarray, p: ConvProblem) -> np.ndarray:
    """Pad the spatial dims of (N, C, *in_size) x as the padding mode says."""
    return np.pad(x, [(0, 0), (0, 0), *p.padding], mode=_NUMPY_MODE[p.padding_mode])


def _unpad_adjoint(g: np.ndarray, p: ConvProblem) -> np.ndarray:
    """Adjoint of :func:`_pad`: each padded position's gradient is added to the
    input element it was copied from (zeros mode: padding is dropped)."""
    for axis, (n, (lo, hi)) in enumerate(zip(p.in_size, p.padding), start=2):
        if p.padding_mode == "zeros":
            g = np.take(g, np.arange(lo, lo + n), axis=axis)
            continue
        source = np.pad(np.arange(n), (lo, hi), mode=_NUMPY_MODE[p.padding_mode])
        moved = np.moveaxis(g, axis, 0)
        folded = np.zeros((n,) + moved.shape[1:])
        np.add.at(folded, source, moved)
        g = np.moveaxis(folded, 0, axis)
    return g


def _window(p: ConvProblem, tap) -> tuple:
    """Index of the padded input read by kernel tap ``tap`` for every output."""
    index = [slice(None)] * 3
    for t, d, s, o in zip(tap, p.dilation, p.stride, p.out_size):
        start = t * d
        index.append(slice(start, start + (o - 1) * s + 1 if o else start, s))
    return tuple(index)


def _grouped(a: np.ndarray, groups: int) -> np.ndarray:
    """(N, G*c, ...) -> (N, G, c, ...) in float64."""
    return a.astype(np.float64).reshape(a.shape[0], groups, a.shape[1] // groups, *a.shape[2:])


def _weight(w: np.ndarray, p: ConvProblem) -> np.ndarray:
    """(K, C/g, *kernel) -> (G, K/g, C/g, *kernel) in float64."""
    return w.astype(np.float64).reshape(p.groups, p.c_out // p.groups, *w.shape[1:])


def forward(p: ConvProblem, x: np.ndarray, w: np.ndarray, bias=None) -> np.ndarray:
    """y[n, k, o] = sum_{c in group(k), r} xpad[n, c, o*s + r*d] * w[k, c, r] (+ bias[k])."""
    xg = _grouped(_pad(x, p), p.groups)
    wg = _weight(w, p)
    y = np.zeros((p.n, p.groups, p.c_out // p.groups) + p.out_size)
    for tap in np.ndindex(*p.kernel):
        y += np.einsum("ngc...,gkc->ngk...", xg[_window(p, tap)], wg[(Ellipsis,) + tap])
    y = y.reshape(p.y_shape)
    if bias is not None:
        y += bias.astype(np.float64).reshape((-1,) + (1,) * p.ndim)
    return y.astype(p.dtype)


def grad_input(p: ConvProblem, dy: np.ndarray, w: np.ndarray, bias=None) -> np.ndarray:
    """dx = adjoint of forward in x: scatter dy * w into the padded input, then
    fold the padding back.  With ``bias`` this is a transposed convolution."""
    dyg = _grouped(dy, p.groups)
    wg = _weight(w, p)
    gxp = np.zeros((p.n, p.groups, p.c_in // p.groups) + p.padded_size)
    for tap in np.ndindex(*p.kernel):
        gxp[_window(p, tap)] += np.einsum("ngk...,gkc->ngc...", dyg, wg[(Ellipsis,) + tap])
    dx = _unpad_adjoint(gxp.reshape((p.n, p.c_in) + p.padded_size), p)
    if bias is not None:
        dx = dx + bias.astype(np.float64).reshape((-1,) + (1,) * p.ndim)
    return dx.astype(p.dtype)


def grad_weight(p: ConvProblem, x: np.ndarray, dy: np.ndarray, bias=None) -> np.ndarray:
    """dw[k, c, r] = sum_{n, o} dy[n, k, o] * xpad[n, c, o*s + r*d]."""
    xg = _grouped(_pad(x, p), p.groups)
    positions = int(np.prod(p.out_size))  # explicit sizes: -1 is ambiguous for an empty batch
    dyg = _grouped(dy, p.groups).reshape(p.n, p.groups, p.c_out // p.groups, positions)
    gw = np.zeros((p.groups, p.c_out // p.groups, p.c_in // p.groups) + p.kernel)
    for tap in np.ndindex(*p.kernel):
        window = xg[_window(p, tap)].reshape(p.n, p.groups, p.c_in // p.groups, positions)
        gw[(Ellipsis,) + tap] = np.einsum("ngkp,ngcp->gkc", dyg, window)
    return gw.reshape(p.w_shape).astype(p.dtype)


def run(p: ConvProblem, a: np.ndarray, b: np.ndarray, bias=None) -> np.ndarray:
    """Run pass ``p.op`` on its two operands (see ConvProblem.operand_shapes)."""
    return {"fwd": forward, "dgrad": grad_input, "wgrad": grad_weight}[p.op](p, a, b, bias)


def _register():
    from .registry import Implementation, register
    for op in ("fwd", "dgrad", "wgrad"):
        register(Implementation(op=op, backend="numpy", algorithm="reference", run=run,
                                description="NumPy, float64 accumulation: the oracle"))


_register()
