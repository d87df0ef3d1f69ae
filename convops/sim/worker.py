"""The launch worker: one process running one kernel executable.

The worker (include/sim_runtime.cpp) talks over a Unix stream socket, every
message an 8-byte length and its bytes: it greets with the kernels'
addresses and signatures, then answers one launch request at a time with
``{"ok": true}`` or a report of what went wrong, after which it exits.
Buffers live in a shared memory arena (a memfd, passed with SCM_RIGHTS when
it grows); its first page is a control block where each of the worker's OS
threads counts the simulated threads it finished and notes the block and
thread it runs, so the watchdog here can tell a hang from a long launch and
name where it hangs, and a worker that dies without a word can be placed.

Waiting is a loop of short ``select`` timeouts, so Ctrl-C interrupts a launch
(the worker is killed) and the watchdog ends one in which no thread finished
for ``config.sim_watchdog_seconds``.
"""

from __future__ import annotations

import array
import json
import mmap
import os
import re
import select
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import numpy as np

from .. import config
from .errors import (SimAssertError, SimBarrierError, SimError, SimFaultError, SimLaunchError, SimOutOfBoundsError,
                     SimRaceError, SimStackOverflowError, SimTimeoutError)

CONTROL_BYTES = 4096  # the arena's control page: per OS thread (threads finished, block + 1, thread)
_SLOTS = 16
_KINDS = {"oob": SimOutOfBoundsError, "race": SimRaceError, "barrier": SimBarrierError, "fault": SimFaultError,
          "assert": SimAssertError, "stack": SimStackOverflowError, "launch": SimLaunchError}
_POLL = 0.05


class Worker:
    def __init__(self, executable: Path, stack_bytes: int):
        self.executable = Path(executable)
        self.stack_bytes = stack_bytes
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {**os.environ, "CONVOPS_SIM_FD": str(child.fileno()), "CONVOPS_SIM_STACK_BYTES": str(stack_bytes)}
        try:
            self.proc = subprocess.Popen([str(self.executable)], pass_fds=(child.fileno(),), env=env,
                                         stdin=subprocess.DEVNULL)
        finally:
            child.close()
        self.sock = parent
        self._inbox = b""
        self._arena = None
        self._arena_fd = -1
        self._arena_len = 0
        self._send_fd = False
        self.hello = self._receive(timeout=120.0, kernel="(starting the worker)")

    def alive(self) -> bool:
        return self.proc.poll() is None

    # ---- the arena ------------------------------------------------------------------------
    def reserve(self, nbytes: int) -> None:
        """An arena of at least ``nbytes`` (a new memfd when it must grow)."""
        if nbytes <= self._arena_len:
            return
        size = max(nbytes, 2 * self._arena_len, 1 << 20)
        fd = os.memfd_create("convops-sim-arena")
        os.ftruncate(fd, size)
        arena = mmap.mmap(fd, size)
        self._drop_arena()
        self._arena, self._arena_fd, self._arena_len, self._send_fd = arena, fd, size, True

    def view(self, offset: int, nbytes: int) -> np.ndarray:
        return np.frombuffer(self._arena, np.uint8, nbytes, offset)

    def _control(self) -> np.ndarray:
        return np.frombuffer(self._arena, np.uint64, CONTROL_BYTES // 8, 0)

    def _drop_arena(self):
        if self._arena is not None:
            try:
                self._arena.close()
            except BufferError:  # a view is still alive; the mapping goes with it
                pass
            os.close(self._arena_fd)
        self._arena, self._arena_fd, self._arena_len = None, -1, 0

    # ---- launches -------------------------------------------------------------------------
    def launch(self, request: bytes, kernel: str, describe=lambda message: message) -> None:
        self._control()[:] = 0
        data = struct.pack("<Q", len(request)) + request
        if self._send_fd:
            sent = self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [self._arena_fd]))])
            self._send_fd = False
            self.sock.sendall(data[sent:])
        else:
            self.sock.sendall(data)
        self._receive(timeout=None, kernel=kernel, describe=describe)

    def _message(self):
        """A whole message from the inbox, or None."""
        if len(self._inbox) < 8:
            return None
        n = struct.unpack("<Q", self._inbox[:8])[0]
        if len(self._inbox) < 8 + n:
            return None
        message, self._inbox = self._inbox[8:8 + n], self._inbox[8 + n:]
        return message

    def _receive(self, timeout, kernel: str, describe=lambda message: message) -> dict:
        """The worker's next message; a report becomes its SimError.  ``timeout``
        None: the watchdog (no thread finished for config.sim_watchdog_seconds)."""
        start = last_change = time.monotonic()
        last = None
        while True:
            ready, _, _ = select.select([self.sock], [], [], _POLL)
            chunk = self.sock.recv(_RECV_BYTES) if ready else None
            if chunk:
                self._inbox += chunk
                message = self._message()
                if message is not None:
                    reply = json.loads(message)
                    if not reply.get("ok"):
                        self.proc.wait()
                        raise self._error(reply, kernel, describe)
                    return reply
                continue
            if not self.alive() or chunk == b"":
                self.proc.wait()
                raise self._died(kernel)
            now = time.monotonic()
            if timeout is not None:
                if now - start > timeout:
                    self.close()
                    raise SimError(f"{kernel}: the simulator's worker did not start within {timeout:.0f} s")
                continue
            progress = int(self._control()[1::3][:_SLOTS].sum()) if self._arena is not None else 0
            if progress != last:
                last, last_change = progress, now
            elif now - last_change > config.sim_watchdog_seconds:
                where = self._where()
                self.close()
                raise SimTimeoutError(f"{kernel}: no progress for {config.sim_watchdog_seconds:g} s (no thread "
                                      f"finished){where}: a spin-wait (threads waiting for each other outside "
                                      f"barriers, or for another block, never finish on the simulator's "
                                      f"cooperative threads) or an endless loop; config.sim_watchdog_seconds / "
                                      f"CONVOPS_SIM_WATCHDOG sets the limit", kernel=kernel)

    def _where(self) -> str:
        """The blocks and threads the worker's OS threads were running, if known."""
        if self._arena is None:
            return ""
        c = self._control()
        running = [(int(c[2 + 3 * i]) - 1, int(c[3 + 3 * i])) for i in range(_SLOTS) if c[2 + 3 * i]]
        return "".join(f"; running: linear block {b}, linear thread {t}" for b, t in running)

    def _died(self, kernel) -> SimError:
        code = self.proc.returncode
        how = f"was killed by signal {signal.Signals(-code).name}" if code and code < 0 else f"exited with status {code}"
        return SimFaultError(f"{kernel}: the simulator's launch worker {how} without a report{self._where()}",
                             kernel=kernel)

    def _error(self, reply: dict, kernel: str, describe) -> SimError:
        message = describe(reply.get("message", ""))
        pcs = reply.get("pcs", [])
        sources = _source_lines(self.executable, pcs)
        for i, where in enumerate(sources):
            message = message.replace(f"{{pc{i}}}", where)
        if "{user}" in message:  # the innermost frame in the kernel's own code
            user = next((w for w, own in zip(sources, _own_frames(self.executable, pcs)) if not own), None)
            message = message.replace("{user}", user or (sources[0] if sources else "an unknown place"))
            sources = [user] if user else sources
        cls = _KINDS.get(reply.get("kind"), SimError)
        block = tuple(reply["block"]) if "block" in reply else None
        thread = tuple(reply["thread"]) if "thread" in reply else None
        return cls(f"{kernel}: {message}", kernel=kernel, block=block, thread=thread,
                   source=sources[0] if sources else None)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()
        self._drop_arena()


# Bytes read from the worker's socket at a time: replies are small JSON (a
# bigger one arrives in several reads); recv allocates this much per call.
_RECV_BYTES = 64 * 1024

# The simulator's own headers and runtime appear in debug information under this
# name (module.py compiles with -ffile-prefix-map), not under the path of the
# checkout that built them: a cached executable built from another checkout or
# an installed wheel still tells its own frames from the kernel's.
# (addr2line prefixes such a relative-looking name with the build's directory,
# so a frame is the simulator's own when the tag occurs in its path.)
INCLUDE_TAG = "<convops-sim>"


def _is_own(place: str) -> bool:
    return INCLUDE_TAG + "/" in place


def _own_frames(executable: Path, pcs) -> list:
    """For each return address: does it lie in the simulator's own code (runtime or header)?"""
    return [all(_is_own(f.split(" at ", 1)[1]) for f in chain if " at " in f) if chain else True
            for chain in _chains(executable, pcs)]


def _chains(executable: Path, pcs) -> list:
    """addr2line's inlining chain (innermost first) of each return address."""
    try:
        out = subprocess.run(["addr2line", "-e", str(executable), "-f", "-C", "-i", "-p",
                              *[hex(max(int(pc) - 1, 0)) for pc in pcs]], capture_output=True, text=True, timeout=30)
        lines = out.stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        lines = []
    chains = []
    for line in lines:
        frame = line.strip()
        if frame.startswith("(inlined by)") and chains:
            chains[-1].append(frame[len("(inlined by)"):].strip())
        else:
            chains.append([frame])
    return chains + [[] for _ in range(len(pcs) - len(chains))]


def _source_lines(executable: Path, pcs) -> list:
    """'file:line (function)' of each return address (addr2line; the call is
    one byte before it).  Of the inlining chain, the innermost frame outside
    the simulator's own headers: the kernel's line, not the helper's."""
    if not pcs:
        return []
    chains = _chains(executable, pcs)
    result = []
    for i, pc in enumerate(pcs):
        frames = [f for f in (chains[i] if i < len(chains) else []) if " at " in f and "??" not in f.split(" at ", 1)[1]]
        frame = next((f for f in frames if not _is_own(f.split(" at ", 1)[1])), frames[0] if frames else None)
        if frame is None:
            result.append(f"address {int(pc):#x}")
            continue
        function, place = frame.split(" at ", 1)
        place = re.sub(r"\s*\(discriminator \d+\)", "", place.strip())
        if "<" in place:  # a source given as text: "<sim-source>", not a path in the build directory
            place = place[place.index("<"):]
        result.append(f"{place} ({function.strip()})")
    return result
