"""Selection and execution: from a validated call to a result.

``select`` is a pure function of the problem and the candidate list: it walks
the candidates in priority order and returns the first with no reasons.  A
forced ``algorithm=``/``backend=`` that cannot run raises UnsupportedError
listing every candidate's reasons.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import config, registry, tolerance
from .errors import UnsupportedError, ValidationError
from .problem import ConvProblem
from .registry import Implementation
from .validate import Call, choice_param


@dataclass(frozen=True)
class Plan:
    """What would run for a problem, and why not the others.  ``parts`` are
    the plans of the sub-problems the chosen implementation hands on (a phase
    decomposition runs each phase through ``select``)."""

    problem: ConvProblem
    chosen: Implementation
    considered: tuple  # ((Implementation, reasons), ...) in selection order
    parts: tuple = ()

    def __str__(self) -> str:
        lines = [f"problem: {self.problem}", f"chosen:  {self.chosen.name}"]
        for impl, reasons in self.considered:
            mark = "->" if impl is self.chosen else "  "
            why = "; ".join(reasons) if reasons else ("selected" if impl is self.chosen else "eligible")
            lines.append(f"  {mark} {impl.name:<28} {why}")
        for i, part in enumerate(self.parts):
            lines.append(f"  sub-problem {i + 1} of {len(self.parts)}:")
            lines.extend("    " + line for line in str(part).splitlines())
        return "\n".join(lines)


def candidates(problem: ConvProblem, kind: str, backend: str = "auto",
               algorithm: str = "auto") -> tuple[list[Implementation], list[str]]:
    """Implementations of ``problem.op`` for the array kind and the requested
    backend/algorithm, in priority order, plus reasons for backends that are
    excluded outright (unavailable, wrong device)."""
    backend = choice_param("backend", backend, list(registry.BACKENDS))
    algorithm = choice_param("algorithm", algorithm, registry.algorithms())
    excluded = []
    if backend == "auto":
        names = [b for b in config.auto_backends.get(kind, ()) if b in registry.BACKENDS]
    else:
        names = [backend]
        if registry.BACKENDS[backend].array_kind != kind:
            excluded.append(f"backend {backend!r} takes {registry.BACKENDS[backend].array_kind} arrays, "
                            f"got {kind} arrays")
    available = []
    for name in names:
        why = registry.unavailable_reason(name)
        if why:
            excluded.append(f"backend {name!r} is unavailable: {why}")
        else:
            available.append(name)
    if excluded and backend != "auto":
        available = []
    order = {name: rank for rank, name in enumerate(available)}
    impls = [i for i in registry.implementations(op=problem.op) if i.backend in order
             and (algorithm == "auto" or i.algorithm == algorithm)]
    impls.sort(key=lambda i: (order[i.backend], i.rank))
    return impls, excluded


def select(problem: ConvProblem, impls: Sequence[Implementation], auto: bool = True,
           excluded: Sequence[str] = ()) -> Plan:
    """First implementation with no reasons; under ``auto`` heuristic
    declines count as reasons unless every runnable candidate declines.
    Pure: the result depends only on the arguments."""
    considered = tuple((i, tuple(i.reasons(problem, auto=auto))) for i in impls)  # immutable: plans are shared
    chosen = next((i for i, r in considered if not r), None)
    if chosen is None and auto:
        chosen = next((i for i in impls if not i.reasons(problem)), None)
    if chosen is None:
        lines = [f"no implementation can run {problem}:"]
        lines += [f"  {reason}" for reason in excluded]
        lines += [f"  {i.name}: {'; '.join(r)}" for i, r in considered]
        if not considered and not excluded:
            lines.append("  no implementation of this op matches the requested backend/algorithm")
        raise UnsupportedError("\n".join(lines))
    parts = tuple(plan_subproblem(sub, chosen.backend) for sub in chosen.subproblems(problem))
    return Plan(problem, chosen, considered, parts)


def plan_subproblem(problem: ConvProblem, backend: str) -> Plan:
    """The plan of a sub-problem an implementation of ``backend`` hands on:
    the same backend, the algorithm chosen as under ``algorithm="auto"``."""
    impls, excluded = candidates(problem, registry.BACKENDS[backend].array_kind, backend)
    return select(problem, impls, excluded=excluded)


def plan(call: Call, backend: str = "auto", algorithm: str = "auto") -> Plan:
    """The plan of a validated call, memoized: selection is a pure function of
    the problem, the array kind, the request, the settings, the registry and
    (for device arrays) the current device, so a repeated call skips it."""
    registered, state = registry.state()
    try:
        key = (call.problem, call.kind, backend, algorithm, config.fingerprint(), state, _device_key(call.kind))
        found = _plans.get(key)
    except TypeError:  # a setting no key can hold (unhashable): no memo
        key = found = None
    if found is None:
        impls, excluded = candidates(call.problem, call.kind, backend, algorithm)
        found = select(call.problem, impls, auto=(algorithm == "auto"), excluded=excluded)
        if key is not None:
            with _plans_lock:
                if len(_plans) >= _PLANS_KEPT:  # a training loop has a few dozen problems; a sweep must not grow this
                    _plans.clear()
                # the entry keeps the implementations its key names by id alive, so no id is reused while it is kept
                _plans[key] = (found, registered)
        return found
    return found[0]


_plans: dict = {}
_plans_lock = threading.Lock()
_PLANS_KEPT = 4096


def _device_key(kind: str):
    """The current CUDA device for device arrays (its compute capability
    decides what can run); nothing for host arrays, or when none can be asked
    (the backend's own reason then says why)."""
    if kind != "cuda" or registry.unavailable_reason("cuda"):
        return None
    try:
        import cupy
        return cupy.cuda.runtime.getDevice()
    except Exception:  # no driver or device: selection reports the backend's reasons
        return None


def _namespace(a):
    if isinstance(a, np.ndarray):
        return np
    import cupy  # a CUDA array reached here only when its backend is available
    return cupy


def _to_host(a):
    if a is None or isinstance(a, np.ndarray):
        return a
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _empty_result(problem: ConvProblem, like, bias):
    """The result of a problem with no work: zeros (plus bias on outputs)."""
    xp = _namespace(like)
    out = xp.zeros(problem.result_shape, dtype=problem.dtype)
    if bias is not None:
        out += bias.reshape((-1,) + (1,) * problem.ndim)
    return out


def execute(call: Call, a, b, bias=None, *, backend="auto", algorithm="auto"):
    """Run a validated call on its operands (as the caller passed them)."""
    problem = call.problem
    chosen = plan(call, backend, algorithm).chosen
    if not call.batched:
        a = a[None]
        if problem.op == "wgrad":
            b = b[None]
    if problem.is_empty:
        out = _empty_result(problem, a, bias)
    elif config.validation and chosen.backend != "numpy":
        out = _run_validated(problem, chosen, a, b, bias)
    else:
        out = chosen.run(problem, a, b, bias)
    if not call.batched and problem.op != "wgrad":
        out = out[0]
    return out


def _run_validated(problem, impl, a, b, bias):
    """Validation mode: the reference runs on a snapshot of the operands taken
    before the kernel, the operands must be unchanged afterwards, and the
    result must have the problem's shape and dtype and lie within tolerance."""
    from . import reference
    snapshot = [None if v is None else np.array(_to_host(v), copy=True) for v in (a, b, bias)]
    out = impl.run(problem, a, b, bias)

    def fail(message, **kw):
        raise ValidationError(message, problem=problem, implementation=impl.name, **kw)

    for name, before, after in zip(("first operand", "second operand", "bias"), snapshot, (a, b, bias)):
        if before is not None and not np.array_equal(before, _to_host(after), equal_nan=True):
            fail(f"{impl.name} modified its {name} while computing {problem}")
    if tuple(out.shape) != problem.result_shape or str(out.dtype) != problem.dtype:
        fail(f"{impl.name} result for {problem} has shape {tuple(out.shape)} and dtype {out.dtype}, expected "
             f"shape {problem.result_shape} and dtype {problem.dtype}")
    ref = reference.run(problem, *snapshot)
    err = tolerance.relative_error(_to_host(out), ref)
    tol = impl.tolerance(problem)
    if not err <= tol:
        fail(f"{impl.name} result for {problem} differs from the reference: max error {err:.3g} (relative to "
             f"the reference's scale) > tolerance {tol:g}", max_error=err, tolerance=tol)
    return out
