"""The ``cuda-sim`` backend: NumPy arrays; the very same kernel sources and
launchers as ``cuda``, executed by the SIMT simulator (``convops.sim``).
Chosen only explicitly (``backend="cuda-sim"``)."""

from __future__ import annotations


def unavailable_reason():
    from ..sim.module import compiler
    if compiler() is None:
        return "no C++ compiler (set CXX or install g++): the simulator compiles the kernels with it"
    return None


from . import algorithms  # noqa: E402,F401  (registers the cuda and cuda-sim implementations)
