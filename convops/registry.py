"""Registry of implementations and backends.

Each implementation is a frozen record registered where it is defined.  It
says which pass (``op``) it computes, on which backend, under which algorithm
name, for which dtypes, why it cannot run a given problem
(``supports(problem) -> list of reasons``; empty means it can) and the
scratch memory it needs (``workspace_bytes(problem)``, as CUTLASS's
``get_workspace_size``).  Optionally ``declines(problem)`` gives heuristic
reasons it should not be picked by ``algorithm="auto"`` (it still runs when
forced), and ``subproblems(problem)`` the problems it hands to other
implementations (through ``dispatch.select``, so ``explain`` shows them).

The order in which ``algorithm="auto"`` tries implementations is one table,
``config.selection_order``; an algorithm missing from it cannot register.

Backends are loaded lazily: the first query imports each backend's module,
which registers its implementations.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Callable, Optional

from . import config
from .problem import DTYPES, ConvProblem


def _no_reasons(problem: ConvProblem) -> list[str]:
    return []


def _no_workspace(problem: ConvProblem) -> int:
    return 0


def _no_subproblems(problem: ConvProblem) -> list:
    return []


def _dtype_tolerance(problem: ConvProblem) -> float:
    from .tolerance import TOLERANCE
    return TOLERANCE[problem.dtype]


@dataclass(frozen=True)
class Implementation:
    """One (op, backend, algorithm).  ``run(problem, a, b, bias)`` computes the
    pass on its two operands (x, w for fwd; dy, w for dgrad; x, dy for wgrad)
    and returns a new array of ``problem.result_shape``; ``bias`` (fwd and
    dgrad only) is added to every output channel.  ``workspace_bytes(problem)``
    is the most scratch memory ``run`` holds at once beyond its result and
    operand-sized copies (padded or converted operands): at most the
    backend's cap, or ``supports`` says why not."""

    op: str
    backend: str
    algorithm: str
    run: Callable
    supports: Callable[[ConvProblem], list] = _no_reasons
    declines: Callable[[ConvProblem], list] = _no_reasons
    dtypes: frozenset = frozenset(DTYPES)
    workspace_bytes: Callable[[ConvProblem], int] = _no_workspace
    subproblems: Callable[[ConvProblem], list] = _no_subproblems
    description: str = ""
    # The error validation allows its result (relative to the reference's scale,
    # convops.tolerance): the dtype's, unless the implementation trades accuracy
    # for speed by a documented setting (TF32 on tensor cores).
    tolerance: Callable[[ConvProblem], float] = _dtype_tolerance

    def __repr__(self) -> str:
        return f"<Implementation {self.op} {self.name}>"

    @property
    def name(self) -> str:
        return f"{self.backend}/{self.algorithm}"

    @property
    def rank(self) -> int:
        """Position in ``config.selection_order`` (lower is tried first)."""
        return config.selection_order[self.backend].index(self.algorithm)

    def reasons(self, problem: ConvProblem, auto: bool = False) -> list[str]:
        """Every reason this implementation cannot (or, under auto, should not)
        run ``problem``; empty when it can."""
        out = []
        if problem.op != self.op:
            out.append(f"computes {self.op}, not {problem.op}")
        if problem.dtype not in self.dtypes:
            out.append(f"dtype {problem.dtype} not in {sorted(self.dtypes)}")
        if problem.op == self.op:
            out.extend(self.supports(problem))
            if auto and not out:
                out.extend(f"heuristic: {r}" for r in self.declines(problem))
        return out


@dataclass(frozen=True)
class Backend:
    """A backend: the module that registers it and the array kind it takes
    (``numpy`` arrays on the host, ``cuda`` device arrays)."""

    name: str
    module: str
    array_kind: str
    auto: bool = True  # chosen by backend="auto" for its array kind


BACKENDS = {
    "numpy": Backend("numpy", "convops.reference", "numpy"),
    "numba": Backend("numba", "convops.cpu", "numpy"),
    "cuda": Backend("cuda", "convops.cuda.backend", "cuda"),
    # the CUDA kernels on the SIMT simulator: NumPy arrays, only when asked for
    "cuda-sim": Backend("cuda-sim", "convops.cuda.sim_backend", "numpy", auto=False),
}

_implementations: list[Implementation] = []
_unavailable: dict[str, str] = {}
_loaded = False
_load_lock = threading.RLock()  # reentrant: a backend module may query the registry


def register(impl: Implementation) -> Implementation:
    for other in _implementations:
        if (other.op, other.backend, other.algorithm) == (impl.op, impl.backend, impl.algorithm):
            raise ValueError(f"implementation {impl.op} {impl.name} is already registered")
    if impl.algorithm not in config.selection_order.get(impl.backend, ()):
        raise ValueError(f"algorithm {impl.algorithm!r} of backend {impl.backend!r} is not in "
                         f"config.selection_order; add it there (its position is its priority)")
    _implementations.append(impl)
    return impl


def state() -> tuple[tuple, tuple]:
    """(implementations, key): what selection reads from the registry, the
    key hashable for memoized plans: the implementations by identity (hashing
    them would cost more than selecting; whoever keeps the key keeps the
    returned implementations too, so no id is reused meanwhile), the backends
    and the unavailable ones."""
    _load()
    registered = tuple(_implementations)
    return registered, (tuple(map(id, registered)), tuple(BACKENDS.items()), tuple(sorted(_unavailable.items())))


def _load():
    """Import every backend's module (which registers its implementations),
    once; other threads wait until it is done."""
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        for backend in BACKENDS.values():
            try:
                module = importlib.import_module(backend.module)
            except ImportError as e:
                _unavailable[backend.name] = f"cannot import {backend.module}: {e}"
                continue
            reason = getattr(module, "unavailable_reason", lambda: None)()
            if reason:
                _unavailable[backend.name] = reason
        _loaded = True


def implementations(op: Optional[str] = None, backend: Optional[str] = None) -> list[Implementation]:
    """Every registered implementation (optionally of one op or backend)."""
    _load()
    return [i for i in _implementations if (op is None or i.op == op) and (backend is None or i.backend == backend)]


def available_backends() -> list[str]:
    """Backends this machine can run."""
    _load()
    return [b for b in BACKENDS if b not in _unavailable]


def unavailable_reason(backend: str) -> Optional[str]:
    _load()
    return _unavailable.get(backend)


def algorithms() -> list[str]:
    return sorted({i.algorithm for i in implementations()})
