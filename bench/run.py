"""Side-by-side CPU benchmark: convops (numba) against PyTorch (oneDNN), fp32.

    python bench/run.py [--threads 2] [--reps 7] [--algorithms] [--csv out.csv] [--only SUBSTR]
    python bench/run.py --device cuda [--dtype float16] [--csv out.csv]   (bench/cuda_bench.py: against cuDNN)

Both run in this process with the same thread count; runs are interleaved
(ours, theirs, ours, ...) and the median after warm-up is reported.  The
first call (Numba JIT or cache load) is timed separately.  GFLOP/s uses
2*N*K*(C/g)*prod(kernel)*prod(output) for every pass; depthwise layers also
report GB/s of compulsory traffic (read both operands, write the result).
``--algorithms`` also times every eligible numba algorithm, forced.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import statistics
import sys
import time

import numpy as np


def _setup_threads(threads: int):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)


def sgemm_peak(reps=5) -> float:
    """GFLOP/s of the SGEMM convops's im2col family uses (SciPy's BLAS, loaded
    the way convops loads it; 2048^3, all threads): the ceiling of every
    GEMM-based path here."""
    import convops.cpu.blas  # noqa: F401  (chooses SciPy's OpenBLAS kernels before it loads)
    import scipy.linalg.blas as blas
    a = np.asfortranarray(np.random.rand(2048, 2048).astype(np.float32))
    b = np.asfortranarray(np.random.rand(2048, 2048).astype(np.float32))
    blas.sgemm(1.0, a, b)
    best = min(_timed(lambda: blas.sgemm(1.0, a, b)) for _ in range(reps))
    return 2 * 2048 ** 3 / best / 1e9


def blas_kernels() -> str:
    """Which OpenBLAS kernels SciPy's BLAS runs (threadpoolctl)."""
    from threadpoolctl import ThreadpoolController
    for lib in ThreadpoolController().info():
        if "scipy.libs" in lib.get("filepath", "") or lib.get("prefix") == "libscipy_openblas":
            if "numpy" not in lib.get("filepath", ""):
                return f"{lib.get('internal_api')} {lib.get('version')} {lib.get('architecture')}"
    return "unknown"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({platform.machine()})"
    except OSError:
        pass
    return platform.machine()


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--algorithms", action="store_true", help="also time every eligible algorithm")
    parser.add_argument("--csv", default=None)
    parser.add_argument("--only", default=None, help="only layers whose name contains this")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: the CUDA kernels against cuDNN (bench/cuda_bench.py)")
    args, rest = parser.parse_known_args(argv)
    if args.device == "cuda":
        sys.path.insert(0, os.path.dirname(__file__))
        import cuda_bench
        return cuda_bench.main(rest + (["--csv", args.csv] if args.csv else []))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    _setup_threads(args.threads)

    import torch
    import torch.nn.functional as F

    import convops as co
    from convops import validate

    sys.path.insert(0, os.path.dirname(__file__))
    from layers import LAYERS, TARGETS

    torch.set_num_threads(args.threads)
    peak = sgemm_peak()
    rng = np.random.default_rng(0)
    rows = []
    kernels = blas_kernels()
    print(f"machine: {_cpu_name()}, {os.cpu_count()} cpus, threads {args.threads}; SGEMM peak {peak:.0f} GFLOP/s "
          f"({kernels}); torch {torch.__version__}; {datetime.date.today()}")
    header = (f"{'layer':38s} {'pass':5s} {'algorithm':16s} {'first(s)':>8s} {'ms':>8s} {'GF/s':>7s} "
              f"{'torch ms':>8s} {'torch GF/s':>10s} {'ratio':>6s} {'target':>6s} {'%peak':>6s} {'GB/s':>6s}")
    print(header)
    for name, passes, xs, ws, kw, transposed in LAYERS:
        if args.only and args.only not in name:
            continue
        nd = len(xs) - 2
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        if transposed:
            call = validate.conv_transpose_call(x, w, None, output_padding=0, output_size=None, padding_mode="zeros",
                                                **{"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **kw})
        else:
            call = validate.conv_call(x, w, None, padding_mode="zeros",
                                      **{"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **kw})
        base = call.problem
        for op in passes:
            p = base if transposed else base.with_op(op)  # a transposed call is a dgrad problem
            xt, wt = torch.from_numpy(x), torch.from_numpy(w)
            if transposed:  # conv_transpose call: only fwd benchmarked (it is a dgrad problem)
                ours = lambda alg="auto": co.conv_transpose(x, w, algorithm=alg, **kw)
                theirs = lambda: F.conv_transpose2d(xt, wt, **kw)
            elif op == "fwd":
                conv_t = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
                ours = lambda alg="auto": co.conv(x, w, algorithm=alg, **kw)
                theirs = lambda: conv_t(xt, wt, **kw)
            elif op == "dgrad":
                gy = rng.standard_normal(p.y_shape).astype(np.float32)
                gyt = torch.from_numpy(gy)
                grad_in = getattr(torch.nn.grad, f"conv{nd}d_input")
                ours = lambda alg="auto": co.conv_grad_input(gy, w, x.shape, algorithm=alg, **kw)
                theirs = lambda: grad_in(x.shape, wt, gyt, **kw)
            else:
                gy = rng.standard_normal(p.y_shape).astype(np.float32)
                gyt = torch.from_numpy(gy)
                grad_w = getattr(torch.nn.grad, f"conv{nd}d_weight")
                ours = lambda alg="auto": co.conv_grad_weight(x, gy, w.shape, algorithm=alg, **kw)
                theirs = lambda: grad_w(xt, w.shape, gyt, **kw)
            plan_alg = co.explain(*( (x, w) if op == "fwd" or transposed else ((gy, w) if op == "dgrad" else (x, gy))),
                                  op="conv_transpose" if transposed else
                                  {"fwd": "conv", "dgrad": "conv_grad_input", "wgrad": "conv_grad_weight"}[op],
                                  **({"input_shape": x.shape} if op == "dgrad" and not transposed else {}),
                                  **({"weight_shape": w.shape} if op == "wgrad" else {}), **kw).chosen.algorithm
            algs = ["auto"]
            if args.algorithms:
                algs += [i.algorithm for i in co.implementations(op=p.op, backend="numba") if not i.reasons(p)]
            theirs()
            for alg in algs:
                first = _timed(lambda: ours(alg))
                ours(alg)
                t_ours, t_theirs = [], []
                for _ in range(args.reps):
                    t_ours.append(_timed(lambda: ours(alg)))
                    t_theirs.append(_timed(theirs))
                mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
                gf, gft = p.flops / mo / 1e9, p.flops / mt / 1e9
                gbs = p.bytes / mo / 1e9 if p.is_depthwise else float("nan")
                label = plan_alg if alg == "auto" else alg
                target = TARGETS.get((name, op), float("nan"))
                row = dict(layer=name, op=op, algorithm=label, auto=alg == "auto", first_call_s=first, ms=mo * 1e3,
                           gflops=gf, torch_ms=mt * 1e3, torch_gflops=gft, ratio=mt / mo, target=target,
                           frac_peak=gf / peak, gbytes_s=gbs)
                rows.append(row)
                print(f"{name:38s} {op:5s} {label + ('*' if alg == 'auto' else ''):16s} {first:8.2f} {mo * 1e3:8.2f} "
                      f"{gf:7.1f} {mt * 1e3:8.2f} {gft:10.1f} {mt / mo:6.2f} {target:6.2f} {gf / peak:6.2f} "
                      f"{gbs:6.1f}", flush=True)
    print("* = algorithm='auto' (its choice shown); ratio = torch time / convops time")
    if args.csv:
        meta = dict(date=str(datetime.date.today()), machine=_cpu_name(), cpus=os.cpu_count(), threads=args.threads,
                    blas=kernels, sgemm_peak_gflops=round(peak, 1),
                    torch=torch.__version__, numpy=np.__version__, numba=__import__("numba").__version__,
                    convops=co.__version__)
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(meta) + list(rows[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({**meta, **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}})
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
