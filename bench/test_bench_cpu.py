"""pytest-benchmark view of the CPU layers (same layers as run.py):

    python -m pytest bench/test_bench_cpu.py --benchmark-only --benchmark-group-by=group

Each layer and pass is timed for convops (algorithm="auto") and for PyTorch
in the same group, so pytest-benchmark's table shows them side by side.
run.py is the interleaved runner that prints ratios and writes the CSV.
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from layers import LAYERS  # noqa: E402

# Neither import skips: a broken install, or a missing peer (pip install -e ".[bench]"), is an error.
import torch  # noqa: E402
import convops as co  # noqa: E402

F = torch.nn.functional

CASES = [(name, op, xs, ws, kw, tr) for name, passes, xs, ws, kw, tr in LAYERS for op in passes]


def _calls(name, op, xs, ws, kw, transposed):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    nd = len(xs) - 2
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    if transposed:
        return (lambda: co.conv_transpose(x, w, **kw)), (lambda: F.conv_transpose2d(xt, wt, **kw))
    y = co.conv(x, w, **kw)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gyt = torch.from_numpy(gy)
    if op == "fwd":
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
        return (lambda: co.conv(x, w, **kw)), (lambda: conv(xt, wt, **kw))
    if op == "dgrad":
        grad_in = getattr(torch.nn.grad, f"conv{nd}d_input")
        return (lambda: co.conv_grad_input(gy, w, x.shape, **kw)), (lambda: grad_in(x.shape, wt, gyt, **kw))
    grad_w = getattr(torch.nn.grad, f"conv{nd}d_weight")
    return (lambda: co.conv_grad_weight(x, gy, w.shape, **kw)), (lambda: grad_w(xt, w.shape, gyt, **kw))


@pytest.mark.parametrize("peer", ["convops", "torch"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_layer(benchmark, case, peer):
    ours, theirs = _calls(*case)
    fn = ours if peer == "convops" else theirs
    fn()  # first call (JIT / cache load) outside the timing
    benchmark.group = f"{case[0]}-{case[1]}"
    benchmark(fn)
