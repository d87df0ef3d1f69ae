"""Errors the simulator raises; all derive from SimError."""


class SimError(Exception):
    """Base of every convops.sim error."""


class SimCompileError(SimError):
    """The C++ compiler rejected the kernel source (message: the compiler's, with file and line)."""


class SimArgumentError(SimError, TypeError):
    """Kernel arguments do not match the kernel's signature."""


class SimLaunchError(SimError, ValueError):
    """Bad grid, block or shared memory size, or a failure inside the launch."""


class SimOutOfBoundsError(SimError):
    """A kernel wrote outside an array argument (a guard zone changed)."""


class SimBarrierError(SimError):
    """Barrier divergence: threads of a block wait at different barriers, or at
    a barrier other threads have left (on a GPU: a hang or undefined behaviour)."""


class SimRaceError(SimError):
    """Two runs with different thread orders gave different outputs: a missing
    barrier or another order dependence."""
