"""Host (Python) time of one CUDA convolution call, by stage: validation,
selection (memoized plans), and the chosen implementation's launches
(CuPy's allocation and launch costs included), against the whole call and
against PyTorch's call into cuDNN.  Needs a GPU; no device work is timed
(the stream is synchronized outside the timed loops).

    python bench/cuda_host_overhead.py [--dtype float16] [--reps 2000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import convops as co  # noqa: E402
from convops import dispatch, validate  # noqa: E402


def _per_call_us(fn, reps, sync):
    fn()
    sync()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, time.perf_counter() - t0)
        sync()
    return best / reps * 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--reps", type=int, default=2000)
    args = ap.parse_args(argv)
    import cupy as cp
    import torch
    sync = cp.cuda.Device().synchronize
    # a small layer: device time far below host time, so only the host is measured
    x = cp.random.standard_normal((1, 16, 8, 8)).astype(args.dtype)
    w = cp.random.standard_normal((16, 16, 3, 3)).astype(args.dtype)
    kw = dict(stride=1, padding=1, dilation=1, groups=1, padding_mode="zeros")
    call = validate.conv_call(x, w, None, **kw)
    chosen = dispatch.plan(call).chosen
    xt, wt = torch.as_tensor(x, device="cuda"), torch.as_tensor(w, device="cuda")
    rows = [
        ("convops.conv (whole call)", lambda: co.conv(x, w, padding=1)),
        ("  validate.conv_call", lambda: validate.conv_call(x, w, None, **kw)),
        ("  dispatch.plan (memoized)", lambda: dispatch.plan(call)),
        (f"  {chosen.name}.run", lambda: chosen.run(call.problem, x, w, None)),
        ("torch conv2d (cuDNN)", lambda: torch.nn.functional.conv2d(xt, wt, padding=1)),
    ]
    print(f"host time per call, {args.dtype} 1x16x8x8 * 16x16x3x3 ({chosen.name}):")
    for name, fn in rows:
        print(f"  {name:<40} {_per_call_us(fn, args.reps, sync):8.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
