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
