"""convops.sim: run CUDA C kernels on the CPU, with checks a GPU does not make.

``SimModule(code, options=(), name_expressions=())`` mirrors
``cupy.RawModule``; ``module.get_function(name)`` returns a kernel called as
``kernel(grid, block, args, shared_mem=0)``.  Array arguments are NumPy arrays
(device pointers), scalar arguments NumPy scalars of the parameter's width.
Errors derive from :class:`SimError`.
"""

from .errors import (SimArgumentError, SimAssertError, SimBarrierError, SimCompileError, SimError, SimFaultError,
                     SimLaunchError, SimOutOfBoundsError, SimRaceError, SimStackOverflowError, SimTimeoutError)
from .module import SimKernel, SimModule

__all__ = ["SimModule", "SimKernel", "SimError", "SimCompileError", "SimArgumentError", "SimLaunchError",
           "SimOutOfBoundsError", "SimBarrierError", "SimRaceError", "SimFaultError", "SimAssertError",
           "SimStackOverflowError", "SimTimeoutError"]
