"""Shared test helpers: operands, tolerance checks, and an independent oracle.

The oracle here is written against scipy.signal.correlate and np.pad only;
it shares no code with convops (not even ConvProblem).
"""

from __future__ import annotations

import collections

import numpy as np
from scipy import signal

from convops import tolerance

NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
              "circular": "wrap", "symmetric": "symmetric"}


def assert_close(result, reference, dtype, what=""):
    err = tolerance.relative_error(result, reference)
    tol = tolerance.TOLERANCE[str(dtype)]
    assert err <= tol, f"{what}: error {err:.3g} > tolerance {tol:g} for {dtype}"


def scipy_conv(x, w, stride, pads, dilation, groups, mode):
    """Forward convolution through scipy.signal.correlate, in float64.

    x (N, C, *in), w (K, C/g, *kernel), pads one (lo, hi) per dim."""
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), *pads], mode=NUMPY_MODE[mode])
    k_out, cg = w.shape[:2]
    kg = k_out // groups
    dilated = np.zeros((k_out, cg) + tuple(d * (k - 1) + 1 for d, k in zip(dilation, w.shape[2:])))
    dilated[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in dilation)] = w
    rows = xp if len(xp) else np.zeros((1,) + xp.shape[1:])  # N = 0: shape from one zero sample
    out = np.array([[sum(signal.correlate(row[(k // kg) * cg + c], dilated[k, c], mode="valid", method="direct")
                         for c in range(cg))[tuple(slice(None, None, s) for s in stride)]
                     for k in range(k_out)] for row in rows])
    return out[:len(xp)].reshape((len(xp), k_out) + out.shape[2:])


def inner(a, b) -> float:
    return float(np.vdot(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()))


# What the fuzz reached, printed at the end of the run (conftest.py).
FUZZ_COUNTS: "collections.Counter" = collections.Counter()


def nvrtc_gate():
    """ci/nvrtc_gate.py as a module (the offline NVRTC compile gate)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "ci" / "nvrtc_gate.py"
    spec = importlib.util.spec_from_file_location("nvrtc_gate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
