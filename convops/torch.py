"""convops in PyTorch: differentiable ops, ``torch.nn``-compatible modules,
and ``replace_convs`` (design §8).

Three operators are registered with ``torch.library.custom_op`` in the
``convops`` namespace, each with an autograd formula written in the other
two (gradients of convolutions are convolutions), so gradients of any order
work, and each with a fake implementation, so they trace under
``torch.compile``:

- ``convops::conv(input, weight, bias, stride, padding, dilation, groups, padding_mode)``
- ``convops::conv_grad_input(grad_y, weight, input_shape, ...)``: also the transposed convolution
- ``convops::conv_grad_weight(input, grad_y, weight_shape, ...)``

``padding`` is explicit there: one ``(lo, hi)`` pair per spatial dim,
flattened.  The functions below take ``torch.nn.functional``'s arguments
(padding as an int, one int per dim, ``(lo, hi)`` pairs, or
"valid"/"same"/"full"), validate them as ``convops.conv`` does and resolve the
padding before calling the operators.  The operators run on CPU tensors
through the Numba backend and on CUDA tensors through the CUDA backend, with
no copy of the operands (``convops.interop``).

Modules ``Conv1d/2d/3d`` and ``ConvTranspose1d/2d/3d`` subclass their
``torch.nn`` namesakes: same constructor, parameters, initialization,
state_dict and ``padding_mode``; only the convolution itself runs in convops.
"""

from __future__ import annotations

import warnings
from typing import List, Optional

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import Tensor

from . import api, arithmetic, validate

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
           "replace_convs"]

_NUMPY_DTYPES = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def _stand_in(name: str, spec) -> np.ndarray | None:
    """A NumPy stand-in with the ``(shape, dtype)`` of a tensor and no
    memory, so that validation (one module, shared with ``convops.conv``) runs
    on shapes, as it must under ``torch.compile``'s fake tensors."""
    if spec is None:
        return None
    shape, dtype = spec
    if dtype not in _NUMPY_DTYPES:
        raise TypeError(f"{name} must be a floating-point tensor (float16, float32 or float64), "
                        f"got {name} of dtype {dtype}")
    return validate.shape_only(shape, _NUMPY_DTYPES[dtype])


def _spec(name: str, t):
    """(shape, dtype) of a tensor or None: what the argument checks read."""
    if t is None:
        return None
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__module__}.{type(t).__qualname__}")
    return tuple(t.shape), t.dtype


def _shape_only(name: str, t) -> np.ndarray | None:
    return _stand_in(name, _spec(name, t))


def _flat(pairs) -> List[int]:
    return [p for pair in pairs for p in pair]


def _pairs(flat: List[int]):
    if len(flat) % 2:
        raise ValueError(f"padding must be one (lo, hi) pair per spatial dim, flattened, got padding={list(flat)}")
    return tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))


def _result(shape, batched: bool):
    return list(shape if batched else shape[1:])


def _bias_grad(grad: Tensor, nd: int) -> Tensor:
    return grad.sum(dim=[0] + list(range(2, 2 + nd))) if grad.dim() == nd + 2 else grad.sum(
        dim=list(range(1, 1 + nd)))


# --- the operators ---------------------------------------------------------

@torch.library.custom_op("convops::conv", mutates_args=())
def _conv(input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: List[int], padding: List[int],
          dilation: List[int], groups: int, padding_mode: str) -> Tensor:
    return api.conv(input, weight, bias, stride=stride, padding=_pairs(padding), dilation=dilation,
                    groups=groups, padding_mode=padding_mode)


def _symbolic(*shapes) -> bool:
    """Shapes under torch.compile's dynamic shapes: validation, which needs
    concrete sizes, is left to the real implementation (still before any
    kernel runs)."""
    return any(isinstance(v, torch.SymInt) for shape in shapes for v in shape)


@_conv.register_fake
def _conv_fake(input, weight, bias, stride, padding, dilation, groups, padding_mode):
    nd = weight.dim() - 2
    if _symbolic(input.shape, weight.shape):
        outs = [arithmetic.conv_output_size(i, k, s, p, d) for i, k, s, p, d in
                zip(input.shape[-nd:], weight.shape[2:], stride, _pairs(padding), dilation)]
        return input.new_empty(list(input.shape[:-nd - 1]) + [weight.shape[0]] + outs)
    call = validate.conv_call(_shape_only("input", input), _shape_only("weight", weight), _shape_only("bias", bias),
                              stride=stride, padding=_pairs(padding), dilation=dilation, groups=groups,
                              padding_mode=padding_mode)
    return input.new_empty(_result(call.problem.result_shape, call.batched))


@torch.library.custom_op("convops::conv_grad_input", mutates_args=())
def _conv_grad_input(grad_y: Tensor, weight: Tensor, input_shape: List[int], stride: List[int],
                     padding: List[int], dilation: List[int], groups: int, padding_mode: str) -> Tensor:
    return api.conv_grad_input(grad_y, weight, input_shape, stride=stride, padding=_pairs(padding),
                               dilation=dilation, groups=groups, padding_mode=padding_mode)


@_conv_grad_input.register_fake
def _conv_grad_input_fake(grad_y, weight, input_shape, stride, padding, dilation, groups, padding_mode):
    if _symbolic(grad_y.shape, weight.shape, input_shape):
        return grad_y.new_empty(list(input_shape))
    validate.conv_grad_input_call(_shape_only("grad_y", grad_y), _shape_only("weight", weight), input_shape,
                                  stride=stride, padding=_pairs(padding), dilation=dilation, groups=groups,
                                  padding_mode=padding_mode)
    return grad_y.new_empty(list(input_shape))


@torch.library.custom_op("convops::conv_grad_weight", mutates_args=())
def _conv_grad_weight(input: Tensor, grad_y: Tensor, weight_shape: List[int], stride: List[int],
                      padding: List[int], dilation: List[int], groups: int, padding_mode: str) -> Tensor:
    return api.conv_grad_weight(input, grad_y, weight_shape, stride=stride, padding=_pairs(padding),
                                dilation=dilation, groups=groups, padding_mode=padding_mode)


@_conv_grad_weight.register_fake
def _conv_grad_weight_fake(input, grad_y, weight_shape, stride, padding, dilation, groups, padding_mode):
    if _symbolic(input.shape, grad_y.shape, weight_shape):
        return input.new_empty(list(weight_shape))
    validate.conv_grad_weight_call(_shape_only("input", input), _shape_only("grad_y", grad_y), weight_shape,
                                   stride=stride, padding=_pairs(padding), dilation=dilation, groups=groups,
                                   padding_mode=padding_mode)
    return input.new_empty(list(weight_shape))


# --- autograd: each gradient is one of the three operators -----------------
# y = conv(x, w):              dx = conv_grad_input(dy, w)    dw = conv_grad_weight(x, dy)
# gx = conv_grad_input(gy, w): d gy = conv(ggx, w)            dw = conv_grad_weight(ggx, gy)
# gw = conv_grad_weight(x, gy): dx = conv_grad_input(gy, ggw)  d gy = conv(x, ggw)

def _save(ctx, a, b, params):
    ctx.save_for_backward(a, b)
    ctx.params = params


def _conv_setup(ctx, inputs, output):
    x, w, bias, *params = inputs
    _save(ctx, x, w, params)
    ctx.has_bias = bias is not None


def _conv_backward(ctx, grad):
    x, w = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    gx = _conv_grad_input(grad, w, list(x.shape), *ctx.params) if need_x else None
    gw = _conv_grad_weight(x, grad, list(w.shape), *ctx.params) if need_w else None
    gb = _bias_grad(grad, w.dim() - 2) if ctx.has_bias and need_b else None
    return gx, gw, gb, None, None, None, None, None


def _grad_input_setup(ctx, inputs, output):
    grad_y, w, _, *params = inputs
    _save(ctx, grad_y, w, params)


def _grad_input_backward(ctx, ggx):
    grad_y, w = ctx.saved_tensors
    need_gy, need_w = ctx.needs_input_grad[:2]
    d_gy = _conv(ggx, w, None, *ctx.params) if need_gy else None
    d_w = _conv_grad_weight(ggx, grad_y, list(w.shape), *ctx.params) if need_w else None
    return d_gy, d_w, None, None, None, None, None, None


def _grad_weight_setup(ctx, inputs, output):
    x, grad_y, _, *params = inputs
    _save(ctx, x, grad_y, params)


def _grad_weight_backward(ctx, ggw):
    x, grad_y = ctx.saved_tensors
    need_x, need_gy = ctx.needs_input_grad[:2]
    d_x = _conv_grad_input(grad_y, ggw, list(x.shape), *ctx.params) if need_x else None
    d_gy = _conv(x, ggw, None, *ctx.params) if need_gy else None
    return d_x, d_gy, None, None, None, None, None, None


_conv.register_autograd(_conv_backward, setup_context=_conv_setup)
_conv_grad_input.register_autograd(_grad_input_backward, setup_context=_grad_input_setup)
_conv_grad_weight.register_autograd(_grad_weight_backward, setup_context=_grad_weight_setup)


# --- torch.nn.functional's signatures --------------------------------------

def _typed(v):
    """A memo key that tells 1 from 1.0 from True (equal as dict keys, not as
    arguments) and lists from their values: type and value, recursively."""
    if isinstance(v, (list, tuple)):
        return type(v), tuple(_typed(e) for e in v)
    return type(v), v


_RESOLVED: dict = {}
_RESOLVED_KEPT = 1024


def _memoized(resolve, args) -> list:
    """``resolve(*args)`` (validation on shapes, the op's arguments), memoized:
    a training loop resolves the same few calls every step."""
    try:
        key = (resolve, _typed(args))
        found = _RESOLVED.get(key)
    except TypeError:  # an argument no key can hold (validation will name it)
        key = found = None
    if found is None:
        found = resolve(*args)
        if key is not None:
            if len(_RESOLVED) >= _RESOLVED_KEPT:
                _RESOLVED.clear()
            _RESOLVED[key] = found
    return [list(v) if isinstance(v, tuple) else v for v in found]  # the op's schema takes int[]


def _resolve_forward(nd, x, w, b, stride, padding, dilation, groups, padding_mode):
    call = validate.conv_call(_stand_in("input", x), _stand_in("weight", w), _stand_in("bias", b), stride=stride,
                              padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
                              expect_ndim=nd, fn=f"conv{nd}d")
    p = call.problem
    return p.stride, tuple(_flat(p.padding)), p.dilation, p.groups, p.padding_mode


def _resolve_transposed(nd, x, w, b, stride, padding, output_padding, groups, dilation, output_size,
                        padding_mode):
    call = validate.conv_transpose_call(
        _stand_in("input", x), _stand_in("weight", w), _stand_in("bias", b), stride=stride, padding=padding,
        output_padding=output_padding, output_size=output_size, dilation=dilation, groups=groups,
        padding_mode=padding_mode, expect_ndim=nd, fn=f"conv_transpose{nd}d")
    p = call.problem  # the dgrad of the forward problem whose input is this call's output
    extra = tuple(n - o for n, o in zip(p.natural_out_size, p.out_size))
    return (extra, tuple(_result(p.x_shape, call.batched)), p.stride, tuple(_flat(p.padding)), p.dilation,
            p.groups, p.padding_mode)


# Under torch.compile the shapes may be symbolic, so the arguments are
# normalized by plain arithmetic that traces (no validation: the fake
# implementations validate at trace time); eagerly they are validated on
# shapes, memoized.

def _per_dim(v, nd: int) -> list:
    return [v] * nd if isinstance(v, int) else list(v)


def _traced_pads(padding, in_size, kernel, stride, dilation) -> list:
    if isinstance(padding, str):
        return [arithmetic.resolve_padding(padding, i, k, s, d) for i, k, s, d in zip(in_size, kernel, stride, dilation)]
    if isinstance(padding, int):
        return [(padding, padding)] * len(kernel)
    return [(p, p) if isinstance(p, int) else (p[0], p[1]) for p in padding]


def _traced_forward(nd, input, weight, stride, padding, dilation, groups, padding_mode):
    s, d, kernel = _per_dim(stride, nd), _per_dim(dilation, nd), list(weight.shape[2:])
    pads = _traced_pads(padding, list(input.shape[-nd:]), kernel, s, d)
    return s, _flat(pads), d, groups, padding_mode


def _traced_transposed(nd, input, weight, stride, padding, output_padding, groups, dilation, output_size,
                       padding_mode):
    s, d, a, kernel = _per_dim(stride, nd), _per_dim(dilation, nd), _per_dim(output_padding, nd), list(weight.shape[2:])
    in_size = list(input.shape[-nd:])
    if padding == "same":
        target = list(output_size)[-nd:] if output_size is not None else [i * si for i, si in zip(in_size, s)]
        pads = _traced_pads("same", target, kernel, s, d)
    else:
        pads = _traced_pads(padding, [0] * nd, kernel, s, d)  # valid and full do not depend on the size
    if output_size is not None:
        outs = list(output_size)[-nd:]
    else:
        outs = [arithmetic.conv_transpose_output_size(*v) for v in zip(in_size, kernel, s, pads, d, a)]
    extra = [arithmetic.conv_output_size(o, k, si, p, di) - i for o, k, si, p, di, i in zip(outs, kernel, s, pads, d,
                                                                                             in_size)]
    lead = [input.shape[0]] if input.dim() == nd + 2 else []
    return extra, lead + [weight.shape[1] * groups] + outs, s, _flat(pads), d, groups, padding_mode


def _no_forward_ad(*tensors):
    """Forward-mode AD would see the ops as constants (zero tangents): refuse it."""
    if fwAD._current_level >= 0 and any(t is not None and fwAD.unpack_dual(t).tangent is not None for t in tensors):
        raise NotImplementedError("convops.torch has reverse-mode gradients (autograd, any order); forward-mode AD "
                                  "(torch.func.jvp, torch.autograd.forward_ad) is not supported")


def _forward(nd, input, weight, bias, stride, padding, dilation, groups, padding_mode):
    _no_forward_ad(input, weight, bias)
    if torch.compiler.is_compiling():
        params = _traced_forward(nd, input, weight, stride, padding, dilation, groups, padding_mode)
    else:
        params = _memoized(_resolve_forward, (nd, _spec("input", input), _spec("weight", weight),
                                              _spec("bias", bias), stride, padding, dilation, groups, padding_mode))
    return _conv(input, weight, bias, *params)


def _transposed(nd, input, weight, bias, stride, padding, output_padding, groups, dilation, output_size,
                padding_mode):
    _no_forward_ad(input, weight, bias)
    if torch.compiler.is_compiling():
        extra, out_shape, *params = _traced_transposed(nd, input, weight, stride, padding, output_padding, groups,
                                                       dilation, output_size, padding_mode)
    else:
        extra, out_shape, *params = _memoized(_resolve_transposed, (
            nd, _spec("input", input), _spec("weight", weight), _spec("bias", bias), stride, padding,
            output_padding, groups, dilation, output_size, padding_mode))
    if any(extra):
        # output_padding >= stride (allowed when the dilation is larger) asks for outputs that a
        # forward conv of that size would pair with more inputs than there are: those inputs are
        # zeros, so the transposed conv is the input gradient of zero-padded input (one copy).
        input = F.pad(input, [v for e in reversed(extra) for v in (0, e)])
    y = _conv_grad_input(input, weight, out_shape, *params)
    if bias is not None:
        y = y + bias.reshape((-1,) + (1,) * nd)
    return y


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros"):
    """``torch.nn.functional.conv1d`` in convops: input (N, C, W), weight
    (K, C/groups, S) -> (N, K, Q); differentiable to any order."""
    return _forward(1, input, weight, bias, stride, padding, dilation, groups, padding_mode)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros"):
    """``torch.nn.functional.conv2d`` in convops: input (N, C, H, W), weight
    (K, C/groups, R, S) -> (N, K, P, Q); differentiable to any order."""
    return _forward(2, input, weight, bias, stride, padding, dilation, groups, padding_mode)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros"):
    """``torch.nn.functional.conv3d`` in convops: input (N, C, D, H, W),
    weight (K, C/groups, T, R, S) -> (N, K, O, P, Q); differentiable to any order."""
    return _forward(3, input, weight, bias, stride, padding, dilation, groups, padding_mode)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     output_size=None, padding_mode="zeros"):
    """``torch.nn.functional.conv_transpose1d`` in convops: input (N, C_in, W),
    weight (C_in, C_out/groups, S); differentiable to any order."""
    return _transposed(1, input, weight, bias, stride, padding, output_padding, groups, dilation, output_size,
                       padding_mode)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     output_size=None, padding_mode="zeros"):
    """``torch.nn.functional.conv_transpose2d`` in convops: input (N, C_in, H, W),
    weight (C_in, C_out/groups, R, S); differentiable to any order."""
    return _transposed(2, input, weight, bias, stride, padding, output_padding, groups, dilation, output_size,
                       padding_mode)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     output_size=None, padding_mode="zeros"):
    """``torch.nn.functional.conv_transpose3d`` in convops: input (N, C_in, D, H, W),
    weight (C_in, C_out/groups, T, R, S); differentiable to any order."""
    return _transposed(3, input, weight, bias, stride, padding, output_padding, groups, dilation, output_size,
                       padding_mode)


# --- modules ----------------------------------------------------------------

_FUNCTIONAL = {1: conv1d, 2: conv2d, 3: conv3d}
_TRANSPOSED = {1: conv_transpose1d, 2: conv_transpose2d, 3: conv_transpose3d}


class _ConvMixin:
    """torch.nn.ConvNd with the convolution in convops; padding modes are
    convops's own (the same values as torch's, applied without a padded copy
    in torch)."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        nd = len(self.kernel_size)
        return _FUNCTIONAL[nd](input, weight, bias, self.stride, self.padding, self.dilation, self.groups,
                               padding_mode=self.padding_mode)


class _ConvTransposeMixin:
    """torch.nn.ConvTransposeNd with the convolution in convops;
    ``forward(input, output_size=None)`` as torch's (output_size picks the
    output_padding)."""

    def forward(self, input: Tensor, output_size: Optional[List[int]] = None) -> Tensor:
        nd = len(self.kernel_size)
        if self.padding_mode != "zeros":  # torch's constructor already refuses these; kept for a mutated module
            raise ValueError(f"Only 'zeros' padding mode is supported for {type(self).__name__}, "
                             f"got padding_mode={self.padding_mode!r}")
        output_padding = self._output_padding(input, output_size, self.stride, self.padding, self.kernel_size, nd,
                                              self.dilation)
        return _TRANSPOSED[nd](input, self.weight, self.bias, self.stride, self.padding, output_padding,
                               self.groups, self.dilation)


class Conv1d(_ConvMixin, torch.nn.Conv1d):
    """``torch.nn.Conv1d`` (same constructor and state_dict) running convops."""


class Conv2d(_ConvMixin, torch.nn.Conv2d):
    """``torch.nn.Conv2d`` (same constructor and state_dict) running convops."""


class Conv3d(_ConvMixin, torch.nn.Conv3d):
    """``torch.nn.Conv3d`` (same constructor and state_dict) running convops."""


class ConvTranspose1d(_ConvTransposeMixin, torch.nn.ConvTranspose1d):
    """``torch.nn.ConvTranspose1d`` (same constructor and state_dict) running convops."""


class ConvTranspose2d(_ConvTransposeMixin, torch.nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` (same constructor and state_dict) running convops."""


class ConvTranspose3d(_ConvTransposeMixin, torch.nn.ConvTranspose3d):
    """``torch.nn.ConvTranspose3d`` (same constructor and state_dict) running convops."""


_CONVOPS_CLASSES = (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d)
_REPLACEMENTS = {torch.nn.Conv1d: Conv1d, torch.nn.Conv2d: Conv2d, torch.nn.Conv3d: Conv3d,
                 torch.nn.ConvTranspose1d: ConvTranspose1d, torch.nn.ConvTranspose2d: ConvTranspose2d,
                 torch.nn.ConvTranspose3d: ConvTranspose3d}


def replace_convs(model: torch.nn.Module) -> torch.nn.Module:
    """Make every ``torch.nn`` convolution in ``model`` (nested ones and
    ``model`` itself included) run convops, in place, and return ``model``.

    Each module keeps its identity, parameters, buffers and hooks: only its
    class changes to the convops subclass.  Only the six exact ``torch.nn``
    classes are replaced: a subclass may override ``forward``, and lazy and
    parametrized (weight_norm, spectral_norm) convolutions are generated
    subclasses, so they are left alone, with a warning that names them.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__module__}.{type(model).__qualname__}")
    left = []
    for name, module in model.named_modules():
        replacement = _REPLACEMENTS.get(type(module))
        if replacement is not None:
            module.__class__ = replacement
        elif isinstance(module, torch.nn.modules.conv._ConvNd) and not isinstance(module, _CONVOPS_CLASSES):
            left.append(f"{name or '<model>'} ({type(module).__name__})")
    if left:
        warnings.warn(f"replace_convs left {len(left)} convolution(s) running torch: {', '.join(left)}; only the "
                      f"six torch.nn classes themselves are replaced (not subclasses, lazy or parametrized "
                      f"modules such as weight_norm's)", stacklevel=2)
    return model
