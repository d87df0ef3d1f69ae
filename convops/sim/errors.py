"""Errors the simulator raises; all derive from SimError.

Errors from inside a launch name the kernel and, where they concern one
thread, carry ``block`` and ``thread`` (index tuples) and ``source`` (the
"file:line" of the offending access or statement, when known).
"""


class SimError(Exception):
    """Base of every convops.sim error."""

    def __init__(self, message, *, kernel=None, block=None, thread=None, source=None):
        super().__init__(message)
        self.kernel = kernel
        self.block = block
        self.thread = thread
        self.source = source


class SimCompileError(SimError):
    """The C++ compiler rejected the kernel source (message: the compiler's, with file and line)."""


class SimArgumentError(SimError, TypeError):
    """Kernel arguments do not match the kernel's signature (count, scalar width
    and kind, array element type)."""


class SimLaunchError(SimError, ValueError):
    """A launch a GPU would reject (grid, block or shared memory beyond the
    target's limits), or a malformed launch."""


class SimOutOfBoundsError(SimError):
    """A read or write outside every argument, shared memory and the thread's
    own stack: an out-of-bounds, null, wild or misaligned access."""


class SimBarrierError(SimError):
    """Barrier or warp divergence: threads wait at different barriers, at a
    barrier other threads have left, or at a warp operation whose mask names
    lanes that never arrive (on a GPU: a hang or undefined behaviour)."""


class SimRaceError(SimError):
    """Conflicting accesses to one address by different threads with no
    barrier between them, or two runs with different thread orders gave
    different outputs."""


class SimFaultError(SimError):
    """The kernel faulted: integer division by zero, an out-of-bounds index
    into a fixed-size array, a trap, a crash of the launch worker."""


class SimAssertError(SimFaultError):
    """A device-side ``assert`` (or ``__trap()``) failed."""


class SimStackOverflowError(SimFaultError):
    """A thread used more stack than ``config.sim_stack_bytes``."""


class SimTimeoutError(SimError):
    """The launch stopped making progress for ``config.sim_watchdog_seconds``
    (a spin-wait never ends on the simulator's cooperative threads)."""
