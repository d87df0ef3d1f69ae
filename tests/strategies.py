"""Hypothesis strategy for valid convolution calls over the whole contract:
ndim, N (including 0), groups, channels, kernel, stride, dilation, every
padding form, padding_mode, dtype and input layouts."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

MODES = ["zeros", "reflect", "replicate", "circular", "symmetric"]
DTYPES = ["float16", "float32", "float64"]


@st.composite
def conv_cases(draw, max_spatial=9):
    nd = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cg = draw(st.integers(1, 3))
    kg = draw(st.integers(1, 3))
    n = draw(st.sampled_from([0, 1, 1, 2, 2]))
    mode = draw(st.sampled_from(MODES))
    form = draw(st.sampled_from(["int", "per-dim", "pairs", "valid", "same", "full"]))
    limit = {1: 14, 2: max_spatial, 3: 6}[nd]
    kernel, stride, dilation, sizes, pads = [], [], [], [], []
    pad_int = draw(st.integers(0, 2))
    for _ in range(nd):
        k = draw(st.integers(1, 3))
        s = draw(st.integers(1, 3))
        d = draw(st.integers(1, 2 if nd == 3 else 3))
        extent = d * (k - 1) + 1
        if form == "int":
            lo = hi = pad_int
        elif form == "per-dim":
            lo = hi = draw(st.integers(0, 2))
        elif form == "pairs":
            lo, hi = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        else:
            lo = hi = extent - 1  # the most "full"/"same" can pad
        need = max(1, extent - (lo + hi if form not in ("valid", "same") else 0))
        if mode in ("reflect", "symmetric"):
            need = max(need, max(lo, hi) + 1)
        elif mode == "circular":
            need = max(need, lo, hi)
        size = draw(st.integers(need, max(need, limit)))
        kernel.append(k), stride.append(s), dilation.append(d), sizes.append(size), pads.append((lo, hi))
    if form == "int":
        padding = pad_int
    elif form == "per-dim":
        padding = tuple(p[0] for p in pads)
    elif form == "pairs":
        padding = tuple(pads)
    else:
        padding = form
    return dict(
        nd=nd, n=n, c_in=groups * cg, c_out=groups * kg, groups=groups, sizes=tuple(sizes),
        kernel=tuple(kernel), kw=dict(stride=tuple(stride), padding=padding, dilation=tuple(dilation),
                                      groups=groups, padding_mode=mode),
        dtype=draw(st.sampled_from(DTYPES)), bias=draw(st.booleans()),
        layout=draw(st.sampled_from(["contiguous", "sliced", "transposed", "broadcast"])),
        unbatched=draw(st.booleans()) and n == 1,
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def make_operands(case):
    """x (N, C, *sizes), w (K, C/g, *kernel), bias, in the case's dtype and layout."""
    rng = np.random.default_rng(case["seed"])
    dtype = case["dtype"]
    x_shape = (case["n"], case["c_in"]) + case["sizes"]
    w_shape = (case["c_out"], case["c_in"] // case["groups"]) + case["kernel"]
    layout = case["layout"]
    if layout == "sliced":
        big = rng.standard_normal(x_shape[:-1] + (2 * x_shape[-1] + 1,)).astype(dtype)
        x = big[..., 1::2]
    elif layout == "transposed":
        x = np.ascontiguousarray(rng.standard_normal(x_shape[::-1]).astype(dtype)).transpose()
    else:
        x = rng.standard_normal(x_shape).astype(dtype)
    if layout == "broadcast":
        w = np.broadcast_to(rng.standard_normal((1,) + w_shape[1:]).astype(dtype), w_shape)
    else:
        w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(case["c_out"]).astype(dtype) if case["bias"] else None
    return x, w, b
