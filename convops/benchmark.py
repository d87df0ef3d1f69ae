"""The benchmark runner behind ``convops bench`` (and ``bench/run.py``).

convops and its peer run side by side in one process on the same data:
PyTorch on the CPU (oneDNN) with the same thread count, cuDNN through
PyTorch on a GPU (``cudnn.benchmark = True``, TF32 off).  Calls are
interleaved (ours, theirs, ours, ...) after a warm-up, and the median is
reported; the first call (Numba JIT or cache load, NVRTC) is timed apart.
GFLOP/s counts ``2*N*K*(C/groups)*prod(kernel)*prod(output)`` for every
pass; depthwise layers also report GB/s of compulsory traffic and its share
of a parallel copy's bandwidth measured in the same run.  ratio = peer
time / convops time (above 1: convops is faster).  Speed is never asserted in
tests; numbers are reported with the machine and the date.
"""

from __future__ import annotations

import csv
import datetime
import os
import platform
import statistics
import time

import numpy as np

# name, passes, x shape, weight shape, keywords, transposed (conv_transpose: weight (C_in, C_out/g, *k))
LAYERS = [
    ("resnet50-3x3-c64-56", ("fwd", "dgrad", "wgrad"), (8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), False),
    ("resnet50-3x3-c256-14", ("fwd",), (8, 256, 14, 14), (256, 256, 3, 3), dict(padding=1), False),
    ("resnet50-1x1-256to64-56", ("fwd",), (8, 256, 56, 56), (64, 256, 1, 1), {}, False),
    ("resnet50-stem-7x7-s2-224", ("fwd",), (8, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3), False),
    ("mobilenetv2-dw-3x3-c144-56", ("fwd", "dgrad", "wgrad"), (8, 144, 56, 56), (144, 1, 3, 3),
     dict(padding=1, groups=144), False),
    ("mobilenetv2-dw-3x3-s2-c96-112", ("fwd",), (8, 96, 112, 112), (96, 1, 3, 3),
     dict(stride=2, padding=1, groups=96), False),
    ("deeplab-dilated-3x3-d2-c64-56", ("fwd",), (8, 64, 56, 56), (64, 64, 3, 3), dict(padding=2, dilation=2), False),
    ("dcgan-transposed-4x4-s2-128to64-16", ("fwd",), (8, 128, 16, 16), (128, 64, 4, 4),
     dict(stride=2, padding=1), True),
    ("wavenet-conv1d-k3-d4-c64-4096", ("fwd",), (8, 64, 4096), (64, 64, 3), dict(padding=4, dilation=4), False),
    ("conv3d-3x3x3-c32-8x28-b2", ("fwd",), (2, 32, 8, 28, 28), (32, 32, 3, 3, 3), dict(padding=1), False),
]

# The CPU goals: ratio to PyTorch per (layer, pass).
TARGETS = {
    ("resnet50-3x3-c64-56", "fwd"): 0.5, ("resnet50-3x3-c256-14", "fwd"): 0.5,
    ("resnet50-1x1-256to64-56", "fwd"): 0.8, ("resnet50-stem-7x7-s2-224", "fwd"): 0.8,
    ("mobilenetv2-dw-3x3-c144-56", "fwd"): 1.5, ("mobilenetv2-dw-3x3-s2-c96-112", "fwd"): 1.5,
    ("mobilenetv2-dw-3x3-c144-56", "dgrad"): 1.0, ("mobilenetv2-dw-3x3-c144-56", "wgrad"): 1.0,
    ("deeplab-dilated-3x3-d2-c64-56", "fwd"): 0.5, ("dcgan-transposed-4x4-s2-128to64-16", "fwd"): 1.0,
    ("wavenet-conv1d-k3-d4-c64-4096", "fwd"): 0.5, ("conv3d-3x3x3-c32-8x28-b2", "fwd"): 0.5,
    ("resnet50-3x3-c64-56", "dgrad"): 0.5, ("resnet50-3x3-c64-56", "wgrad"): 0.5,
}

# --quick: a quarter of the batch (at least 1) and fewer repetitions.
QUICK_BATCH_DIVISOR, QUICK_REPS, FULL_REPS = 4, 3, 7
CUDA_BATCH, CUDA_QUICK_BATCH, CUDA_REPS, CUDA_QUICK_REPS = 32, 8, 20, 5


class PeerMissing(Exception):
    """The peer (PyTorch) is not installed: what to install."""


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() + f" ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_kernels() -> str:
    """Which OpenBLAS kernels SciPy's BLAS (the one convops calls) runs."""
    from threadpoolctl import ThreadpoolController
    for lib in ThreadpoolController().info():
        if "scipy" in lib.get("filepath", "") and "numpy" not in lib.get("filepath", ""):
            return f"{lib.get('internal_api')} {lib.get('version')} {lib.get('architecture')}"
    return "unknown"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def sgemm_peak(size: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of SciPy's SGEMM (size^3, all threads), loaded as convops
    loads it: the ceiling of every GEMM-based path on the CPU."""
    import convops.cpu.blas  # noqa: F401  (chooses SciPy's OpenBLAS kernels before it loads)
    import scipy.linalg.blas as blas
    a = np.asfortranarray(np.random.rand(size, size).astype(np.float32))
    b = np.asfortranarray(np.random.rand(size, size).astype(np.float32))
    blas.sgemm(1.0, a, b)
    return 2 * size ** 3 / min(_timed(lambda: blas.sgemm(1.0, a, b)) for _ in range(reps)) / 1e9


def copy_bandwidth(megabytes: int = 256, reps: int = 5) -> float:
    """GB/s of a parallel copy on the Numba threads (bytes read + bytes
    written, as the layers' compulsory traffic counts them): the ceiling of
    a memory-bound (depthwise) layer."""
    from numba import njit, prange

    @njit(parallel=True)
    def copy(src, dst, blocks):
        step = (src.size + blocks - 1) // blocks
        for b in prange(blocks):
            lo = b * step
            hi = min(src.size, lo + step)
            dst[lo:hi] = src[lo:hi]

    src = np.ones(megabytes * 2**20 // 4, np.float32)
    dst = np.empty_like(src)
    copy(src, dst, 64)
    return 2 * src.nbytes / min(_timed(lambda: copy(src, dst, 64)) for _ in range(reps)) / 1e9


def _torch():
    try:
        import torch
    except ImportError:
        raise PeerMissing("the benchmark compares with PyTorch: pip install 'convops[bench]' "
                          "(or pip install torch)") from None
    return torch


def _selected(only):
    """The layers whose name contains one of the comma-separated ``only`` parts."""
    if not only:
        return LAYERS
    parts = [p for p in only.split(",") if p]
    chosen = [layer for layer in LAYERS if any(p in layer[0] for p in parts)]
    if not chosen:
        raise ValueError(f"--layers {only!r} matches no layer; layers: {', '.join(layer[0] for layer in LAYERS)}")
    return chosen


def _cpu_calls(co, F, torch, x, w, kw, op, transposed, nd, rng, p):
    """(ours(algorithm), theirs(), explain arguments) of one pass."""
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    if transposed:  # a conv_transpose call: its problem is a dgrad
        return (lambda alg="auto": co.conv_transpose(x, w, algorithm=alg, **kw),
                lambda: getattr(F, f"conv_transpose{nd}d")(xt, wt, **kw), ((x, w), dict(op="conv_transpose", **kw)))
    if op == "fwd":
        return (lambda alg="auto": co.conv(x, w, algorithm=alg, **kw),
                lambda: getattr(F, f"conv{nd}d")(xt, wt, **kw), ((x, w), dict(op="conv", **kw)))
    gy = rng.standard_normal(p.y_shape).astype(np.float32)
    gyt = torch.from_numpy(gy)
    if op == "dgrad":
        grad_in = getattr(torch.nn.grad, f"conv{nd}d_input")
        return (lambda alg="auto": co.conv_grad_input(gy, w, x.shape, algorithm=alg, **kw),
                lambda: grad_in(x.shape, wt, gyt, **kw),
                ((gy, w), dict(op="conv_grad_input", input_shape=x.shape, **kw)))
    grad_w = getattr(torch.nn.grad, f"conv{nd}d_weight")
    return (lambda alg="auto": co.conv_grad_weight(x, gy, w.shape, algorithm=alg, **kw),
            lambda: grad_w(xt, w.shape, gyt, **kw), ((x, gy), dict(op="conv_grad_weight", weight_shape=w.shape, **kw)))


def run_cpu(quick=False, threads=None, reps=None, algorithms=False, only=None, progress=True):
    """(meta, rows): convops (numba) against PyTorch (oneDNN), float32."""
    import numba
    from threadpoolctl import threadpool_limits

    from .progress import bar as progress_bar

    import convops as co
    from convops import validate
    torch = _torch()
    F = torch.nn.functional
    threads = threads or os.cpu_count()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(threads)
    reps = reps or (QUICK_REPS if quick else FULL_REPS)
    layers = _selected(only)
    total = sum(len(layer[1]) for layer in layers)
    rng = np.random.default_rng(0)
    rows = []
    with threadpool_limits(limits=threads, user_api="blas"):
        peak = sgemm_peak(1024 if quick else 2048, 3 if quick else 5)
        bandwidth = copy_bandwidth(64 if quick else 256, 3 if quick else 5)
        with progress_bar(total, "pass", progress) as bar:
            for name, passes, xs, ws, kw, transposed in layers:
                if quick:  # a quarter of the batch, but never below 2 (a batch of one is another problem)
                    xs = (max(min(2, xs[0]), xs[0] // QUICK_BATCH_DIVISOR),) + tuple(xs[1:])
                nd = len(xs) - 2
                x = rng.standard_normal(xs).astype(np.float32)
                w = rng.standard_normal(ws).astype(np.float32)
                full_kw = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **kw}
                if transposed:
                    base = validate.conv_transpose_call(x, w, None, output_padding=0, output_size=None,
                                                        padding_mode="zeros", **full_kw).problem
                else:
                    base = validate.conv_call(x, w, None, padding_mode="zeros", **full_kw).problem
                for op in passes:
                    bar.set_description_str(f"{name} {op}"[:40].ljust(40))
                    p = base if transposed else base.with_op(op)
                    ours, theirs, (ex_args, ex_kw) = _cpu_calls(co, F, torch, x, w, kw, op, transposed, nd, rng, p)
                    chosen = co.explain(*ex_args, **ex_kw).chosen.algorithm
                    algs = ["auto"] + ([i.algorithm for i in co.implementations(op=p.op, backend="numba")
                                        if not i.reasons(p)] if algorithms else [])
                    theirs()
                    for alg in algs:
                        first = _timed(lambda: ours(alg))
                        ours(alg)
                        t_ours, t_theirs = [], []
                        for _ in range(reps):
                            t_ours.append(_timed(lambda: ours(alg)))
                            t_theirs.append(_timed(theirs))
                        mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
                        gf = p.flops / mo / 1e9
                        rows.append(dict(layer=name, op=op, algorithm=chosen if alg == "auto" else alg,
                                         auto=alg == "auto", batch=xs[0], first_call_s=first, ms=mo * 1e3,
                                         gflops=gf, peer_ms=mt * 1e3, peer_gflops=p.flops / mt / 1e9,
                                         ratio=mt / mo, target=TARGETS.get((name, op), float("nan")),
                                         frac_peak=gf / peak,
                                         gbytes_s=p.bytes / mo / 1e9 if p.is_depthwise else float("nan"),
                                         frac_copy=p.bytes / mo / 1e9 / bandwidth if p.is_depthwise
                                         else float("nan")))
                    bar.update()
    meta = dict(date=str(datetime.date.today()), device="cpu", machine=cpu_name(), cpus=os.cpu_count(),
                threads=threads, blas=blas_kernels(), sgemm_peak_gflops=round(peak, 1),
                copy_gbytes_s=round(bandwidth, 1), peer="torch (oneDNN)",
                torch=torch.__version__, numpy=np.__version__, numba=numba.__version__, convops=co.__version__,
                quick=quick)
    return meta, rows


def run_cuda(quick=False, batch=None, reps=None, dtype="float32", algorithm="auto", only=None, progress=True):
    """(meta, rows): convops's CUDA kernels against cuDNN (through PyTorch),
    forward pass of the non-transposed layers, timed with CUDA events."""
    import convops as co

    from .progress import bar as progress_bar
    torch = _torch()
    try:
        import cupy as cp
    except ImportError:
        raise PeerMissing("--device cuda needs CuPy: pip install 'convops[cuda]'") from None
    if not torch.cuda.is_available():
        raise PeerMissing("--device cuda needs a CUDA GPU and a CUDA build of torch")
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    batch = batch or (CUDA_QUICK_BATCH if quick else CUDA_BATCH)
    reps = reps or (CUDA_QUICK_REPS if quick else CUDA_REPS)

    def timed(fn):
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

    layers = [layer for layer in _selected(only) if not layer[5] and "fwd" in layer[1]]
    rows = []
    with progress_bar(len(layers), "layer", progress) as bar:
        for name, _, xs, ws, kw, _ in layers:
            bar.set_description_str(name[:40].ljust(40))
            x = torch.randn((batch,) + tuple(xs[1:]), device="cuda", dtype=getattr(torch, dtype))
            w = torch.randn(ws, device="cuda", dtype=x.dtype)
            conv_t = getattr(torch.nn.functional, f"conv{x.dim() - 2}d")
            xc, wc = cp.asarray(x), cp.asarray(w)
            ours_kw = dict(kw, algorithm=algorithm)
            t0 = time.perf_counter()
            co.conv(xc, wc, **ours_kw)
            cp.cuda.Device().synchronize()
            first = time.perf_counter() - t0
            plan = co.explain(xc, wc, **ours_kw)
            ours = timed(lambda: co.conv(xc, wc, **ours_kw))
            theirs = timed(lambda: conv_t(x, w, **kw))
            pack = 0.0
            if plan.chosen.algorithm == "implicit_gemm_tc":  # its packing kernels alone (channels-last copies)
                from .cuda import common, implicit_gemm_tc as tc
                rt, q = common.runtime("cuda"), common.kernel_problem(plan.problem)
                x5, w5 = xc.reshape(q.x_shape), wc.reshape(q.w_shape)
                pack = timed(lambda: (tc._pack_activation(rt, x5, q.dtype, q.pad_lo, q.padded_size, q.padding_mode),
                                      tc._pack_weight(rt, w5, q.dtype, flip=False)))
            flops = plan.problem.flops
            rows.append(dict(layer=name, op="fwd", algorithm=plan.chosen.algorithm, auto=algorithm == "auto",
                             batch=batch, first_call_s=first, ms=ours * 1e3, gflops=flops / ours / 1e9,
                             peer_ms=theirs * 1e3, peer_gflops=flops / theirs / 1e9, ratio=theirs / ours,
                             target=float("nan"), frac_peak=float("nan"),
                             gbytes_s=plan.problem.bytes / ours / 1e9 if plan.problem.is_depthwise else float("nan"),
                             pack_ms=pack * 1e3))
            bar.update()
    meta = dict(date=str(datetime.date.today()), device="cuda", machine=cp.cuda.runtime.getDeviceProperties(
        cp.cuda.Device().id)["name"].decode(), dtype=dtype, peer="cuDNN (torch, benchmark=True, TF32 off)",
        torch=torch.__version__, cudnn=torch.backends.cudnn.version(), cupy=cp.__version__, convops=co.__version__,
        quick=quick)
    return meta, rows


def table(meta, rows) -> str:
    """The terminal table of one run."""
    peer = "torch" if meta["device"] == "cpu" else "cuDNN"
    head = ["layer", "pass", "batch", "algorithm", "first s", "ms", "GFLOP/s", f"{peer} ms", "ratio", "target",
            "%peak", "GB/s", "%copy"]
    lines = [f"{meta['device']}: {meta['machine']}; " + ", ".join(
        f"{k} {v}" for k, v in meta.items() if k not in ("device", "machine", "date")) + f"; {meta['date']}"]
    body = []
    for r in rows:
        body.append([r["layer"], r["op"], str(r["batch"]), r["algorithm"] + ("*" if r["auto"] else ""),
                     f"{r['first_call_s']:.2f}",
                     f"{r['ms']:.3f}", f"{r['gflops']:.1f}", f"{r['peer_ms']:.3f}", f"{r['ratio']:.2f}",
                     "-" if np.isnan(r["target"]) else f"{r['target']:.2f}",
                     "-" if np.isnan(r["frac_peak"]) else f"{100 * r['frac_peak']:.0f}",
                     "-" if np.isnan(r.get("gbytes_s", np.nan)) else f"{r['gbytes_s']:.1f}",
                     "-" if np.isnan(r.get("frac_copy", np.nan)) else f"{100 * r['frac_copy']:.0f}"])
    widths = [max(len(str(row[i])) for row in [head] + body) for i in range(len(head))]
    for row in [head] + body:
        lines.append("  ".join(str(v).rjust(w) if i >= 4 or i == 2 else str(v).ljust(w)
                               for i, (v, w) in enumerate(zip(row, widths))))
    lines.append(f"* = algorithm='auto' (its choice shown); first s = the first call (compilation or cache load); "
                 f"ratio = {peer} time / convops time (above 1: convops is faster); target = the goal for that "
                 f"ratio; %peak = share of the measured SGEMM peak; GB/s = compulsory traffic (depthwise); "
                 f"%copy = its share of the measured copy bandwidth")
    return "\n".join(lines)


def write_csv(path, meta, rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(meta) + list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**meta, **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}})


def plot(path, meta, rows) -> None:
    """A PNG of the ratios per layer and pass (targets marked)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown = [r for r in rows if r["auto"]]
    labels = [f"{r['layer']} {r['op']}" for r in shown]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(shown) + 1.6))
    y = np.arange(len(shown))
    ax.barh(y, [r["ratio"] for r in shown], color=["#2a7" if r["ratio"] >= 1 else "#c64" for r in shown])
    targets = [(i, r["target"]) for i, r in enumerate(shown) if not np.isnan(r["target"])]
    if targets:
        ax.scatter([t for _, t in targets], [i for i, _ in targets], marker="|", s=300, color="k", label="target")
        ax.legend(loc="best")
    ax.axvline(1.0, color="grey", lw=1, ls="--")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    peer = "PyTorch (oneDNN)" if meta["device"] == "cpu" else "cuDNN"
    ax.set_xlabel(f"speed relative to {peer} (peer time / convops time)")
    ax.set_title(f"convops {meta['convops']} vs {peer}: {meta['machine']}, {meta['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
