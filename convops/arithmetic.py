"""Convolution arithmetic: the shape relations of Dumoulin & Visin (2016).

"A guide to convolution arithmetic for deep learning", as plain functions on
ints.  Notation for one spatial dimension: input size ``i``, kernel size ``k``,
stride ``s``, dilation ``d``, padding ``p_lo``/``p_hi`` (``p`` = their sum) and,
for transposed convolutions, output padding ``a``.  The effective (dilated)
kernel size is ``d*(k-1) + 1``.

    convolution:            o  = floor((i + p - d*(k-1) - 1) / s) + 1
    transposed convolution: o' = s*(i' - 1) + a + d*(k-1) + 1 - p

These functions are the only place convops computes an output size;
``ConvProblem`` and ``convops shape`` use them.
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Sequence

__all__ = [
    "effective_kernel_size",
    "conv_output_size",
    "conv_transpose_output_size",
    "conv_transpose_output_range",
    "conv_input_extent",
    "Phase",
    "stride_phases",
    "phase_input_size",
    "resolve_padding",
    "TransposeEquivalent",
    "transpose_equivalent",
    "ReceptiveField",
    "receptive_field",
    "conv_params",
    "conv_flops",
]


def _pair(padding) -> tuple[int, int]:
    """An int or a ``(lo, hi)`` pair as a ``(lo, hi)`` pair."""
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ValueError(f"padding must be an int or a (lo, hi) pair, got padding={padding!r}")
        return int(padding[0]), int(padding[1])
    return int(padding), int(padding)


def effective_kernel_size(k: int, dilation: int = 1) -> int:
    """Extent of a dilated kernel: ``d*(k-1) + 1`` (0 for an empty kernel)."""
    return dilation * (k - 1) + 1 if k > 0 else 0


def conv_output_size(i: int, k: int, stride: int = 1, padding=0, dilation: int = 1) -> int:
    """Output size of a convolution along one dimension.

    ``o = floor((i + p_lo + p_hi - d*(k-1) - 1) / s) + 1``.  ``padding`` is an
    int (both sides) or a ``(lo, hi)`` pair.  An empty padded input gives an
    empty output; a dilated kernel larger than a non-empty padded input is a
    ValueError.
    """
    lo, hi = _pair(padding)
    if stride < 1 or dilation < 1 or k < 1 or i < 0 or lo < 0 or hi < 0:
        raise ValueError(
            f"need i >= 0, k >= 1, stride >= 1, dilation >= 1, padding >= 0; got "
            f"i={i}, k={k}, stride={stride}, dilation={dilation}, padding={(lo, hi)}"
        )
    padded = i + lo + hi
    extent = effective_kernel_size(k, dilation)
    if padded == 0:
        return 0
    if extent > padded:
        raise ValueError(
            f"dilated kernel size {extent} (kernel {k}, dilation {dilation}) is larger than "
            f"the padded input size {padded} (input {i}, padding {(lo, hi)})"
        )
    return (padded - extent) // stride + 1


def _check_transposed(i, k, stride, dilation, lo, hi, output_padding=0):
    if (stride < 1 or dilation < 1 or k < 1 or i < 0 or lo < 0 or hi < 0 or output_padding < 0
            or output_padding >= max(stride, dilation)):
        raise ValueError(
            f"need i >= 0, k >= 1, stride >= 1, dilation >= 1, padding >= 0 and 0 <= output_padding < "
            f"max(stride, dilation); got i={i}, k={k}, stride={stride}, dilation={dilation}, "
            f"padding={(lo, hi)}, output_padding={output_padding}"
        )


def conv_transpose_output_size(
    i: int, k: int, stride: int = 1, padding=0, dilation: int = 1, output_padding: int = 0
) -> int:
    """Output size of a transposed convolution along one dimension.

    ``o' = s*(i' - 1) + a + d*(k-1) + 1 - p_lo - p_hi`` with output padding
    ``0 <= a < max(s, d)``; an empty input gives an empty output.  A
    non-positive result, or a parameter out of range, is a ValueError.
    """
    lo, hi = _pair(padding)
    _check_transposed(i, k, stride, dilation, lo, hi, output_padding)
    if i == 0:
        return 0
    o = stride * (i - 1) + output_padding + effective_kernel_size(k, dilation) - lo - hi
    if o < 1:
        raise ValueError(
            f"transposed convolution output size would be {o} (input {i}, kernel {k}, stride "
            f"{stride}, padding {(lo, hi)}, dilation {dilation}, output_padding {output_padding})"
        )
    return o


def conv_transpose_output_range(i: int, k: int, stride: int = 1, padding=0, dilation: int = 1) -> tuple[int, int]:
    """Inclusive range of output sizes a transposed convolution can produce.

    Output padding ``a`` runs over ``0 .. max(stride, dilation) - 1`` and sizes
    below 1 are dropped.  Sizes up to ``stride - 1`` above the smallest are
    mapped back to ``i`` by the forward convolution (its floor division
    discards the remainder); larger ones (possible when dilation > stride) are
    the adjoint of a forward convolution whose outputs past ``i`` are
    discarded.  An empty input gives ``(0, 0)``; no valid size is a ValueError.
    """
    lo, hi = _pair(padding)
    _check_transposed(i, k, stride, dilation, lo, hi)
    if i == 0:
        return 0, 0
    low = stride * (i - 1) + effective_kernel_size(k, dilation) - lo - hi
    high = low + max(stride, dilation) - 1
    if high < 1:
        raise ValueError(
            f"transposed convolution has no valid output size (largest would be {high}): input {i}, kernel "
            f"{k}, stride {stride}, padding {(lo, hi)}, dilation {dilation}"
        )
    return max(low, 1), high


def conv_input_extent(o: int, k: int, stride: int = 1, dilation: int = 1) -> int:
    """Length of the padded input that ``o`` outputs read: ``(o - 1)*s + d*(k-1) + 1``
    (0 when there are no outputs)."""
    return (o - 1) * stride + effective_kernel_size(k, dilation) if o > 0 else 0


class Phase(NamedTuple):
    """One stride phase of one dimension: output ``o`` reads padded input
    ``o*s + r*d``; with ``r*d = s*m_r + f`` that is ``x_f[o + m_r]`` in the phase
    sub-image ``x_f = xpad[f::s]``.  ``taps`` are the kernel taps with
    ``r*d % s == start``, ``shift`` is ``m`` of the first of them, and
    ``dilation`` the spacing of consecutive taps inside the phase."""

    start: int
    taps: tuple
    shift: int
    dilation: int


def stride_phases(k: int, stride: int, dilation: int = 1) -> list:
    """The non-empty stride phases of a kernel of size ``k``: each tap is in
    exactly one, each phase is a stride-1 convolution.  At most ``min(k, s)``
    phases (a phase exists only where a tap lands), so the work never scales
    with the stride."""
    by_phase: dict = {}
    for r in range(k):
        by_phase.setdefault((r * dilation) % stride, []).append(r)
    step = dilation // math.gcd(stride, dilation)
    return [Phase(f, tuple(taps), (taps[0] * dilation) // stride, step) for f, taps in sorted(by_phase.items())]


def phase_input_size(extent: int, phase: Phase, stride: int) -> int:
    """Elements of phase sub-image ``xpad[start + shift*s :: s]`` within ``extent``."""
    first = phase.start + phase.shift * stride
    return max(0, -(-(extent - first) // stride))


def resolve_padding(mode: str, i: int, k: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """``(lo, hi)`` padding of a padding string along one dimension.

    - ``"valid"``: no padding.
    - ``"same"``: output ``ceil(i / s)`` for any stride; the total
      ``max((o - 1)*s + d*(k-1) + 1 - i, 0)`` is split with the odd extra at the
      high end, as TensorFlow and JAX do.
    - ``"full"``: ``d*(k-1)`` on each side (every partial overlap).
    """
    if mode == "valid":
        return 0, 0
    if mode == "same":
        o = -(-i // stride)
        total = max((o - 1) * stride + effective_kernel_size(k, dilation) - i, 0)
        return total // 2, total - total // 2
    if mode == "full":
        extent = effective_kernel_size(k, dilation) - 1
        return extent, extent
    raise ValueError(f"padding string must be 'valid', 'same' or 'full', got padding={mode!r}")


class TransposeEquivalent(NamedTuple):
    """The direct convolution equivalent to a transposed one (one dimension).

    Insert ``stride - 1`` zeros between input elements (``input_size`` is the
    size after insertion), pad by ``padding`` (negative = crop), then
    correlate with the *flipped* kernel at ``dilation`` and stride 1.
    """

    input_size: int
    padding: tuple[int, int]
    kernel: int
    stride: int
    dilation: int
    output_size: int


def transpose_equivalent(
    i: int, k: int, stride: int = 1, padding=0, dilation: int = 1, output_padding: int = 0
) -> TransposeEquivalent:
    """Guide, relationship 14 generalized: the zero-inserted direct convolution.

    The inserted input has ``(i - 1)*s + 1`` elements and is padded by
    ``d*(k-1) - p_lo`` below and ``d*(k-1) - p_hi + a`` above.
    """
    lo, hi = _pair(padding)
    inserted = (i - 1) * stride + 1 if i > 0 else 0
    extent = effective_kernel_size(k, dilation) - 1
    pad = (extent - lo, extent - hi + output_padding)
    out = inserted + pad[0] + pad[1] - extent
    return TransposeEquivalent(inserted, pad, k, 1, dilation, out)


class ReceptiveField(NamedTuple):
    """Receptive field of a stack: its ``size``, the ``jump`` (product of
    strides: distance in input elements between adjacent outputs) and
    ``start``, the input coordinate of the first output's field centre."""

    size: int
    jump: int
    start: float


def receptive_field(layers: Iterable[Sequence[int] | dict]) -> ReceptiveField:
    """Receptive field of a stack of convolutions along one dimension.

    Each layer is ``(k, stride, padding, dilation)`` (trailing items optional)
    or a dict with those keys.  ``r_out = r_in + (d*(k-1)) * j_in``,
    ``j_out = j_in * s``, ``start_out = start_in + ((d*(k-1))/2 - p) * j_in``.
    """
    size, jump, start = 1, 1, 0.5
    for layer in layers:
        if isinstance(layer, dict):
            k = layer["k"]
            s = layer.get("stride", 1)
            p = layer.get("padding", 0)
            d = layer.get("dilation", 1)
        else:
            k, s, p, d = (tuple(layer) + (1, 0, 1)[len(layer) - 1:])[:4]
        lo, _ = _pair(p)
        extent = effective_kernel_size(k, d) - 1
        start = start + (extent / 2 - lo) * jump
        size = size + extent * jump
        jump = jump * s
    return ReceptiveField(size, jump, start)


def conv_params(c_in: int, c_out: int, kernel: Sequence[int] | int, groups: int = 1, bias: bool = True) -> int:
    """Learnable parameters: ``C_out * (C_in/groups) * prod(kernel)`` (+ ``C_out`` bias)."""
    kernel = (kernel,) if isinstance(kernel, int) else tuple(kernel)
    return c_out * (c_in // groups) * math.prod(kernel) + (c_out if bias else 0)


def conv_flops(n: int, c_in: int, c_out: int, kernel: Sequence[int] | int, out_size: Sequence[int] | int,
               groups: int = 1) -> int:
    """FLOPs of one pass (fwd, dgrad or wgrad are equal):
    ``2 * N * C_out * (C_in/groups) * prod(kernel) * prod(output spatial)``."""
    kernel = (kernel,) if isinstance(kernel, int) else tuple(kernel)
    out_size = (out_size,) if isinstance(out_size, int) else tuple(out_size)
    return 2 * n * c_out * (c_in // groups) * math.prod(kernel) * math.prod(out_size)
