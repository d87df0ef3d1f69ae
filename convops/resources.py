"""Where the package's non-Python files are."""

from __future__ import annotations

import functools
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)  # asked on every launch; a failure is not cached
def kernels_dir() -> Path:
    """The CUDA sources: ``convops/kernels`` in a wheel, ``kernels/`` at the
    top of the source tree in an editable install or a checkout."""
    for candidate in (_PACKAGE / "kernels", _PACKAGE.parent / "kernels"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"convops CUDA kernel sources not found (looked in {_PACKAGE / 'kernels'} "
                            f"and {_PACKAGE.parent / 'kernels'}); the installation is incomplete")
