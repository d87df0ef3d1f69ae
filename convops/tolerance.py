"""Tolerances per dtype, in one table, and the error measure they apply to.

The error of a result is ``max|result - reference| / scale`` with ``scale`` the
largest magnitude of the reference output (1 when it is all zeros): error
relative to the reference's scale, so outputs near zero from cancellation do
not demand more digits than the dtype has.  Used by validation mode and tests.
"""

from __future__ import annotations

import numpy as np

TOLERANCE = {"float64": 1e-10, "float32": 1e-5, "float16": 1e-2}


def relative_error(result, reference) -> float:
    """max|result - reference| / max(max|reference|, 1 if all zero); inf when
    either holds a NaN or infinity the other does not."""
    r = np.asarray(result, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if r.shape != ref.shape:
        return float("inf")
    if r.size == 0:
        return 0.0
    finite = np.isfinite(ref)
    if not np.array_equal(np.isfinite(r), finite):
        return float("inf")
    if not np.array_equal(r[~finite], ref[~finite], equal_nan=True):
        return float("inf")
    scale = np.max(np.abs(ref[finite]), initial=0.0) or 1.0
    return float(np.max(np.abs(r[finite] - ref[finite]), initial=0.0) / scale)


def within_tolerance(result, reference, dtype: str) -> bool:
    return relative_error(result, reference) <= TOLERANCE[dtype]
