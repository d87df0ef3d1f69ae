"""ConvProblem: every shape fact of one convolution pass in one frozen object.

Notation (as in cuDNN and CUTLASS): batch N, input channels C, output channels
K, spatial input D/H/W, kernel R/S (T for 3-D depth), output P/Q.  The
problem always describes the *forward* convolution

    x (N, C, *in_size) * w (K, C/groups, *kernel) -> y (N, K, *out_size)

and ``op`` says which of the three tensors a pass computes:

    fwd    y  from (x, w)
    dgrad  dx from (dy, w)    -- a transposed convolution is a dgrad
    wgrad  dw from (x, dy)

``out_size`` is normally the natural output size of ``in_size``.  It may be
smaller (never larger) for a transposed convolution whose output_padding is
at least the stride (allowed up to the dilation): that transposed
convolution is the adjoint of the forward convolution with the outputs past
``out_size`` discarded, and every pass of the problem means exactly that.

The problem is hashable: it is the cache key, the test id and the benchmark
row key.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Tuple

from . import arithmetic

OPS = ("fwd", "dgrad", "wgrad")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")
DTYPES = ("float16", "float32", "float64")
_ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8}

Ints = Tuple[int, ...]


@dataclass(frozen=True)
class ConvProblem:
    """One convolution pass.  Construct with :meth:`forward` or
    :meth:`transposed`; the fields are checked for consistency, not for user
    errors (that is :mod:`convops.validate`'s job, which runs first)."""

    op: str
    n: int
    c_in: int
    c_out: int
    in_size: Ints
    out_size: Ints
    kernel: Ints
    stride: Ints
    padding: Tuple[Tuple[int, int], ...]
    dilation: Ints
    groups: int
    padding_mode: str
    dtype: str

    def __post_init__(self):
        nd = len(self.in_size)
        if not 1 <= nd <= 3:
            raise ValueError(f"ConvProblem supports 1-3 spatial dims, got in_size={self.in_size}")
        for name in ("out_size", "kernel", "stride", "padding", "dilation"):
            if len(getattr(self, name)) != nd:
                raise ValueError(f"ConvProblem.{name} must have {nd} entries, got {getattr(self, name)}")
        if self.op not in OPS:
            raise ValueError(f"ConvProblem.op must be one of {OPS}, got {self.op!r}")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(f"ConvProblem.padding_mode must be one of {PADDING_MODES}, got {self.padding_mode!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"ConvProblem.dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.groups < 1 or self.c_in % self.groups or self.c_out % self.groups:
            raise ValueError(f"groups={self.groups} must divide c_in={self.c_in} and c_out={self.c_out}")
        natural = self.natural_out_size
        if any(o > m for o, m in zip(self.out_size, natural)):
            raise ValueError(f"out_size {self.out_size} exceeds the convolution's output size {natural}")

    # ---- construction ------------------------------------------------------
    @classmethod
    def forward(cls, *, n, c_in, c_out, in_size, kernel, stride, padding, dilation, groups=1,
                padding_mode="zeros", dtype="float32", op="fwd") -> "ConvProblem":
        """The problem of ``conv`` (or of its gradients, via ``op``) with the
        natural output size.  ``padding`` is one ``(lo, hi)`` pair per dim."""
        out = tuple(arithmetic.conv_output_size(i, k, s, p, d)
                    for i, k, s, p, d in zip(in_size, kernel, stride, padding, dilation))
        return cls(op, n, c_in, c_out, tuple(in_size), out, tuple(kernel), tuple(stride),
                   tuple(tuple(p) for p in padding), tuple(dilation), groups, padding_mode, dtype)

    @classmethod
    def transposed(cls, *, n, c_in, c_out, in_size, kernel, stride, padding, dilation, output_padding,
                   groups=1, padding_mode="zeros", dtype="float32", op="dgrad") -> "ConvProblem":
        """The problem of ``conv_transpose``: ``c_in``/``in_size`` are the
        *transposed* call's input (the forward problem's output), and
        ``c_out`` its output channels (the forward problem's input channels).
        The transposed output size follows from ``output_padding``."""
        out_t = tuple(arithmetic.conv_transpose_output_size(i, k, s, p, d, a)
                      for i, k, s, p, d, a in zip(in_size, kernel, stride, padding, dilation, output_padding))
        return cls(op, n, c_out, c_in, out_t, tuple(in_size), tuple(kernel), tuple(stride),
                   tuple(tuple(p) for p in padding), tuple(dilation), groups, padding_mode, dtype)

    def with_dtype(self, dtype: str) -> "ConvProblem":
        return replace(self, dtype=dtype)

    def with_op(self, op: str) -> "ConvProblem":
        """The same geometry, another pass (gradient problems are convolutions
        of the same shapes: dgrad a transposed convolution, wgrad a
        convolution of x with dy)."""
        return replace(self, op=op)

    def grad_input(self) -> "ConvProblem":
        return self.with_op("dgrad")

    def grad_weight(self) -> "ConvProblem":
        return self.with_op("wgrad")

    def forward_pass(self) -> "ConvProblem":
        return self.with_op("fwd")

    # ---- equivalent problems (what kernels run) -----------------------------
    def expand(self, ndim: int = 3) -> "ConvProblem":
        """The same problem in ``ndim`` spatial dims: leading dims of size 1
        (kernel 1, stride 1, dilation 1, no padding)."""
        lead = ndim - self.ndim
        if lead < 0:
            raise ValueError(f"cannot expand a {self.ndim}-d problem to {ndim} dims")
        ones = (1,) * lead
        return replace(self, in_size=ones + self.in_size, out_size=ones + self.out_size,
                       kernel=ones + self.kernel, stride=ones + self.stride,
                       padding=((0, 0),) * lead + self.padding, dilation=ones + self.dilation)

    def materialized(self) -> "ConvProblem":
        """The problem on the explicitly padded input (the padding mode applied
        to a copy): input ``padded_size``, no padding, zeros mode."""
        return replace(self, in_size=self.padded_size, padding=((0, 0),) * self.ndim, padding_mode="zeros")

    def canonical(self) -> "ConvProblem":
        """An equivalent problem with the parameters that cannot matter
        normalized: stride 1 along dims with at most one output (a stride past
        the padded input is then irrelevant, however large), dilation 1 along
        dims with a kernel of 1.  Kernels run this, so no work or memory scales
        with a parameter that does not change the result."""
        stride = tuple(1 if o <= 1 else s for o, s in zip(self.out_size, self.stride))
        dilation = tuple(1 if k == 1 else d for k, d in zip(self.kernel, self.dilation))
        return replace(self, stride=stride, dilation=dilation)

    def stride_phase_problems(self) -> list:
        """The stride-1 sub-problems of a zero-padded problem, one per
        combination of non-empty stride phases (``arithmetic.stride_phases``):
        ``[(phases, sub)]`` where ``sub`` runs on the phase sub-image of the
        padded input with the phase's taps (``phases[i].taps`` along dim i),
        stride 1, no padding and this problem's output size."""
        per_dim = [arithmetic.stride_phases(k, s, d) for k, s, d in zip(self.kernel, self.stride, self.dilation)]
        out = []
        for combo in itertools.product(*per_dim):
            in_size = tuple(arithmetic.phase_input_size(e, ph, s)
                            for e, ph, s in zip(self.input_extent, combo, self.stride))
            sub = replace(self, in_size=in_size, kernel=tuple(len(ph.taps) for ph in combo),
                          stride=(1,) * self.ndim, dilation=tuple(ph.dilation for ph in combo),
                          padding=((0, 0),) * self.ndim, padding_mode="zeros")
            out.append((combo, sub))
        return out

    def dilation_batch_problem(self) -> "ConvProblem":
        """For a stride-1 zero-padded problem with dilation d: the undilated
        problem on the batch of the d0*d1*d2 dilation phases of the padded
        input (output phase f of size ceil(P/d), input ceil(P/d) + k - 1)."""
        out = tuple(-(-o // d) for o, d in zip(self.out_size, self.dilation))
        inp = tuple(o + k - 1 if o else 0 for o, k in zip(out, self.kernel))
        return replace(self, n=self.n * math.prod(self.dilation), in_size=inp, out_size=out,
                       dilation=(1,) * self.ndim, padding=((0, 0),) * self.ndim, padding_mode="zeros")

    # ---- shapes ------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of spatial dims (1-3)."""
        return len(self.in_size)

    @property
    def natural_out_size(self) -> Ints:
        return tuple(arithmetic.conv_output_size(i, k, s, p, d) for i, k, s, p, d in
                     zip(self.in_size, self.kernel, self.stride, self.padding, self.dilation))

    @property
    def padded_size(self) -> Ints:
        return tuple(i + lo + hi for i, (lo, hi) in zip(self.in_size, self.padding))

    @property
    def pad_lo(self) -> Ints:
        return tuple(lo for lo, _ in self.padding)

    @property
    def pad_hi(self) -> Ints:
        return tuple(hi for _, hi in self.padding)

    @property
    def input_extent(self) -> Ints:
        """Length of the padded input the outputs read, per dim:
        ``(P - 1)*s + d*(k - 1) + 1`` (at most ``padded_size``)."""
        return tuple(arithmetic.conv_input_extent(o, k, s, d)
                     for o, k, s, d in zip(self.out_size, self.kernel, self.stride, self.dilation))

    @property
    def reached_high_pad(self) -> Ints:
        """The part of the high-side padding the outputs read, per dim."""
        return tuple(max(0, e - i - lo) if e else 0
                     for e, i, lo in zip(self.input_extent, self.in_size, self.pad_lo))

    @property
    def x_shape(self) -> Ints:
        """(N, C, *in_size): the forward input, and dgrad's result."""
        return (self.n, self.c_in) + self.in_size

    @property
    def w_shape(self) -> Ints:
        """(K, C/groups, *kernel): the weight, and wgrad's result."""
        return (self.c_out, self.c_in // self.groups) + self.kernel

    @property
    def y_shape(self) -> Ints:
        """(N, K, *out_size): the forward output, and dgrad's input."""
        return (self.n, self.c_out) + self.out_size

    @property
    def operand_shapes(self) -> tuple[Ints, Ints]:
        """Shapes of the two operands of this pass, in call order."""
        return {"fwd": (self.x_shape, self.w_shape),
                "dgrad": (self.y_shape, self.w_shape),
                "wgrad": (self.x_shape, self.y_shape)}[self.op]

    @property
    def result_shape(self) -> Ints:
        return {"fwd": self.y_shape, "dgrad": self.x_shape, "wgrad": self.w_shape}[self.op]

    @property
    def reduction_size(self) -> int:
        """Number of products summed into each result element."""
        if self.op == "fwd":
            return (self.c_in // self.groups) * math.prod(self.kernel)
        if self.op == "dgrad":  # upper bound: taps that land on the element
            return (self.c_out // self.groups) * math.prod(self.kernel)
        return self.n * math.prod(self.out_size)

    @property
    def is_empty(self) -> bool:
        """True when the result has no elements or every element is an empty sum
        (then the result is zeros, plus bias; no kernel is launched)."""
        return (math.prod(self.result_shape) == 0 or self.reduction_size == 0
                or math.prod(self.x_shape) == 0 or math.prod(self.y_shape) == 0)

    # ---- derived facts -----------------------------------------------------
    @property
    def channels_per_group(self) -> int:
        return self.c_in // self.groups

    @property
    def outputs_per_group(self) -> int:
        return self.c_out // self.groups

    @property
    def is_depthwise(self) -> bool:
        """groups == C (one input channel per group), any channel multiplier K/C."""
        return self.c_in > 0 and self.groups == self.c_in

    @property
    def channel_multiplier(self) -> int:
        return self.c_out // self.c_in if self.is_depthwise else 0

    @property
    def is_pointwise(self) -> bool:
        """A 1x1 convolution with stride 1 and no padding: a plain GEMM."""
        return (all(k == 1 for k in self.kernel) and all(s == 1 for s in self.stride)
                and all(p == (0, 0) for p in self.padding))

    @property
    def is_transposed_geometry(self) -> bool:
        """out_size is truncated (see the module docstring)."""
        return self.out_size != self.natural_out_size

    @property
    def itemsize(self) -> int:
        return _ITEMSIZE[self.dtype]

    @property
    def flops(self) -> int:
        """2 * N * K * (C/groups) * prod(kernel) * prod(out_size), for every pass."""
        return arithmetic.conv_flops(self.n, self.c_in, self.c_out, self.kernel, self.out_size, self.groups)

    @property
    def bytes(self) -> int:
        """Compulsory traffic: read both operands once, write the result once."""
        a, b = self.operand_shapes
        return self.itemsize * (math.prod(a) + math.prod(b) + math.prod(self.result_shape))

    @property
    def gemm_shape(self) -> tuple[int, int, int, int]:
        """(batch, M, N, K) of the implicit GEMM of this pass (CUTLASS's
        mapping), batch = groups:

        fwd    M = N*P*Q,  N = K/g,          K = C/g * R*S
        dgrad  M = N*H*W,  N = C/g,          K = K/g * R*S
        wgrad  M = K/g,    N = C/g * R*S,    K = N*P*Q
        """
        g, taps = self.groups, math.prod(self.kernel)
        cg, kg = self.c_in // g, self.c_out // g
        if self.op == "fwd":
            return g, self.n * math.prod(self.out_size), kg, cg * taps
        if self.op == "dgrad":
            return g, self.n * math.prod(self.in_size), cg, kg * taps
        return g, kg, cg * taps, self.n * math.prod(self.out_size)

    def __str__(self) -> str:
        def t(v):
            return "x".join(map(str, v))
        pad = ",".join(f"{lo}" if lo == hi else f"{lo}:{hi}" for lo, hi in self.padding)
        parts = [self.op, f"n{self.n}", f"c{self.c_in}k{self.c_out}", f"in{t(self.in_size)}",
                 f"r{t(self.kernel)}"]
        if any(s != 1 for s in self.stride):
            parts.append(f"s{t(self.stride)}")
        if any(p != (0, 0) for p in self.padding):
            parts.append(f"p{pad}")
        if any(d != 1 for d in self.dilation):
            parts.append(f"d{t(self.dilation)}")
        if self.groups != 1:
            parts.append(f"g{self.groups}")
        if self.padding_mode != "zeros":
            parts.append(self.padding_mode)
        if self.is_transposed_geometry:
            parts.append(f"out{t(self.out_size)}")
        parts.append(self.dtype)
        return "-".join(parts)
