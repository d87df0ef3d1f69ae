"""The CUDA benchmark: convops' CUDA kernels side by side with cuDNN (through
PyTorch, ``cudnn.benchmark = True``, TF32 off) on the CPU layer set at batch
32, in one process, timed with CUDA events after warm-up (first calls
reported apart).  Ratio = cuDNN time / convops time.  Needs a GPU, CuPy and
a CUDA build of torch; ci/gpu.sh runs it.

Measured on an H100 on 2026-11-22 (bench/README.md).  Rows that run implicit_gemm_tc
also give the time of its packing kernels alone (``pack_ms``).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import convops as co  # noqa: E402
from layers import LAYERS  # noqa: E402


def _time(cp, fn, reps):
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    fn()
    cp.cuda.Device().synchronize()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return float(np.median(times))


def _pack_time(cp, plan, xc, wc, reps):
    """What implicit_gemm_tc's packing (channels-last copies of x and w into
    the workspace) costs of its time: the two pack kernels alone."""
    from convops.cuda import common, implicit_gemm_tc as tc
    rt = common.runtime("cuda")
    q = common.kernel_problem(plan.problem)
    x5, w5 = xc.reshape(q.x_shape), wc.reshape(q.w_shape)
    return _time(cp, lambda: (tc._pack_activation(rt, x5, q.dtype, q.pad_lo, q.padded_size, q.padding_mode),
                              tc._pack_weight(rt, w5, q.dtype, flip=False)), reps)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--algorithm", default="auto",
                    help="a convops CUDA algorithm (auto: the dispatcher's choice, implicit_gemm_tc on sm_80+)")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    import cupy as cp
    import torch
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for name, passes, xs, ws, kw, transposed in LAYERS:
        if transposed or "fwd" not in passes:
            continue
        xs = (args.batch,) + tuple(xs[1:])
        x = torch.randn(xs, device="cuda", dtype=getattr(torch, args.dtype))
        w = torch.randn(ws, device="cuda", dtype=x.dtype)
        f = {3: torch.nn.functional.conv1d, 4: torch.nn.functional.conv2d, 5: torch.nn.functional.conv3d}[x.dim()]
        xc, wc = cp.asarray(x), cp.asarray(w)
        kw = dict(kw, algorithm=args.algorithm)
        t0 = time.perf_counter()
        co.conv(xc, wc, **kw)
        cp.cuda.Device().synchronize()
        first = time.perf_counter() - t0
        plan = co.explain(xc, wc, **kw)
        ours = _time(cp, lambda: co.conv(xc, wc, **kw), args.reps)
        torch_kw = {k: v for k, v in kw.items() if k != "algorithm"}
        theirs = _time(cp, lambda: f(x, w, **torch_kw), args.reps)
        pack = _pack_time(cp, plan, xc, wc, args.reps) if plan.chosen.algorithm == "implicit_gemm_tc" else 0.0
        flops = plan.problem.flops
        rows.append(dict(layer=name, algorithm=plan.chosen.name, convops_ms=ours * 1e3, cudnn_ms=theirs * 1e3,
                         ratio=theirs / ours, convops_tflops=flops / ours / 1e12, pack_ms=pack * 1e3,
                         first_call_s=first))
        r = rows[-1]
        print(f"{name:<36} {r['algorithm']:<27} {r['convops_ms']:8.3f} ms  cuDNN {r['cudnn_ms']:8.3f} ms  "
              f"ratio {r['ratio']:5.2f}  {r['convops_tflops']:6.2f} TFLOP/s  packing {r['pack_ms']:7.3f} ms  "
              f"first call {first:.2f} s")
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
