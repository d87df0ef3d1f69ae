"""The ``cuda`` backend: CuPy arrays, kernels compiled by NVRTC through
``cupy.RawModule`` on first use (never at import)."""

from __future__ import annotations


def unavailable_reason():
    try:
        import cupy
    except ImportError as e:
        return f"CuPy is not installed ({e}); pip install 'convops[cuda]'"
    except Exception as e:  # noqa: BLE001  (a broken CUDA install raises anything)
        return f"CuPy does not import: {e}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001
        return f"no CUDA device: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None if count else "no CUDA device"


from . import algorithms  # noqa: E402,F401  (registers the cuda and cuda-sim implementations)
