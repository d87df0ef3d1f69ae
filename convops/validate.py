"""Normalize and validate the arguments of a public call, once, at the entry.

Every public function turns its arguments into a :class:`ConvProblem` here.
Errors name the parameter and the values: ``ValueError`` for bad values and
shapes, ``TypeError`` for wrong types and dtypes.  Kernels trust what comes
out of this module.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import NamedTuple, Sequence

import numpy as np

from . import arithmetic
from .problem import DTYPES, PADDING_MODES, ConvProblem

PADDING_STRINGS = ("valid", "same", "full")
# Every integer parameter and every spatial size (padded input, output) is at
# most this (int32, as cuDNN and CUTLASS take them); every tensor has fewer
# than ELEMENT_LIMIT elements (64-bit index arithmetic never overflows).
INT_LIMIT = 2**31 - 1
ELEMENT_LIMIT = 2**62
_WEIGHT_NAMES = {1: "(C_out, C_in/groups, kW)", 2: "(C_out, C_in/groups, kH, kW)",
                 3: "(C_out, C_in/groups, kD, kH, kW)"}


_DTYPE_NAMES = {np.dtype(name): name for name in DTYPES}  # native byte order (others: by dtype.name)


def _shape(a) -> tuple[int, ...]:
    return tuple(int(s) for s in a.shape)


def array_kind(name: str, a) -> str:
    """``"numpy"`` for a NumPy array, ``"cuda"`` for a CUDA array (CuPy or
    anything with ``__cuda_array_interface__``); TypeError otherwise."""
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(f"{name} is a numpy.ma.MaskedArray; convops does not apply masks: pass a plain array, "
                        f"e.g. {name}.filled(0) (masked entries as zeros) or numpy.ma.getdata({name})")
    if isinstance(a, np.ndarray):
        return "numpy"
    if hasattr(a, "__cuda_array_interface__"):
        return "cuda"
    raise TypeError(f"{name} must be a numpy.ndarray or a CUDA array (e.g. cupy.ndarray), "
                    f"got {type(a).__module__}.{type(a).__qualname__}")


def _dtype_of(a) -> np.dtype:
    """The NumPy dtype of an array; for a ``__cuda_array_interface__`` object
    the interface's typestr (its own ``dtype`` may be another library's)."""
    if not isinstance(a, np.ndarray) and hasattr(a, "__cuda_array_interface__"):
        return np.dtype(a.__cuda_array_interface__["typestr"])
    return np.dtype(a.dtype)


def shape_only(shape, dtype) -> np.ndarray:
    """A read-only array of ``shape`` and ``dtype`` that holds no memory (one
    element, broadcast): validation on shapes alone, for the adapters under
    tracing (torch.compile, jax.jit) and for the command line."""
    return np.broadcast_to(np.empty((), dtype), tuple(int(s) for s in shape))


def check_arrays(**arrays) -> tuple[str, str]:
    """Kind and dtype name shared by the given arrays (None entries skipped)."""
    kinds, dtype, first = {}, None, None
    for name, a in arrays.items():
        if a is None:
            continue
        kinds[name] = array_kind(name, a)
        dt = _dtype_of(a)
        dt_name = _DTYPE_NAMES.get(dt) or dt.name  # (dtype.name is slow, and this runs on every call)
        if dt_name not in DTYPES:
            raise TypeError(f"{name} must be a floating-point array (float16, float32 or float64), "
                            f"got {name} of dtype {dt.name}")
        if dtype is None:
            dtype, first = dt_name, name
        elif dt_name != dtype:
            raise TypeError(f"{name} dtype {dt_name} does not match {first} dtype {dtype}; "
                            f"{', '.join(arrays)} must share a dtype")
    if len(set(kinds.values())) > 1:
        desc = ", ".join(f"{n} is a {k} array" for n, k in kinds.items())
        raise TypeError(f"arrays must be on the same device: {desc}")
    return next(iter(kinds.values())), dtype


def _is_int(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_range(name: str, values, minimum: int, shown) -> None:
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum}, got {name}={shown!r}")
    if any(v > INT_LIMIT for v in values):
        raise ValueError(f"{name} must be <= {INT_LIMIT} (2**31 - 1), got {name}={shown!r}")


def int_param(name: str, value, minimum: int) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {name}={value!r}")
    _check_range(name, (value,), minimum, value)
    return int(value)


def spatial_param(name: str, value, ndim: int, minimum: int) -> tuple[int, ...]:
    """An int or one int per spatial dim, each >= minimum."""
    if _is_int(value):
        out = (int(value),) * ndim
    elif isinstance(value, (tuple, list)) and all(_is_int(v) for v in value):
        if len(value) != ndim:
            raise ValueError(f"{name} must be an int or {ndim} ints (one per spatial dim), "
                             f"got {name}={tuple(value)!r}")
        out = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{name} must be an int or a sequence of {ndim} ints, got {name}={value!r}")
    _check_range(name, out, minimum, out)
    return out


def padding_param(value, ndim: int):
    """A padding string, or one ``(lo, hi)`` pair per spatial dim.

    Accepts an int, one int per dim (symmetric), one ``(lo, hi)`` pair per
    dim, or ``"valid"``/``"same"``/``"full"``.
    """
    if isinstance(value, str):
        if value not in PADDING_STRINGS:
            raise ValueError(f"padding string must be one of {PADDING_STRINGS}, got padding={value!r}")
        return value
    if _is_int(value):
        pairs = ((int(value), int(value)),) * ndim
    elif isinstance(value, (tuple, list)):
        if len(value) != ndim:
            hint = ""
            if ndim == 1 and len(value) == 2 and all(_is_int(v) for v in value):
                hint = f"; for asymmetric padding use (({value[0]}, {value[1]}),)"
            raise ValueError(f"padding must have {ndim} entries (one per spatial dim), "
                             f"got padding={tuple(value)!r}{hint}")
        pairs = []
        for v in value:
            if _is_int(v):
                pairs.append((int(v), int(v)))
            elif isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_int(e) for e in v):
                pairs.append((int(v[0]), int(v[1])))
            else:
                raise TypeError(f"padding entries must be ints or (lo, hi) pairs of ints, got padding={value!r}")
        pairs = tuple(pairs)
    else:
        raise TypeError(f"padding must be an int, a sequence of ints or (lo, hi) pairs, or one of "
                        f"{PADDING_STRINGS}, got padding={value!r}")
    _check_range("padding", [p for pair in pairs for p in pair], 0, value)
    return pairs


def padding_mode_param(value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"padding_mode must be a string, got padding_mode={value!r}")
    if value not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got padding_mode={value!r}")
    return value


def expect_weight_ndim(weight, nd: int, fn: str) -> None:
    """conv1d/2d/3d and their transposes: the weight has ``nd`` spatial dims."""
    array_kind("weight", weight)
    _weight_ndim(weight, nd, fn)


def _weight_ndim(weight, expect_ndim: int | None, fn: str) -> int:
    shape = _shape(weight)
    nd = len(shape) - 2
    if expect_ndim is not None and nd != expect_ndim:
        raise ValueError(f"{fn} expects a {expect_ndim + 2}-dim weight {_WEIGHT_NAMES[expect_ndim]}, "
                         f"got weight of shape {shape}")
    if not 1 <= nd <= 3:
        raise ValueError(f"weight must have 3, 4 or 5 dims (C_out, C_in/groups, *kernel) for 1-3 "
                         f"spatial dims, got weight of shape {shape}")
    if any(k < 1 for k in shape[2:]):
        raise ValueError(f"kernel sizes must be >= 1, got weight of shape {shape}")
    return nd


def _check_sizes(problem: ConvProblem, desc: str) -> ConvProblem:
    """Derived sizes within the limits: padded input and output per spatial
    dim at most INT_LIMIT, every tensor fewer than ELEMENT_LIMIT elements."""
    for what, sizes in (("padded input size", problem.padded_size), ("output size", problem.out_size),
                        ("input size", problem.in_size)):
        for dim, v in enumerate(sizes):
            if v > INT_LIMIT:
                raise ValueError(f"{what} {v} in spatial dim {dim} exceeds {INT_LIMIT} (2**31 - 1): {desc}, "
                                 f"padding {problem.padding}, stride {problem.stride}, dilation {problem.dilation}")
    for what, shape in (("input", problem.x_shape), ("weight", problem.w_shape), ("output", problem.y_shape)):
        if math.prod(shape) >= ELEMENT_LIMIT:
            raise ValueError(f"{what} of shape {shape} has 2**62 or more elements: {desc}")
    return problem


def _batched(name: str, shape: tuple, nd: int, weight_shape: tuple) -> bool:
    if len(shape) == nd + 2:
        return True
    if len(shape) == nd + 1:
        return False
    raise ValueError(f"expected {name} with {nd + 2} dims (batched) or {nd + 1} dims (unbatched) for "
                     f"weight of shape {weight_shape}, got {name} of shape {shape}")


def _check_modes(padding, in_size, mode: str, x_desc: str):
    """Padding that the padding mode can realize from the input."""
    for dim, (i, (lo, hi)) in enumerate(zip(in_size, padding)):
        for p in (lo, hi):
            if p == 0:
                continue
            if mode in ("reflect", "symmetric") and p >= i:
                raise ValueError(f"padding_mode={mode!r} needs padding smaller than the input in every "
                                 f"dim: padding {(lo, hi)} in spatial dim {dim}, {x_desc}")
            if mode == "circular" and p > i:
                raise ValueError(f"padding_mode='circular' needs padding at most the input size in every "
                                 f"dim: padding {(lo, hi)} in spatial dim {dim}, {x_desc}")
            if mode == "replicate" and i == 0:
                raise ValueError(f"padding_mode='replicate' cannot pad an empty input: padding {(lo, hi)} "
                                 f"in spatial dim {dim}, {x_desc}")


def _check_extent(padding, in_size, kernel, dilation, x_desc: str):
    for dim, (i, (lo, hi), k, d) in enumerate(zip(in_size, padding, kernel, dilation)):
        padded, extent = i + lo + hi, arithmetic.effective_kernel_size(k, d)
        if 0 < padded < extent:
            raise ValueError(f"dilated kernel size {extent} (kernel {k}, dilation {d}) is larger than the "
                             f"padded input size {padded} (input {i}, padding {(lo, hi)}) in spatial dim "
                             f"{dim}: {x_desc}")


class Params(NamedTuple):
    stride: tuple
    padding: object  # str or pairs
    dilation: tuple
    groups: int
    padding_mode: str


def common_params(nd, stride, padding, dilation, groups, padding_mode) -> Params:
    return Params(spatial_param("stride", stride, nd, 1), padding_param(padding, nd),
                  spatial_param("dilation", dilation, nd, 1), int_param("groups", groups, 1),
                  padding_mode_param(padding_mode))


def _resolve(padding, in_size, kernel, stride, dilation):
    if isinstance(padding, str):
        return tuple(arithmetic.resolve_padding(padding, i, k, s, d)
                     for i, k, s, d in zip(in_size, kernel, stride, dilation))
    return padding


class Call(NamedTuple):
    """A validated call: the problem, the array kind (``numpy``/``cuda``) and
    whether the caller passed unbatched arrays (a batch axis of 1 is added)."""

    problem: ConvProblem
    kind: str
    batched: bool


@functools.lru_cache(maxsize=1024)  # pure; a training loop asks for the same few problems every step
def _forward_problem(x_shape, w_shape, params: Params, dtype: str, op: str, x_name="input") -> ConvProblem:
    """Forward geometry of batched ``x_shape`` and ``w_shape``: channels, groups,
    padding resolution and the checks that need the input size."""
    n, c_in, in_size = x_shape[0], x_shape[1], x_shape[2:]
    c_out, cg, kernel = w_shape[0], w_shape[1], w_shape[2:]
    g = params.groups
    if c_out % g:
        raise ValueError(f"groups={g} must divide the weight's {c_out} output channels "
                         f"(weight {w_shape}, groups={g})")
    if cg * g != c_in:
        raise ValueError(f"expected {x_name} with {cg * g} channels (weight {w_shape}, groups={g}), "
                         f"got {x_name} {x_shape}")
    padding = _resolve(params.padding, in_size, kernel, params.stride, params.dilation)
    desc = f"{x_name} {x_shape}, weight {w_shape}"
    _check_modes(padding, in_size, params.padding_mode, desc)
    _check_extent(padding, in_size, kernel, params.dilation, desc)
    return _check_sizes(ConvProblem.forward(n=n, c_in=c_in, c_out=c_out, in_size=in_size, kernel=kernel,
                                            stride=params.stride, padding=padding, dilation=params.dilation,
                                            groups=g, padding_mode=params.padding_mode, dtype=dtype, op=op), desc)


def _check_bias(bias, channels: int):
    if bias is not None and _shape(bias) != (channels,):
        raise ValueError(f"bias must have shape ({channels},) (one per output channel), "
                         f"got bias of shape {_shape(bias)}")


def _call_basics(x, weight, bias, expect_ndim, fn, stride, padding, dilation, groups, padding_mode):
    """What conv and conv_transpose check alike: arrays, ranks, batching, keywords."""
    kind, dtype = check_arrays(x=x, weight=weight, bias=bias)
    nd = _weight_ndim(weight, expect_ndim, fn)
    w_shape = _shape(weight)
    batched = _batched("input", _shape(x), nd, w_shape)
    x_shape = _shape(x) if batched else (1,) + _shape(x)
    params = common_params(nd, stride, padding, dilation, groups, padding_mode)
    return kind, dtype, nd, w_shape, x_shape, batched, params


def conv_call(x, weight, bias, *, stride, padding, dilation, groups, padding_mode,
              expect_ndim=None, fn="conv") -> Call:
    kind, dtype, nd, w_shape, x_shape, batched, params = _call_basics(
        x, weight, bias, expect_ndim, fn, stride, padding, dilation, groups, padding_mode)
    problem = _forward_problem(x_shape, w_shape, params, dtype, "fwd")
    _check_bias(bias, problem.c_out)
    return Call(problem, kind, batched)


def _output_size_param(output_size, nd: int):
    if output_size is None:
        return None
    if not isinstance(output_size, (tuple, list)) or not all(_is_int(v) for v in output_size):
        raise TypeError(f"output_size must be a sequence of ints, got output_size={output_size!r}")
    if len(output_size) not in (nd, nd + 1, nd + 2):
        raise ValueError(f"output_size must have {nd} entries (one per spatial dim), "
                         f"got output_size={tuple(output_size)!r}")
    out = tuple(int(v) for v in output_size[len(output_size) - nd:])
    _check_range("output_size", out, 0, tuple(output_size))
    return out


def conv_transpose_call(x, weight, bias, *, stride, padding, output_padding, output_size, dilation,
                        groups, padding_mode, expect_ndim=None, fn="conv_transpose") -> Call:
    """A transposed convolution: weight ``(C_in, C_out/groups, *kernel)``.

    It is the dgrad of the forward problem whose input is this call's output:
    the output size comes from ``output_padding`` or ``output_size``; with
    ``padding="same"`` it is ``input * stride`` by default and the padding is
    resolved against the output size (so it is the adjoint of a "same"
    convolution of that size).
    """
    kind, dtype, nd, w_shape, x_shape, batched, params = _call_basics(
        x, weight, bias, expect_ndim, fn, stride, padding, dilation, groups, padding_mode)
    out_pad = spatial_param("output_padding", output_padding, nd, 0)
    target = _output_size_param(output_size, nd)
    n, c_in, in_size = x_shape[0], x_shape[1], x_shape[2:]
    kernel, g, s, d = w_shape[2:], params.groups, params.stride, params.dilation
    if w_shape[0] != c_in:
        raise ValueError(f"expected input with {w_shape[0]} channels (transposed weight {w_shape}, "
                         f"groups={g}), got input {x_shape}")
    if c_in % g:
        raise ValueError(f"groups={g} must divide the input's {c_in} channels (transposed weight {w_shape})")
    c_out = w_shape[1] * g
    if target is not None and any(out_pad):
        raise ValueError(f"give output_padding or output_size, not both: output_padding={out_pad}, "
                         f"output_size={target}")
    if params.padding == "same":
        if any(out_pad):
            raise ValueError(f"with padding='same' the output size is input * stride; use output_size "
                             f"to choose another, got output_padding={out_pad}")
        if target is None:
            target = tuple(i * si for i, si in zip(in_size, s))
        lo_range = tuple(si * (i - 1) + 1 if i else 0 for i, si in zip(in_size, s))
        hi_range = tuple(si * i for i, si in zip(in_size, s))
        if any(not a <= t <= b for t, a, b in zip(target, lo_range, hi_range)):
            raise ValueError(f"output_size={target} is outside the valid range for padding='same': "
                             f"sizes from {lo_range} to {hi_range} (input {x_shape}, stride {s})")
        pads = tuple(arithmetic.resolve_padding("same", t, k, si, di)
                     for t, k, si, di in zip(target, kernel, s, d))
    else:
        pads = _resolve(params.padding, (0,) * nd, kernel, s, d)
    widths = tuple(max(si, di) for si, di in zip(s, d))
    try:
        ranges = [arithmetic.conv_transpose_output_range(i, k, si, p, di)
                  for i, k, si, p, di in zip(in_size, kernel, s, pads, d)]
    except ValueError as e:
        raise ValueError(f"conv_transpose of input {x_shape} with weight {w_shape}, stride {s}, padding "
                         f"{pads}, dilation {d} has no valid output size: {e}") from None
    low, high = tuple(r[0] for r in ranges), tuple(r[1] for r in ranges)
    smallest = tuple(hi - w + 1 for hi, w in zip(high, widths))  # output_padding 0, may be < 1
    if target is not None:
        if any(not a <= t <= b for t, a, b in zip(target, low, high)):
            raise ValueError(f"output_size={target} is outside the valid range: sizes from {low} to {high} "
                             f"(input {x_shape}, weight {w_shape}, stride {s}, padding {pads}, dilation {d})")
        out_pad = tuple(t - m if i else 0 for t, m, i in zip(target, smallest, in_size))
    elif any(a >= w for a, w in zip(out_pad, widths)):
        raise ValueError(f"output_padding must be smaller than max(stride, dilation) in every dim, got "
                         f"output_padding={out_pad} with stride={s}, dilation={d}")
    elif any(i and m + a < 1 for m, a, i in zip(smallest, out_pad, in_size)):
        raise ValueError(f"conv_transpose of input {x_shape} with weight {w_shape}, stride {s}, padding {pads}, "
                         f"dilation {d}, output_padding {out_pad} has an output size below 1; valid sizes "
                         f"(via output_size) are {low} to {high}")
    out_size = tuple(m + a if i else 0 for m, a, i in zip(smallest, out_pad, in_size))
    desc = f"transposed output {(n, c_out) + out_size}, weight {w_shape}"
    _check_modes(pads, out_size, params.padding_mode, desc)
    _check_extent(pads, out_size, kernel, d, desc)
    if any(o > INT_LIMIT for o in out_size):
        raise ValueError(f"conv_transpose output size {out_size} exceeds {INT_LIMIT} (2**31 - 1) in some spatial "
                         f"dim: input {x_shape}, weight {w_shape}, stride {s}, dilation {d}")
    problem = ConvProblem.transposed(n=n, c_in=c_in, c_out=c_out, in_size=in_size, kernel=kernel, stride=s,
                                     padding=pads, dilation=d, output_padding=out_pad, groups=g,
                                     padding_mode=params.padding_mode, dtype=dtype)
    _check_sizes(problem, desc)
    _check_bias(bias, c_out)
    return Call(problem, kind, batched)


def _shape_param(name: str, value, lengths: Sequence[int]) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(_is_int(v) for v in value):
        raise TypeError(f"{name} must be a sequence of ints, got {name}={value!r}")
    if len(value) not in lengths:
        raise ValueError(f"{name} must have {' or '.join(map(str, lengths))} entries, got {name}={tuple(value)!r}")
    if any(v < 0 for v in value):
        raise ValueError(f"{name} must be non-negative, got {name}={tuple(value)!r}")
    if any(v >= ELEMENT_LIMIT for v in value):
        raise ValueError(f"{name} entries must be below 2**62, got {name}={tuple(value)!r}")
    return tuple(int(v) for v in value)


def check_grad_y(grad_y, problem: ConvProblem, batched: bool, origin: str):
    expect = problem.y_shape if batched else problem.y_shape[1:]
    if _shape(grad_y) != expect:
        raise ValueError(f"grad_y must have shape {expect} (the output of {origin}), "
                         f"got grad_y of shape {_shape(grad_y)}")


def conv_grad_input_call(grad_y, weight, input_shape, *, stride, padding, dilation, groups,
                         padding_mode) -> Call:
    kind, dtype = check_arrays(grad_y=grad_y, weight=weight)
    nd = _weight_ndim(weight, None, "conv_grad_input")
    w_shape = _shape(weight)
    input_shape = _shape_param("input_shape", input_shape, (nd + 1, nd + 2))
    batched = len(input_shape) == nd + 2
    x_shape = input_shape if batched else (1,) + input_shape
    params = common_params(nd, stride, padding, dilation, groups, padding_mode)
    problem = _forward_problem(x_shape, w_shape, params, dtype, "dgrad", x_name="input_shape")
    check_grad_y(grad_y, problem, batched, f"input_shape {input_shape} with weight {w_shape}")
    return Call(problem, kind, batched)


def conv_grad_weight_call(x, grad_y, weight_shape, *, stride, padding, dilation, groups,
                          padding_mode) -> Call:
    kind, dtype = check_arrays(x=x, grad_y=grad_y)
    w_shape = _shape_param("weight_shape", weight_shape, (3, 4, 5))
    nd = len(w_shape) - 2
    if any(k < 1 for k in w_shape[2:]):
        raise ValueError(f"kernel sizes must be >= 1, got weight_shape={w_shape}")
    batched = _batched("input", _shape(x), nd, w_shape)
    x_shape = _shape(x) if batched else (1,) + _shape(x)
    params = common_params(nd, stride, padding, dilation, groups, padding_mode)
    problem = _forward_problem(x_shape, w_shape, params, dtype, "wgrad")
    check_grad_y(grad_y, problem, batched, f"input {x_shape} with weight_shape {w_shape}")
    return Call(problem, kind, batched)


def choice_param(name: str, value, known: Sequence[str]) -> str:
    """A backend or algorithm name: ``"auto"`` or one of ``known``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {name}={value!r}")
    if value != "auto" and value not in known:
        raise ValueError(f"unknown {name}={value!r}; known: {', '.join(['auto', *sorted(known)])}")
    return value
