"""CUDA backend support.  ``runtime.CupyRuntime`` is the GPU side of the
runtime seam; ``convops.sim.runtime.SimRuntime`` is the simulator side."""
