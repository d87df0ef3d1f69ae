"""Hypothesis strategy for valid convolution calls over the whole contract:
ndim, N (including 0), groups (including one channel per group), channels,
kernel, stride, dilation, every padding form, padding_mode, dtype, input
layouts, NaN/Inf operands -- and the geometry where bugs live: kernels wider
than the input (padding makes them fit), strides larger than the input,
padding larger than the input, dilation up to 5, 1-wide dims, "same" with
strides 2-7.

Every case carries the names of the extreme classes it reaches
(``case["classes"]``), so a test can prove the fuzz got there.
"""

from __future__ import annotations

import hashlib

import numpy as np
from hypothesis import strategies as st

MODES = ["zeros", "reflect", "replicate", "circular", "symmetric"]
DTYPES = ["float16", "float32", "float64"]
FORMS = ["int", "per-dim", "pairs", "valid", "same", "full"]
EXTREME_CLASSES = ("kernel wider than input", "stride larger than input", "padding larger than input",
                   "dilation >= 4", "1-wide dim", "same with stride >= 2", "one channel per group", "nan/inf")


def stable_seed(*parts) -> int:
    """A seed from text that is the same in every process (``hash()`` is not)."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:4], "little")


def _resolve(form, i, k, s, d, lo, hi):
    extent = d * (k - 1) + 1
    if form == "valid":
        return 0, 0
    if form == "full":
        return extent - 1, extent - 1
    if form == "same":
        total = max((-(-i // s) - 1) * s + extent - i, 0)
        return total // 2, total - total // 2
    return lo, hi


def _mode_ok(mode, i, lo, hi) -> bool:
    """The validation rules a padding mode imposes (see convops.validate)."""
    for p in (lo, hi):
        if p and mode in ("reflect", "symmetric") and p >= i:
            return False
        if p and mode == "circular" and p > i:
            return False
    return True


@st.composite
def conv_cases(draw, max_spatial=9, extreme=None, dense3x3=False):
    """``extreme``: True/False forces the geometry kind; None draws it.
    ``dense3x3``: the layer networks are made of (2-D, 3x3, stride 1, no
    dilation, one group), everything else drawn as usual; a random geometry
    is that layer once in thousands of draws, and some algorithms
    (winograd) run nothing else.  False leaves the draws as they were."""
    nd = 2 if dense3x3 else draw(st.integers(1, 3))
    groups = 1 if dense3x3 else draw(st.integers(1, 3))
    cg = draw(st.sampled_from([1, 1, 2, 3]))
    kg = draw(st.integers(1, 3))
    n = draw(st.sampled_from([0, 1, 1, 2, 2]))
    mode = draw(st.sampled_from(MODES))
    form = draw(st.sampled_from(FORMS))
    wild = draw(st.booleans()) if extreme is None else extreme
    limit = {1: 14, 2: max_spatial, 3: 6}[nd]
    pad_int = draw(st.integers(0, 9 if wild else 2))
    kernel, stride, dilation, sizes, pads = [], [], [], [], []
    for _ in range(nd):
        if dense3x3:
            k, s, d = 3, 1, 1
        elif wild:
            k = draw(st.integers(1, 7))
            s = draw(st.sampled_from([1, 2, 3, 5, 7, 11]))
            d = draw(st.integers(1, 5))
        else:
            k = draw(st.integers(1, 3))
            s = draw(st.integers(1, 3))
            d = draw(st.integers(1, 2 if nd == 3 else 3))
        extent = d * (k - 1) + 1
        if form == "int":
            lo = hi = pad_int
        elif form == "per-dim":
            lo = hi = draw(st.integers(0, 9 if wild else 2))
        else:
            lo, hi = draw(st.integers(0, 12 if wild else 3)), draw(st.integers(0, 12 if wild else 3))
        if wild:
            size = draw(st.integers(1, 8))
        else:
            need = max(1, extent - (lo + hi if form not in ("valid", "same") else 0))
            if mode in ("reflect", "symmetric"):
                need = max(need, max(lo, hi) + 1)
            elif mode == "circular":
                need = max(need, lo, hi)
            size = draw(st.integers(need, max(need, limit)))
        # fix-ups that keep the call valid (deterministic, no filtering)
        if form == "valid":
            size = max(size, extent)
        lo_r, hi_r = _resolve(form, size, k, s, d, lo, hi)
        if size + lo_r + hi_r < extent:  # explicit padding too small: widen the high side
            hi += extent - (size + lo_r + hi_r)
            lo_r, hi_r = _resolve(form, size, k, s, d, lo, hi)
        kernel.append(k), stride.append(s), dilation.append(d), sizes.append(size), pads.append((lo, hi))
    if form == "int":
        padding = pad_int
        if any(p != (pad_int, pad_int) for p in pads):  # a dim needed more: per-dim pairs after all
            form, padding = "pairs", tuple(pads)
    elif form == "per-dim":
        padding = tuple(p[0] for p in pads)
        if any(lo != hi for lo, hi in pads):
            form, padding = "pairs", tuple(pads)
    elif form == "pairs":
        padding = tuple(pads)
    else:
        padding = form
    resolved = [_resolve(form, i, k, s, d, *p) for i, k, s, d, p in zip(sizes, kernel, stride, dilation, pads)]
    if not all(_mode_ok(mode, i, lo, hi) for i, (lo, hi) in zip(sizes, resolved)):
        mode = "zeros"
    classes = set()
    for i, k, s, d, (lo, hi) in zip(sizes, kernel, stride, dilation, resolved):
        if d * (k - 1) + 1 > i:
            classes.add("kernel wider than input")
        if s > i:
            classes.add("stride larger than input")
        if max(lo, hi) > i:
            classes.add("padding larger than input")
        if d >= 4 and k > 1:
            classes.add("dilation >= 4")
        if i == 1:
            classes.add("1-wide dim")
        if form == "same" and s >= 2:
            classes.add("same with stride >= 2")
    if cg == 1:
        classes.add("one channel per group")
    specials = draw(st.sampled_from([False, False, False, True]))
    if specials:
        classes.add("nan/inf")
    return dict(
        nd=nd, n=n, c_in=groups * cg, c_out=groups * kg, groups=groups, sizes=tuple(sizes),
        kernel=tuple(kernel), kw=dict(stride=tuple(stride), padding=padding, dilation=tuple(dilation),
                                      groups=groups, padding_mode=mode),
        dtype=draw(st.sampled_from(DTYPES)), bias=draw(st.booleans()),
        layout=draw(st.sampled_from(["contiguous", "sliced", "transposed", "broadcast"])),
        unbatched=draw(st.booleans()) and n == 1,
        specials=specials, seed=draw(st.integers(0, 2**31 - 1)), classes=frozenset(classes),
    )


def plant_specials(a: np.ndarray, rng, count=2) -> np.ndarray:
    """A copy of ``a`` with ``count`` entries set to NaN, +inf or -inf."""
    out = np.array(a, copy=True)
    if out.size:
        flat = out.reshape(-1)
        for idx in rng.integers(0, out.size, count):
            flat[idx] = rng.choice([np.nan, np.inf, -np.inf])
    return out


def make_operands(case):
    """x (N, C, *sizes), w (K, C/g, *kernel), bias, in the case's dtype and layout
    (with NaN/inf planted when the case asks for specials)."""
    rng = np.random.default_rng(case["seed"])
    dtype = case["dtype"]
    x_shape = (case["n"], case["c_in"]) + case["sizes"]
    w_shape = (case["c_out"], case["c_in"] // case["groups"]) + case["kernel"]
    layout = case["layout"]
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    if case.get("specials"):
        which = rng.integers(0, 3)  # x, w or both
        if which != 1:
            x = plant_specials(x, rng)
        if which != 0:
            w = plant_specials(w, rng, count=1)
    if layout == "sliced":
        big = np.zeros(x_shape[:-1] + (2 * x_shape[-1] + 1,), dtype)
        big[..., 1::2] = x
        x = big[..., 1::2]
    elif layout == "transposed":
        x = np.ascontiguousarray(x.transpose()).transpose()
    if layout == "broadcast":
        w = np.broadcast_to(w[:1], w_shape)
    b = rng.standard_normal(case["c_out"]).astype(dtype) if case["bias"] else None
    return x, w, b
