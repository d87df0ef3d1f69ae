"""convops in JAX: differentiable ``conv`` and ``conv_transpose`` that
compose with ``jax.jit``, ``jax.grad`` and ``jax.vmap`` (design §8).

Three primitives, each a ``jax.custom_vjp`` over ``jax.pure_callback`` into
convops on the host (the Numba backend): the forward convolution, its input
gradient (also the transposed convolution) and its weight gradient.  Each
one's VJP is written in the other two, as in ``convops.torch``, so
gradients of any order work.  Arguments are validated and the padding
resolved at trace time, on shapes, by the same code as ``convops.conv``.
Under ``vmap`` the callback runs once per mapped element
(``vmap_method="sequential"``); fold a batch into N where you can.

The layout is convops's (and torch's): x (N, C, *spatial), weight
(C_out, C_in/groups, *kernel); for ``conv_transpose`` weight
(C_in, C_out/groups, *kernel).  ``jax.lax.conv_general_dilated`` computes the
same ``conv`` with ``dimension_numbers=("NCHW", "OIHW", "NCHW")`` (or the
1-D/3-D spelling) and ``feature_group_count=groups``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import api, validate

__all__ = ["conv", "conv_transpose"]


def _stand_in(name: str, a):
    """A NumPy stand-in with ``a``'s shape and dtype and no memory, for
    validation on shapes (``a`` may be a tracer)."""
    if a is None:
        return None
    if not isinstance(a, (jax.Array, np.ndarray)):
        raise TypeError(f"{name} must be a JAX or NumPy array, got {type(a).__module__}.{type(a).__qualname__}")
    return validate.shape_only(a.shape, np.dtype(a.dtype))


def _params(problem):
    """The static arguments of the primitives: hashable, padding explicit."""
    return (problem.stride, problem.padding, problem.dilation, problem.groups, problem.padding_mode)


def _keywords(params):
    stride, padding, dilation, groups, padding_mode = params
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode)


def _callback(fn, shape, dtype, *args):
    return jax.pure_callback(lambda *a: np.asarray(fn(*a), dtype=dtype), jax.ShapeDtypeStruct(shape, dtype),
                             *args, vmap_method="sequential")


def _out_shape(x, w, params):
    call = validate.conv_call(_stand_in("x", x), _stand_in("weight", w), None, **_keywords(params))
    return call.problem.result_shape if call.batched else call.problem.result_shape[1:]


# --- the primitives: each VJP is written in the other two ---------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x, w, params):
    return _callback(lambda a, b: api.conv(a, b, **_keywords(params)), _out_shape(x, w, params), x.dtype, x, w)


def _conv_fwd(x, w, params):
    return _conv(x, w, params), (x, w)


def _conv_bwd(params, saved, gy):
    x, w = saved
    return _grad_input(gy, w, tuple(x.shape), params), _grad_weight(x, gy, tuple(w.shape), params)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _grad_input(gy, w, x_shape, params):
    return _callback(lambda a, b: api.conv_grad_input(a, b, x_shape, **_keywords(params)), x_shape, gy.dtype,
                     gy, w)


def _grad_input_fwd(gy, w, x_shape, params):
    return _grad_input(gy, w, x_shape, params), (gy, w)


def _grad_input_bwd(x_shape, params, saved, ggx):
    gy, w = saved
    return _conv(ggx, w, params), _grad_weight(ggx, gy, tuple(w.shape), params)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _grad_weight(x, gy, w_shape, params):
    return _callback(lambda a, b: api.conv_grad_weight(a, b, w_shape, **_keywords(params)), w_shape, x.dtype,
                     x, gy)


def _grad_weight_fwd(x, gy, w_shape, params):
    return _grad_weight(x, gy, w_shape, params), (x, gy)


def _grad_weight_bwd(w_shape, params, saved, ggw):
    x, gy = saved
    return _grad_input(gy, ggw, tuple(x.shape), params), _conv(x, ggw, params)


_conv.defvjp(_conv_fwd, _conv_bwd)
_grad_input.defvjp(_grad_input_fwd, _grad_input_bwd)
_grad_weight.defvjp(_grad_weight_fwd, _grad_weight_bwd)


def _add_bias(y, bias, nd: int):
    return y if bias is None else y + jnp.reshape(bias, (-1,) + (1,) * nd)


# --- public -------------------------------------------------------------------

def conv(x, weight, bias=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """``convops.conv`` for JAX: x (N, C, *spatial) or unbatched (C, *spatial),
    weight (K, C/groups, *kernel), bias (K,) or None -> (N, K, *out).
    Differentiable (any order); usable under ``jit`` and ``vmap``."""
    call = validate.conv_call(_stand_in("x", x), _stand_in("weight", weight), _stand_in("bias", bias),
                              stride=stride, padding=padding, dilation=dilation, groups=groups,
                              padding_mode=padding_mode)
    return _add_bias(_conv(x, weight, _params(call.problem)), bias, call.problem.ndim)


def conv_transpose(x, weight, bias=None, *, stride=1, padding=0, output_padding=0, output_size=None, dilation=1,
                   groups=1, padding_mode="zeros"):
    """``convops.conv_transpose`` for JAX: x (N, C_in, *spatial), weight
    (C_in, C_out/groups, *kernel): the exact adjoint of ``conv`` with the same
    keywords.  Differentiable (any order); usable under ``jit`` and ``vmap``."""
    call = validate.conv_transpose_call(_stand_in("x", x), _stand_in("weight", weight), _stand_in("bias", bias),
                                        stride=stride, padding=padding, output_padding=output_padding,
                                        output_size=output_size, dilation=dilation, groups=groups,
                                        padding_mode=padding_mode)
    p = call.problem  # the dgrad of the forward problem whose input is this call's output
    out_shape = p.x_shape if call.batched else p.x_shape[1:]
    extra = [n - o for n, o in zip(p.natural_out_size, p.out_size)]
    if any(extra):
        # output_padding >= stride (allowed when the dilation is larger): the forward conv of the
        # output pairs it with more inputs than there are, and those inputs are zeros.
        x = jnp.pad(x, [(0, 0)] * (x.ndim - p.ndim) + [(0, e) for e in extra])
    return _add_bias(_grad_input(x, weight, out_shape, _params(p)), bias, p.ndim)
