"""Registry and dispatch: selection table, forced choices, explain,
validation mode.  A fake backend registered for the duration of a test
exercises the selection logic beside the reference."""

import dataclasses

import numpy as np
import pytest

import convops as co
from convops import dispatch, problems, reference, registry
from convops.registry import Backend, Implementation


def _stride1_only(p):
    return [f"stride {p.stride} != 1"] if any(s != 1 for s in p.stride) else []


def _no_depthwise(p):
    return ["depthwise is faster elsewhere"] if p.is_depthwise else []


def _wrong(p, a, b, bias=None):
    return reference.run(p, a, b, bias) + 1  # off by one everywhere


@pytest.fixture
def fake_backend(monkeypatch):
    """Backend "fake" ahead of numpy for host arrays: a correct fwd that only
    does stride 1 (and declines depthwise under auto), and a wrong dgrad."""
    registry.implementations()  # load the real backends first
    monkeypatch.setitem(registry.BACKENDS, "fake", Backend("fake", "convops.reference", "numpy"))
    monkeypatch.setitem(co.config.auto_backends, "numpy", ("fake", "numpy"))
    monkeypatch.setitem(co.config.selection_order, "fake", ("direct", "broken"))
    impls = [
        Implementation("fwd", "fake", "direct", reference.run, supports=_stride1_only, declines=_no_depthwise,
                       dtypes=frozenset({"float32", "float64"})),
        Implementation("dgrad", "fake", "broken", _wrong),
    ]
    monkeypatch.setattr(registry, "_implementations", registry._implementations + impls)
    return impls


def test_reference_registered():
    names = {(i.op, i.backend, i.algorithm) for i in co.implementations()}
    assert {("fwd", "numpy", "reference"), ("dgrad", "numpy", "reference"), ("wgrad", "numpy", "reference")} <= names
    assert "numpy" in co.available_backends()


def test_backends_are_consistent():
    for name, backend in registry.BACKENDS.items():
        assert backend.name == name and backend.array_kind in ("numpy", "cuda")
    for impl in co.implementations():
        assert impl.backend in registry.BACKENDS and impl.op in ("fwd", "dgrad", "wgrad")


@pytest.mark.parametrize("problem, expected", [
    (problems.fwd(1, 4, 4, (8, 8), 3, padding=1), "fake/direct"),
    (problems.fwd(1, 4, 4, (8, 8), 3, stride=2, padding=1), "numpy/reference"),  # fake: stride
    (problems.fwd(1, 4, 4, (8, 8), 3, padding=1, groups=4), "numpy/reference"),  # fake declines
    (problems.fwd(1, 4, 4, (8, 8), 3, dtype="float16"), "numpy/reference"),  # fake: dtype
    (problems.fwd(1, 4, 4, (8, 8), 3).grad_weight(), "numpy/reference"),  # no fake wgrad
    (problems.fwd(1, 4, 4, (8, 8), 3).grad_input(), "fake/broken"),
])
def test_selection_table(fake_backend, problem, expected):
    impls, excluded = dispatch.candidates(problem, "numpy")
    assert not excluded
    assert dispatch.select(problem, impls).chosen.name == expected


def test_select_is_pure(fake_backend):
    """select depends on its arguments only: it runs nothing, changes nothing,
    ignores call history, and follows the order it is given."""
    p = problems.fwd(1, 4, 4, (8, 8), 3, padding=1)
    impls = [dataclasses.replace(i, run=_boom) for i in dispatch.candidates(p, "numpy")[0]]  # nothing may run
    first = dispatch.select(p, impls)
    assert first.chosen.name == "fake/direct"
    snapshot = list(impls)
    for other in (problems.fwd(1, 4, 4, (8, 8), 3, stride=2, padding=1), p.grad_input(), p.with_dtype("float16")):
        dispatch.select(other, dispatch.candidates(other, "numpy")[0])
    again = dispatch.select(dataclasses.replace(p), list(impls))
    assert again == first and impls == snapshot
    reordered = dispatch.select(p, impls[::-1])
    assert reordered.chosen is impls[-1] and reordered.chosen is not first.chosen


def _boom(*args):
    raise AssertionError("select ran an implementation")


def test_declined_candidate_still_runs_when_forced(fake_backend):
    x, w = np.ones((1, 4, 8, 8), np.float32), np.ones((4, 1, 3, 3), np.float32)
    plan = co.explain(x, w, groups=4, algorithm="direct")
    assert plan.chosen.name == "fake/direct"
    plan = co.explain(x, w, groups=4)
    assert plan.chosen.name == "numpy/reference"
    text = str(plan)
    assert "heuristic: depthwise is faster elsewhere" in text and "-> numpy/reference" in text


def test_forced_algorithm_that_cannot_run(fake_backend):
    x, w = np.ones((1, 4, 8, 8), np.float16), np.ones((4, 4, 3, 3), np.float16)
    with pytest.raises(co.UnsupportedError, match=r"(?s)fake/direct: dtype float16 not in .*stride \(2, 2\) != 1"):
        co.conv(x, w, stride=2, algorithm="direct")


def test_forced_algorithm_without_that_op(fake_backend):
    x, gy = np.ones((1, 4, 8, 8), np.float32), np.ones((1, 4, 6, 6), np.float32)
    with pytest.raises(co.UnsupportedError, match=r"no implementation can run wgrad-.*\n.*no implementation of this "
                                                  r"op matches the requested backend/algorithm"):
        co.conv_grad_weight(x, gy, (4, 4, 3, 3), algorithm="direct")


def test_forced_backend_unavailable(monkeypatch):
    registry.implementations()
    monkeypatch.setitem(registry.BACKENDS, "gpu-only", Backend("gpu-only", "convops.reference", "cuda"))
    x, w = np.ones((1, 4, 8, 8), np.float32), np.ones((4, 4, 3, 3), np.float32)
    with pytest.raises(co.UnsupportedError, match=r"backend 'gpu-only' takes cuda arrays, got numpy arrays"):
        co.conv(x, w, backend="gpu-only")


def test_explain_every_op():
    x, w = np.ones((2, 4, 8, 8)), np.ones((6, 2, 3, 3))
    for op, a, b, kw in [("conv", x, w, {}), ("conv_transpose", np.ones((2, 6, 4, 4)), w, {"stride": 2}),
                         ("conv_grad_input", np.ones((2, 6, 6, 6)), w, {"input_shape": x.shape}),
                         ("conv_grad_weight", x, np.ones((2, 6, 6, 6)), {"weight_shape": w.shape})]:
        plan = co.explain(a, b, op=op, groups=2, **kw)
        assert isinstance(plan, co.Plan) and plan.chosen.backend == "numba"  # auto: host arrays go to numba
        assert plan.problem.op == {"conv": "fwd", "conv_transpose": "dgrad", "conv_grad_input": "dgrad",
                                   "conv_grad_weight": "wgrad"}[op]
        assert f"chosen:  {plan.chosen.name}" in str(plan) and "numpy/reference" in str(plan)


def test_validation_mode_catches_wrong_kernel(fake_backend, monkeypatch):
    y, w = np.ones((1, 4, 6, 6)), np.ones((4, 4, 3, 3))
    monkeypatch.setattr(co.config, "validation", False)
    wrong = co.conv_grad_input(y, w, (1, 4, 8, 8))  # silently wrong without validation
    assert np.all(wrong == co.conv_grad_input(y, w, (1, 4, 8, 8), backend="numpy") + 1)
    co.set_validation(True)
    assert co.get_validation()
    with pytest.raises(co.ValidationError, match=r"fake/broken result for dgrad-n1-c4k4-in8x8-r3x3-float64 "
                                                 r"differs from the reference: max error") as info:
        co.conv_grad_input(y, w, (1, 4, 8, 8))
    assert info.value.max_error > info.value.tolerance and info.value.problem.op == "dgrad"
    co.conv(np.ones((1, 4, 8, 8)), w)  # the correct fake fwd passes validation
    co.set_validation(False)


def test_validation_env_variable():
    import subprocess
    import sys
    code = "import convops; print(convops.get_validation())"
    out = subprocess.run([sys.executable, "-c", code], env={"CONVOPS_VALIDATE": "1", "PATH": ""},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_duplicate_registration_rejected():
    impl = co.implementations(op="fwd", backend="numpy")[0]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(impl)


def test_explain_shows_the_phase_subproblems():
    """polyphase/subpixel/space_to_batch hand their phases to select, and the plan shows each."""
    x, w = np.ones((1, 4, 9, 9), np.float32), np.ones((4, 4, 3, 3), np.float32)
    plan = co.explain(x, w, stride=2, padding=1, algorithm="polyphase")
    assert plan.chosen.name == "numba/polyphase" and len(plan.parts) == 4  # 2 x 2 stride phases of a 3x3 kernel
    assert {part.chosen.name for part in plan.parts} == {"numba/im2col"}
    assert all(part.problem.stride == (1, 1, 1) for part in plan.parts)
    text = str(plan)
    assert "sub-problem 1 of 4:" in text and "-> numba/im2col" in text
    plan = co.explain(x, np.ones((4, 1, 3, 3), np.float32), groups=4, dilation=2, padding=2, algorithm="space_to_batch",
                      op="conv")
    assert len(plan.parts) == 1 and plan.parts[0].chosen.name == "numba/depthwise"
    assert plan.parts[0].problem.n == 4  # the 2 x 2 dilation phases as a batch


def test_plans_are_memoized_but_see_every_change(fake_backend, monkeypatch):
    """A repeated call reuses its plan; a changed setting, a changed registry
    or another request is a new plan, never a stale one."""
    x, w = np.ones((1, 4, 8, 8)), np.ones((4, 4, 3, 3))
    first = co.explain(x, w)
    assert co.explain(x, w) is first  # memoized
    assert first.chosen.backend == "fake"
    # a setting: the fake backend moved behind numpy
    monkeypatch.setitem(co.config.auto_backends, "numpy", ("numpy", "fake"))
    assert co.explain(x, w).chosen.backend == "numpy"
    monkeypatch.setitem(co.config.auto_backends, "numpy", ("fake", "numpy"))
    assert co.explain(x, w).chosen.backend == "fake"
    # a setting replaced by an unhashable value: no memo, still the right plan
    monkeypatch.setitem(co.config.auto_backends, "numpy", ["numpy", "fake"])
    assert co.explain(x, w).chosen.backend == "numpy"
    monkeypatch.setitem(co.config.auto_backends, "numpy", ("fake", "numpy"))
    # the registry: the fake implementation replaced (as a test or plugin would)
    replaced = [dataclasses.replace(i, supports=lambda p: ["switched off"]) if i.backend == "fake" else i
                for i in registry._implementations]
    monkeypatch.setattr(registry, "_implementations", replaced)
    assert co.explain(x, w).chosen.backend == "numpy"
    # another problem, another request
    assert co.explain(x, w, stride=2).problem != first.problem
    assert co.explain(x, w, backend="numpy").chosen.backend == "numpy"


def test_plans_without_a_memo_key(fake_backend, monkeypatch):
    """Settings no key can hold (an unhashable value, a dict whose keys do not
    sort) are not an error: the plan is computed, not memoized; and a plan's
    reasons are tuples, so a shared plan cannot be changed by its reader."""
    x, w = np.ones((1, 4, 8, 8)), np.ones((4, 4, 3, 3))
    monkeypatch.setattr(co.config, "cuda_workspace_bytes", np.array(256 * 2**20))
    assert co.explain(x, w).chosen.backend == "fake"
    monkeypatch.setitem(co.config.auto_backends, None, ())
    assert co.explain(x, w).chosen.backend == "fake"
    assert all(isinstance(r, tuple) for _, r in co.explain(x, w).considered)


def test_cuda_array_without_cupy_names_the_missing_backend(monkeypatch):
    """A __cuda_array_interface__ object where CuPy cannot run gets the
    backend's reason, not an import error from selection."""
    registry.implementations()
    # as on a machine without CuPy (here too where it is installed)
    monkeypatch.setitem(registry._unavailable, "cuda", "CuPy is not installed (pip install cupy-cuda13x)")

    class DeviceArray:
        def __init__(self, shape):
            self.shape = shape
            self.__cuda_array_interface__ = {"shape": shape, "typestr": "<f4", "data": (0, False), "version": 3}

    with pytest.raises(co.UnsupportedError, match=r"backend 'cuda' is unavailable"):
        co.conv(DeviceArray((1, 2, 5, 5)), DeviceArray((2, 2, 3, 3)))
