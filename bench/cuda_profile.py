"""Where the CUDA backend's time goes, per benchmark layer (needs a GPU):
host time per call (CPU, Python dispatch included) against device time
(CUDA events) for convops and for cuDNN, both through
``cupyx.profiler.benchmark``; then a cProfile of the host side of one layer.
A call whose host time exceeds its device time is overhead-bound: the GPU
waits for Python.

    python bench/cuda_profile.py [--dtype float16] [--algorithm implicit_gemm] [--passes]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import convops as co  # noqa: E402
from layers import LAYERS  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--algorithm", default="auto")
    ap.add_argument("--passes", action="store_true", help="also dgrad and wgrad of layers that list them")
    ap.add_argument("--profile", default="resnet50-3x3-c64-56", help="layer whose host side is cProfiled")
    args = ap.parse_args(argv)
    if args.profile not in [layer[0] for layer in LAYERS if not layer[5]]:
        ap.error(f"--profile must name a non-transposed layer of bench/layers.py, got {args.profile!r}")
    import cupy as cp
    import torch
    from cupyx.profiler import benchmark
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    print(f"{'layer':<34} {'pass':<6} {'algorithm':<26} {'ours cpu':>9} {'ours gpu':>9} "
          f"{'cudnn cpu':>9} {'cudnn gpu':>9}   (ms per call)")
    for name, passes, xs, ws, kw, transposed in LAYERS:
        if transposed:
            continue
        xs = (args.batch,) + tuple(xs[1:])
        x = torch.randn(xs, device="cuda", dtype=getattr(torch, args.dtype))
        w = torch.randn(ws, device="cuda", dtype=x.dtype)
        nd = x.dim() - 2
        f = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}[nd]
        xc, wc = cp.asarray(x), cp.asarray(w)
        ours_kw = dict(kw, algorithm=args.algorithm)
        y = f(x, w, **kw)
        gy = torch.randn_like(y)
        gyc = cp.asarray(gy)
        grad_input = getattr(torch.nn.grad, f"conv{nd}d_input")
        grad_weight = getattr(torch.nn.grad, f"conv{nd}d_weight")
        cases = {"fwd": (lambda: co.conv(xc, wc, **ours_kw), lambda: f(x, w, **kw))}
        if args.passes and "dgrad" in passes:
            cases["dgrad"] = (lambda: co.conv_grad_input(gyc, wc, xs, **ours_kw), lambda: grad_input(xs, w, gy, **kw))
        if args.passes and "wgrad" in passes:
            cases["wgrad"] = (lambda: co.conv_grad_weight(xc, gyc, ws, **ours_kw),
                              lambda: grad_weight(x, ws, gy, **kw))
        for pas, (ours, theirs) in cases.items():
            try:
                plan = (co.explain(xc, wc, **ours_kw) if pas == "fwd" else None)
                a = benchmark(ours, n_repeat=30, n_warmup=3)
                b = benchmark(theirs, n_repeat=30, n_warmup=3)
            except Exception as e:  # noqa: BLE001  (a profile row, not a test)
                print(f"{name:<34} {pas:<6} failed: {type(e).__name__}: {e}")
                continue
            algo = plan.chosen.name if plan else args.algorithm
            print(f"{name:<34} {pas:<6} {algo:<26} {a.cpu_times.mean() * 1e3:9.3f} {a.gpu_times.mean() * 1e3:9.3f} "
                  f"{b.cpu_times.mean() * 1e3:9.3f} {b.gpu_times.mean() * 1e3:9.3f}")
        if name == args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(50):
                co.conv(xc, wc, **ours_kw)
            cp.cuda.Device().synchronize()
            prof.disable()
            profiled = pstats.Stats(prof)
    print(f"\ncProfile of 50 forward calls of {args.profile} (host side):")
    profiled.sort_stats("cumulative").print_stats(35)
    return 0


if __name__ == "__main__":
    sys.exit(main())
