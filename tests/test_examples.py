"""The training loops in examples/, run by the tests (the digits ones in
full: they take seconds)."""

import importlib.util
import os

import numpy as np
import pytest

import convops as co

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytest.importorskip("sklearn", reason="the examples train on scikit-learn's bundled digits")


def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numpy_digits_reaches_97_percent():
    acc, seconds, losses = _example("numpy_digits").train(log=lambda *a: None)
    print(f"numpy_digits: test accuracy {acc:.4f} in {seconds:.1f} s")
    assert acc >= 0.97
    assert losses[-1] < 0.1 * losses[0]


def test_numpy_digits_under_validation_mode():
    """Every convolution of a shortened run is also checked against the
    reference (CONVOPS_VALIDATE=1), and the run is bitwise the run without
    the checks, so the full run's accuracy holds under validation too."""
    example = _example("numpy_digits")
    plain = example.train(epochs=2, log=lambda *a: None)
    before = co.get_validation()
    co.set_validation(True)
    try:
        checked = example.train(epochs=2, log=lambda *a: None)
    finally:
        co.set_validation(before)
    assert checked[0] == plain[0] and checked[2] == plain[2]
    assert checked[0] > 0.8 and checked[2][1] < checked[2][0]


def test_numpy_digits_gradients_match_finite_differences():
    """The example's hand-written backward pass is right (so its accuracy means something)."""
    example = _example("numpy_digits")
    rng = np.random.default_rng(0)
    params = [[w.astype(np.float64), b.astype(np.float64) + rng.standard_normal(b.shape) * 0.1]
              for w, b in example.init_params(rng)]
    x, labels = rng.random((3, 1, 8, 8)), np.array([1, 7, 3])
    _, grads = example.loss_and_grads(params, x, labels)
    for layer, which, index in ((0, 0, (3, 0, 1, 2)), (2, 0, (5, 7, 0, 1)), (3, 1, (4,)), (1, 1, (9,))):
        p = params[layer][which]
        old = p[index]
        p[index] = old + 1e-6
        up = example.loss_and_grads(params, x, labels)[0]
        p[index] = old - 1e-6
        down = example.loss_and_grads(params, x, labels)[0]
        p[index] = old
        assert abs((up - down) / 2e-6 - grads[layer][which][index]) < 1e-6


def test_torch_digits_losses_track_torch_nn():
    pytest.importorskip("torch")
    example = _example("torch_digits")
    ref, _ = example.run(False, steps=50)
    ours, _ = example.run(True, steps=50)
    gaps = [abs(a - b) for a, b in zip(ref, ours)]
    print(f"torch_digits: max loss gap {max(gaps):.2e} over 50 steps")
    assert max(gaps) <= 1e-4
    assert ours[-1] < 0.5 * ours[0]  # it learns
