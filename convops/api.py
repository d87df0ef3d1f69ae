"""The public functions (design §1).  Each one validates its arguments into a
ConvProblem once, then hands it to dispatch.  Shapes use N (batch), C (input
channels), K (output channels), D/H/W (input), R/S (kernel), P/Q (output).
"""

from __future__ import annotations

from . import dispatch, interop, validate
from .validate import Call

_DEFAULTS = dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros")


def conv(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
         algorithm="auto", backend="auto"):
    """N-d cross-correlation, as ``torch.nn.functional.conv{1,2,3}d``.

    x (N, C, *spatial) or unbatched (C, *spatial); weight (K, C/groups,
    *kernel); bias (K,) or None.  Returns (N, K, *out) of x's dtype, as the
    same kind of array on the same device as x (NumPy, CuPy, torch, JAX; see
    ``convops.interop``).  ``padding``: int, one int per dim, one (lo, hi)
    pair per dim, or "valid"/"same"/"full"; ``padding_mode``: zeros, reflect,
    replicate, circular or symmetric.
    """
    like, restore = x, interop.restorer(x)
    x, weight, bias = interop.native("x", x), interop.native("weight", weight), interop.native("bias", bias)
    call = validate.conv_call(x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                              groups=groups, padding_mode=padding_mode)
    with interop.stream_of(like):
        return restore(dispatch.execute(call, x, weight, bias, backend=backend, algorithm=algorithm))


def conv_transpose(x, weight, bias=None, *, stride=1, padding=0, output_padding=0, output_size=None,
                   dilation=1, groups=1, padding_mode="zeros", algorithm="auto", backend="auto"):
    """Transposed convolution, as ``torch.nn.functional.conv_transpose{1,2,3}d``.

    x (N, C_in, *spatial); weight (C_in, C_out/groups, *kernel).  It is the
    exact adjoint (the input gradient) of ``conv`` with the same keywords,
    padding mode included.  ``output_size`` picks among the valid output sizes
    instead of ``output_padding``.
    """
    like, restore = x, interop.restorer(x)
    x, weight, bias = interop.native("x", x), interop.native("weight", weight), interop.native("bias", bias)
    call = validate.conv_transpose_call(x, weight, bias, stride=stride, padding=padding,
                                        output_padding=output_padding, output_size=output_size,
                                        dilation=dilation, groups=groups, padding_mode=padding_mode)
    with interop.stream_of(like):
        return restore(dispatch.execute(call, x, weight, bias, backend=backend, algorithm=algorithm))


def conv_grad_input(grad_y, weight, input_shape, *, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", algorithm="auto", backend="auto"):
    """Gradient of ``conv`` with respect to its input of shape ``input_shape``.

    grad_y (N, K, *out), weight (K, C/groups, *kernel) -> (N, C, *input),
    the kind of array grad_y is.
    """
    like, restore = grad_y, interop.restorer(grad_y, "grad_y")
    grad_y, weight = interop.native("grad_y", grad_y), interop.native("weight", weight)
    call = validate.conv_grad_input_call(grad_y, weight, input_shape, stride=stride, padding=padding,
                                         dilation=dilation, groups=groups, padding_mode=padding_mode)
    with interop.stream_of(like):
        return restore(dispatch.execute(call, grad_y, weight, backend=backend, algorithm=algorithm))


def conv_grad_weight(x, grad_y, weight_shape, *, stride=1, padding=0, dilation=1, groups=1,
                     padding_mode="zeros", algorithm="auto", backend="auto"):
    """Gradient of ``conv`` with respect to its weight of shape ``weight_shape``.

    x (N, C, *in), grad_y (N, K, *out) -> (K, C/groups, *kernel), the kind
    of array x is.
    """
    like, restore = x, interop.restorer(x)
    x, grad_y = interop.native("x", x), interop.native("grad_y", grad_y)
    call = validate.conv_grad_weight_call(x, grad_y, weight_shape, stride=stride, padding=padding,
                                          dilation=dilation, groups=groups, padding_mode=padding_mode)
    with interop.stream_of(like):
        return restore(dispatch.execute(call, x, grad_y, backend=backend, algorithm=algorithm))


def _bias_grad(grad_y, batched: bool):
    """Sum over batch and spatial axes, accumulated in float64 (or wider)."""
    axes = (0,) + tuple(range(2, grad_y.ndim)) if batched else tuple(range(1, grad_y.ndim))
    return grad_y.sum(axis=axes, dtype="float64").astype(grad_y.dtype)


def _grad_call(call: Call, op: str) -> Call:
    return Call(call.problem.with_op(op), call.kind, call.batched)


def conv_vjp(x, weight, bias=None, *, algorithm="auto", backend="auto", **params):
    """``y, pullback = conv_vjp(x, weight, bias, **params)``; ``pullback(grad_y)``
    returns ``(grad_x, grad_weight, grad_bias)`` (grad_bias None without bias).

    A forced ``algorithm``/``backend`` applies to all three passes.  Results
    are the kind of array x is.
    """
    like, restore = x, interop.restorer(x)
    x, weight, bias = interop.native("x", x), interop.native("weight", weight), interop.native("bias", bias)
    kw = {**_DEFAULTS, **params}
    call = validate.conv_call(x, weight, bias, **kw)
    with interop.stream_of(like):
        y = dispatch.execute(call, x, weight, bias, backend=backend, algorithm=algorithm)

    def pullback(grad_y):
        grad_y = interop.native("grad_y", grad_y)
        validate.check_arrays(grad_y=grad_y, x=x)
        validate.check_grad_y(grad_y, call.problem, call.batched, "this conv")
        with interop.stream_of(like):
            gx = dispatch.execute(_grad_call(call, "dgrad"), grad_y, weight, backend=backend, algorithm=algorithm)
            gw = dispatch.execute(_grad_call(call, "wgrad"), x, grad_y, backend=backend, algorithm=algorithm)
            gb = None if bias is None else _bias_grad(grad_y, call.batched)
        return restore(gx), restore(gw), None if gb is None else restore(gb)

    return restore(y), pullback


def conv_transpose_vjp(x, weight, bias=None, *, algorithm="auto", backend="auto", **params):
    """``y, pullback = conv_transpose_vjp(x, weight, bias, **params)``.

    The transposed convolution is the dgrad of a forward problem, so its input
    gradient is that problem's fwd (of grad_y) and its weight gradient that
    problem's wgrad with input grad_y and output gradient x.
    """
    like, restore = x, interop.restorer(x)
    x, weight, bias = interop.native("x", x), interop.native("weight", weight), interop.native("bias", bias)
    kw = {**_DEFAULTS, "output_padding": 0, "output_size": None, **params}
    call = validate.conv_transpose_call(x, weight, bias, **kw)
    with interop.stream_of(like):
        y = dispatch.execute(call, x, weight, bias, backend=backend, algorithm=algorithm)

    def pullback(grad_y):
        grad_y = interop.native("grad_y", grad_y)
        validate.check_arrays(grad_y=grad_y, x=x)
        p = call.problem
        expect = p.x_shape if call.batched else p.x_shape[1:]
        if tuple(grad_y.shape) != expect:
            raise ValueError(f"grad_y must have shape {expect} (the output of this conv_transpose), "
                             f"got grad_y of shape {tuple(grad_y.shape)}")
        with interop.stream_of(like):
            gx = dispatch.execute(_grad_call(call, "fwd"), grad_y, weight, backend=backend, algorithm=algorithm)
            gw = dispatch.execute(_grad_call(call, "wgrad"), grad_y, x, backend=backend, algorithm=algorithm)
            gb = None if bias is None else _bias_grad(grad_y, call.batched)
        return restore(gx), restore(gw), None if gb is None else restore(gb)

    return restore(y), pullback


# torch.nn.functional's positional order, spelled out so help() and IDEs show it.

def _rank(weight, nd: int, fn: str):
    weight = interop.native("weight", weight)
    validate.expect_weight_ndim(weight, nd, fn)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", backend="auto"):
    """``conv`` with one spatial dim, in ``torch.nn.functional.conv1d``'s
    order: input (N, C, W), weight (K, C/groups, S) -> (N, K, Q)."""
    _rank(weight, 1, "conv1d")
    return conv(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                padding_mode=padding_mode, algorithm=algorithm, backend=backend)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", backend="auto"):
    """``conv`` with two spatial dims, in ``torch.nn.functional.conv2d``'s
    order: input (N, C, H, W), weight (K, C/groups, R, S) -> (N, K, P, Q)."""
    _rank(weight, 2, "conv2d")
    return conv(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                padding_mode=padding_mode, algorithm=algorithm, backend=backend)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", backend="auto"):
    """``conv`` with three spatial dims, in ``torch.nn.functional.conv3d``'s
    order: input (N, C, D, H, W), weight (K, C/groups, T, R, S) -> (N, K, O, P, Q)."""
    _rank(weight, 3, "conv3d")
    return conv(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
                padding_mode=padding_mode, algorithm=algorithm, backend=backend)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     output_size=None, padding_mode="zeros", algorithm="auto", backend="auto"):
    """``conv_transpose`` with one spatial dim, in
    ``torch.nn.functional.conv_transpose1d``'s order: input (N, C_in, W),
    weight (C_in, C_out/groups, S)."""
    _rank(weight, 1, "conv_transpose1d")
    return conv_transpose(input, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
                          output_size=output_size, dilation=dilation, groups=groups, padding_mode=padding_mode,
                          algorithm=algorithm, backend=backend)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     output_size=None, padding_mode="zeros", algorithm="auto", backend="auto"):
    """``conv_transpose`` with two spatial dims, in
    ``torch.nn.functional.conv_transpose2d``'s order: input (N, C_in, H, W),
    weight (C_in, C_out/groups, R, S)."""
    _rank(weight, 2, "conv_transpose2d")
    return conv_transpose(input, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
                          output_size=output_size, dilation=dilation, groups=groups, padding_mode=padding_mode,
                          algorithm=algorithm, backend=backend)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     output_size=None, padding_mode="zeros", algorithm="auto", backend="auto"):
    """``conv_transpose`` with three spatial dims, in
    ``torch.nn.functional.conv_transpose3d``'s order: input (N, C_in, D, H, W),
    weight (C_in, C_out/groups, T, R, S)."""
    _rank(weight, 3, "conv_transpose3d")
    return conv_transpose(input, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
                          output_size=output_size, dilation=dilation, groups=groups, padding_mode=padding_mode,
                          algorithm=algorithm, backend=backend)


_CALLS = {
    "conv": validate.conv_call,
    "conv_transpose": validate.conv_transpose_call,
    "conv_grad_input": validate.conv_grad_input_call,
    "conv_grad_weight": validate.conv_grad_weight_call,
}


def explain(a, b, op="conv", *, algorithm="auto", backend="auto", **params) -> dispatch.Plan:
    """What would run, and why not the others.  ``a, b`` are the op's first
    two arguments (``conv``: x, weight; ``conv_grad_input``: grad_y, weight
    with ``input_shape=``; ``conv_grad_weight``: x, grad_y with
    ``weight_shape=``).  Print the returned Plan for a table."""
    if op not in _CALLS:
        raise ValueError(f"op must be one of {tuple(_CALLS)}, got op={op!r}")
    kw = dict(_DEFAULTS)
    if op == "conv_transpose":
        kw.update(output_padding=0, output_size=None)
    kw.update(params)
    a, b = interop.native("a", a), interop.native("b", b)
    if op in ("conv", "conv_transpose"):
        call = _CALLS[op](a, b, interop.native("bias", kw.pop("bias", None)), **kw)
    else:
        call = _CALLS[op](a, b, **kw)
    return dispatch.plan(call, backend, algorithm)
