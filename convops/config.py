"""Settings, in one place.

``validation``: when true every call also runs the NumPy reference and raises
``convops.ValidationError`` if the result is outside tolerance.  Defaults to
the environment variable ``CONVOPS_VALIDATE`` (``1``/``true``/``yes``).
"""

from __future__ import annotations

import os

validation: bool = os.environ.get("CONVOPS_VALIDATE", "").strip().lower() in ("1", "true", "yes", "on")


def set_validation(enabled: bool) -> None:
    """Turn validation mode on or off for this process."""
    global validation
    if not isinstance(enabled, bool):
        raise TypeError(f"set_validation expects a bool, got enabled={enabled!r}")
    validation = enabled


def get_validation() -> bool:
    return validation


# ---- CPU (Numba) backend ------------------------------------------------------
# Fast-math flags for the Numba kernels.  Reassociation lets LLVM vectorize the
# reductions; it is still deterministic (one compiled order per kernel, each
# output element computed by exactly one parallel iteration).  No nnan/ninf:
# NaN and infinity propagate as in IEEE arithmetic.
cpu_fastmath = frozenset({"reassoc", "contract", "nsz", "arcp"})

# Output channels per register/L1 tile of the direct kernels.
cpu_channel_block = 4

# Upper bound on the im2col column workspace (bytes); the columns are built and
# multiplied in chunks of whole output rows under this cap.
cpu_workspace_bytes = int(os.environ.get("CONVOPS_CPU_WORKSPACE_BYTES", 64 * 2**20))

# Preferred column chunk (bytes, at most the cap): small enough that the
# columns are still in cache when the GEMM reads them.
cpu_chunk_bytes = 4 * 2**20
