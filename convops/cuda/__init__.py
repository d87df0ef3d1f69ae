"""CUDA backend support.  ``runtime.CupyRuntime`` is the GPU side of the
runtime seam; ``convops.sim.runtime.SimRuntime`` is the simulator side.
``kernel_instantiations()`` lists every (source, name_expressions, options)
the launchers can request (what ci/nvrtc_gate.py compiles)."""


def kernel_instantiations():
    from .common import kernel_instantiations as instantiations  # imported on use: registers the algorithms
    return instantiations()
