"""The ``convops`` command line (also ``python -m convops``).

    convops info                 what this machine runs, and why not the rest
    convops check [--quick]      every implementation against the NumPy reference
    convops shape --input I --kernel K [...]    the arithmetic (and picture) of one convolution
    convops explain --input N,C,H,W --weight K,C,R,S [...]   what runs, and why not the others
    convops bench [--quick] [--device cpu|cuda] [--csv F] [--plot F.png]   convops against PyTorch/cuDNN

Bad arguments get one line naming the option and the value, and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import zlib

import numpy as np

from . import __version__, arithmetic, pictures, problems, reference, registry, tolerance, validate

COMMANDS = {
    "info": "what this machine can run: backends (and why one cannot), CPU, BLAS, threads, caches",
    "check": "check every registered implementation against the NumPy reference, as a table (exit 1 on a failure)",
    "shape": "output size, padding, transposed equivalent, receptive field and a picture of one convolution",
    "explain": "which implementation runs a convolution of the given shapes, and why not the others",
    "bench": "time convops against PyTorch (oneDNN; cuDNN with --device cuda) on common layers: table, CSV, PNG",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``convops shape: error: argument --stride: ...``,
    and no silent abbreviations (``--strid`` is an error, not ``--stride``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class _UsageError(Exception):
    """A bad combination of valid-looking options (one line, exit status 2)."""


def _ints(minimum: int):
    """``3`` or ``3,2`` (one value per spatial dim), each >= minimum."""
    def parse(text: str) -> tuple:
        try:
            values = tuple(int(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int or comma-separated ints, got {text!r}") from None
        if any(v < minimum for v in values):
            raise argparse.ArgumentTypeError(f"expected values >= {minimum}, got {text!r}")
        return values
    return parse


def _padding(text: str):
    """``1``, ``1,2`` (per dim), ``0:1,2`` (``lo:hi`` per dim) or valid/same/full."""
    if text in ("valid", "same", "full"):
        return text
    try:
        dims = []
        for part in text.split(","):
            lo, sep, hi = part.partition(":")
            dims.append((int(lo), int(hi if sep else lo)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int, ints per dim, lo:hi per dim, valid, same or full, "
                                         f"got {text!r}") from None
    if any(p < 0 for pair in dims for p in pair):
        raise argparse.ArgumentTypeError(f"expected padding >= 0, got {text!r}")
    return tuple(dims)


def _per_dim(name: str, values, nd: int) -> tuple:
    if len(values) == 1:
        return values * nd
    if len(values) != nd:
        raise _UsageError(f"{name} needs 1 or {nd} values (one per spatial dim), got {','.join(map(str, values))}")
    return tuple(values)


def _writable(option: str, path) -> None:
    """Before any work: the file's directory exists (a long run must not end in a traceback)."""
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise _UsageError(f"{option}: the directory {folder!r} does not exist, got {option} {path}")


class _written:
    """Writing an output file: an OS error is one line, not a traceback."""

    def __init__(self, option: str, path: str):
        self.option, self.path = option, path

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if isinstance(error, OSError):
            raise _UsageError(f"{self.option}: cannot write {self.path}: {error.strerror or error}") from None
        return False


# --- info ---------------------------------------------------------------------

def info(args) -> int:
    import numba
    print(f"convops {__version__}  (Python {platform.python_version()}, NumPy {np.__version__}, "
          f"Numba {numba.__version__})")
    print("backends:")
    for name in registry.BACKENDS:
        why = registry.unavailable_reason(name)
        how = "chosen only when asked for" if not registry.BACKENDS[name].auto else "automatic"
        print(f"  {name:<9} {'runs here (' + how + ')' if why is None else 'not here: ' + why}")
    try:
        from llvmlite import binding
        features = binding.get_host_cpu_features()
        simd = [f for f in ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512vnni", "amx-tile", "neon", "sve")
                if features.get(f)]
        print(f"CPU: {binding.get_host_cpu_name()} ({os.cpu_count()} logical cores), SIMD: {' '.join(simd) or '-'}")
    except Exception as e:  # noqa: BLE001 - informational
        print(f"CPU: {platform.machine()} ({os.cpu_count()} logical cores); features unknown: {e}")
    print(f"Numba: {numba.config.NUMBA_NUM_THREADS} threads, threading layer "
          f"{numba.config.THREADING_LAYER!r} requested")
    from .cpu import blas  # noqa: F401 - loads the BLAS convops uses (and its kernel choice)
    from threadpoolctl import threadpool_info
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            print(f"BLAS: {pool.get('internal_api')} {pool.get('version')}, kernels {pool.get('architecture')}, "
                  f"{pool.get('num_threads')} threads ({os.path.basename(pool.get('filepath', ''))})")
    from .sim import module as sim_module
    numba_cache = numba.config.CACHE_DIR or "beside the package's sources (__pycache__)"
    print(f"caches: Numba {numba_cache}; simulator {sim_module.cache_dir()}")
    return 0


# --- check --------------------------------------------------------------------

def _operands(problem, rng):
    a_shape, b_shape = problem.operand_shapes
    a = rng.standard_normal(a_shape).astype(problem.dtype)
    b = rng.standard_normal(b_shape).astype(problem.dtype)
    return a, b


def _adjoint_error(problem, rng) -> float:
    """For the reference itself: <fwd(x, w), y> against <x, dgrad(y, w)> and
    <w, wgrad(x, y)>, in float64."""
    p = problem.with_op("fwd").with_dtype("float64")
    x, w = rng.standard_normal(p.x_shape), rng.standard_normal(p.w_shape)
    y = rng.standard_normal(p.y_shape)
    lhs = float(np.vdot(reference.run(p, x, w), y))
    rx = float(np.vdot(x, reference.run(p.with_op("dgrad"), y, w)))
    rw = float(np.vdot(w, reference.run(p.with_op("wgrad"), x, y)))
    scale = max(abs(lhs), 1e-300)
    return max(abs(lhs - rx), abs(lhs - rw)) / scale


_LISTS = {"tiny": problems.TINY, "rigorous": problems.RIGOROUS, "networks": list(problems.NETWORKS.values())}


def _check_one(impl, plist) -> tuple:
    """One implementation over a problem list: its table row."""
    rng = np.random.default_rng(zlib.crc32(f"{impl.op} {impl.name}".encode()))  # the same data in any process
    ran, skipped, worst, ok, seconds = 0, 0, 0.0, True, 0.0
    for base in plist:
        p = base.with_op(impl.op)
        if impl.reasons(p) or p.is_empty:
            skipped += 1
            continue
        t0 = time.perf_counter()
        if impl.backend == "numpy":  # the oracle is checked by its identities
            err, tol = _adjoint_error(p, rng), tolerance.TOLERANCE["float64"] * 100
        else:
            a, b = _operands(p, rng)
            err = tolerance.relative_error(impl.run(p, a, b, None), reference.run(p, a, b))
            tol = impl.tolerance(p)
        seconds += time.perf_counter() - t0
        ran += 1
        worst = max(worst, err / tol)
        ok &= err <= tol
    return (impl.op, impl.name, ran, skipped, f"{worst:.2e}", "ok" if ok else "FAIL", f"{seconds:.2f}")


def _check_group(keys, list_names) -> list:
    """A worker's share of ``check``: the implementations named by
    ``(op, backend, algorithm)`` keys (one algorithm's passes, which share
    their compiled kernels)."""
    plist = [p for name in list_names for p in _LISTS[name]]
    impls = {(i.op, i.backend, i.algorithm): i for i in registry.implementations()}
    return [_check_one(impls[key], plist) for key in keys]


def check(args) -> int:
    from .progress import bar as progress_bar
    names = [args.list] if args.list else (["tiny"] if args.quick else ["tiny", "rigorous"])
    plist = [p for name in names for p in _LISTS[name]]
    if args.backend is not None and args.backend not in registry.BACKENDS:
        raise _UsageError(f"--backend must be one of {', '.join(registry.BACKENDS)}, got {args.backend!r}")
    impls = [i for i in registry.implementations(backend=args.backend)
             if i.backend in registry.available_backends()]
    if not impls:
        raise _UsageError(f"backend {args.backend!r} does not run here: {registry.unavailable_reason(args.backend)}")
    jobs = min(args.jobs or os.cpu_count() or 1, len(impls))
    print(f"convops check: {len(impls)} implementations x {len(plist)} problems ({' + '.join(names)}), "
          f"backends: {', '.join(sorted({i.backend for i in impls}))}; {jobs} process{'es' if jobs > 1 else ''}",
          flush=True)
    # One group per algorithm: its passes share compiled kernels, and the first run compiles them, so
    # the groups run in parallel processes (compilation is most of a first run, and it is serial).
    groups: dict = {}
    for i in impls:
        groups.setdefault((i.backend, i.algorithm), []).append((i.op, i.backend, i.algorithm))
    # Longest first: CPU kernels (Numba compiles slowest), then the simulator's, then the algorithms
    # that hand sub-problems to the others (their kernels are compiled by then), the reference last.
    composite = {(i.backend, i.algorithm) for i in impls if i.subproblems is not registry.Implementation.subproblems}
    order = sorted(groups, key=lambda g: (g[0] == "numpy", g in composite, g[0] != "numba"))
    groups = {g: groups[g] for g in order}
    found = {}
    with progress_bar(len(impls), "implementation", not args.no_progress) as bar:
        if jobs == 1:
            for keys in groups.values():
                for row in _check_group(keys, names):
                    found[row[:2]] = row
                    bar.update()
        else:
            import concurrent.futures
            import multiprocessing
            with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(_check_group, keys, names) for keys in groups.values()]
                for future in concurrent.futures.as_completed(futures):
                    for row in future.result():
                        found[row[:2]] = row
                        bar.update()
    rows = [found[(i.op, i.name)] for i in impls]
    failed = sum(row[5] != "ok" for row in rows)
    head = ("op", "implementation", "ran", "skipped", "err/tol", "status", "seconds")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    print("reference rows check <fwd(x,w),y> == <x,dgrad(y,w)> == <w,wgrad(x,y)> in float64; "
          "others compare with the reference (err/tol <= 1 passes); seconds include compilation "
          "on the first run (kernels are cached on disk afterwards)")
    print("FAILED" if failed else "all implementations agree with the reference")
    return 1 if failed else 0


# --- shape ----------------------------------------------------------------------

def shape(args) -> int:
    if args.draw and not args.draw.lower().endswith((".png", ".gif")):
        raise _UsageError(f"--draw must name a .png or .gif file, got {args.draw!r}")
    _writable("--draw", args.draw)
    # The input's values say how many spatial dims there are; with one input value, the others may.
    lengths = (len(args.input), len(args.kernel), len(args.stride), len(args.dilation), len(args.output_padding),
               1 if isinstance(args.padding, str) else len(args.padding))
    nd = lengths[0] if lengths[0] > 1 else max(lengths)
    if nd > 3:
        raise _UsageError(f"convolutions have 1 to 3 spatial dims, got {nd} values (--input takes the spatial "
                          f"sizes only, not N and C)")
    i, k = _per_dim("--input", args.input, nd), _per_dim("--kernel", args.kernel, nd)
    s, d = _per_dim("--stride", args.stride, nd), _per_dim("--dilation", args.dilation, nd)
    a = _per_dim("--output-padding", args.output_padding, nd)
    if any(a) and not args.transposed:
        raise _UsageError("--output-padding applies to --transposed only")
    if isinstance(args.padding, str):
        if args.transposed and args.padding == "same":
            pads = tuple(arithmetic.resolve_padding("same", ii * ss, kk, ss, dd) for ii, kk, ss, dd in zip(i, k, s, d))
        elif args.transposed:
            pads = tuple(arithmetic.resolve_padding(args.padding, 0, kk, ss, dd) for kk, ss, dd in zip(k, s, d))
        else:
            pads = tuple(arithmetic.resolve_padding(args.padding, ii, kk, ss, dd) for ii, kk, ss, dd in zip(i, k, s, d))
    else:
        pads = _per_dim("--padding", args.padding, nd)
    kind = "transposed convolution" if args.transposed else "convolution"
    lines, outs = [f"{kind}: input {i}, kernel {k}, stride {s}, padding {pads}, dilation {d}"
                   + (f", output_padding {a}" if args.transposed else "")], []
    for dim in range(nd):  # everything is computed (and checked) before anything is printed
        if args.transposed:
            o = arithmetic.conv_transpose_output_size(i[dim], k[dim], s[dim], pads[dim], d[dim], a[dim])
            low, high = arithmetic.conv_transpose_output_range(i[dim], k[dim], s[dim], pads[dim], d[dim])
            eq = arithmetic.transpose_equivalent(i[dim], k[dim], s[dim], pads[dim], d[dim], a[dim])
            lines.append(f"  dim {dim}: output {o} (valid output sizes {low}..{high}); equivalent direct convolution: "
                  f"{eq.input_size} inputs ({s[dim] - 1} zeros inserted between neighbors), padding {eq.padding}"
                  + (" (negative: cropped)" if min(eq.padding) < 0 else "")
                  + f", kernel {k[dim]}, stride 1, dilation {d[dim]}")
        else:
            o = arithmetic.conv_output_size(i[dim], k[dim], s[dim], pads[dim], d[dim])
            rf = arithmetic.receptive_field([(k[dim], s[dim], pads[dim][0], d[dim])])
            lines.append(f"  dim {dim}: output {o}; each output sees {rf.size} inputs (dilated kernel "
                  f"{arithmetic.effective_kernel_size(k[dim], d[dim])}); outputs {rf.jump} input(s) apart")
        outs.append(o)
    print("\n".join(lines))
    c_in, c_out = args.channels
    params = arithmetic.conv_params(c_in, c_out, k, 1, bias=True)
    flops = arithmetic.conv_flops(1, c_in, c_out, k, outs if not args.transposed else i)
    print(f"output size {tuple(outs)}; with {c_in} input and {c_out} output channels: {params:,} parameters "
          f"(with bias), {flops:,} FLOPs per image per pass")
    for dim in range(nd):
        if nd > 1:
            print(f"dim {dim}:")
        for line in pictures.text(pictures.layout(i[dim], k[dim], s[dim], pads[dim], d[dim], args.transposed, a[dim])):
            print("  " + line)
    if args.draw:
        with _written("--draw", args.draw):
            pictures.draw(args.draw, [pictures.layout(*v, args.transposed, av)
                                      for v, av in zip(zip(i, k, s, pads, d), a)])
        print(f"wrote {args.draw}")
    return 0


# --- explain --------------------------------------------------------------------

def explain(args) -> int:
    from . import api
    x = validate.shape_only(args.input, args.dtype)  # shapes only: nothing is allocated or run
    w = validate.shape_only(args.weight, args.dtype)
    nd = len(args.weight) - 2
    if nd < 1:
        raise _UsageError(f"--weight needs 3 to 5 values (K, C/groups, *kernel), got {','.join(map(str, args.weight))}")
    kw = dict(stride=_per_dim("--stride", args.stride, nd), dilation=_per_dim("--dilation", args.dilation, nd),
              groups=args.groups, padding_mode=args.padding_mode, backend=args.backend, algorithm=args.algorithm)
    kw["padding"] = args.padding if isinstance(args.padding, str) else _per_dim("--padding", args.padding, nd)
    if any(args.output_padding) and not args.transposed:
        raise _UsageError("--output-padding applies to --transposed only")
    if args.transposed:
        print(api.explain(x, w, "conv_transpose", output_padding=_per_dim("--output-padding", args.output_padding,
                                                                        nd), **kw))
    else:
        print(api.explain(x, w, "conv", **kw))
    return 0


# --- bench ----------------------------------------------------------------------

def bench(args) -> int:
    from . import benchmark
    if args.plot and not args.plot.lower().endswith(".png"):
        raise _UsageError(f"--plot must name a .png file, got {args.plot!r}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise _UsageError("--plot needs matplotlib: pip install matplotlib") from None
    _writable("--csv", args.csv)
    _writable("--plot", args.plot)
    try:
        if args.device == "cpu":
            if args.dtype != "float32" or args.algorithm != "auto" or args.batch:
                raise _UsageError("--dtype, --algorithm and --batch apply to --device cuda (the CPU run is "
                                  "float32, every algorithm with --algorithms)")
            meta, rows = benchmark.run_cpu(args.quick, args.threads, args.reps, args.algorithms, args.layers,
                                           not args.no_progress)
        else:
            meta, rows = benchmark.run_cuda(args.quick, args.batch, args.reps, args.dtype, args.algorithm,
                                            args.layers, not args.no_progress)
    except benchmark.PeerMissing as e:
        raise _UsageError(str(e)) from None
    print(benchmark.table(meta, rows))
    if args.csv:
        with _written("--csv", args.csv):
            benchmark.write_csv(args.csv, meta, rows)
        print(f"wrote {args.csv}")
    if args.plot:
        with _written("--plot", args.plot):
            benchmark.plot(args.plot, meta, rows)
        print(f"wrote {args.plot}")
    return 0


# --- the parser -----------------------------------------------------------------

def _conv_options(p, per_dim_help=" (one value, or one per spatial dim: 2,1)"):
    p.add_argument("--stride", type=_ints(1), default=(1,), help="stride" + per_dim_help)
    p.add_argument("--padding", type=_padding, default=((0, 0),),
                   help="int, ints per dim, lo:hi per dim (0:1,1), valid, same or full")
    p.add_argument("--dilation", type=_ints(1), default=(1,), help="dilation" + per_dim_help)
    p.add_argument("--transposed", action="store_true", help="a transposed convolution")
    p.add_argument("--output-padding", type=_ints(0), default=(0,), help="transposed only" + per_dim_help)


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="convops", description="Convolution kernels for Python: check them, benchmark them "
                  "and see what a convolution does.", epilog="`convops <command> --help` describes each command's options.")
    top.add_argument("--version", action="version", version=f"convops {__version__}")
    sub = top.add_subparsers(dest="command", metavar="command", parser_class=_Parser)

    sub.add_parser("info", help=COMMANDS["info"], description=COMMANDS["info"])

    p = sub.add_parser("check", help=COMMANDS["check"], description=COMMANDS["check"])
    p.add_argument("--quick", action="store_true", help="the tiny problem list only (edge cases)")
    p.add_argument("--list", choices=sorted(_LISTS), help="one named problem list (default: tiny and rigorous)")
    p.add_argument("--backend", help=f"only this backend ({', '.join(registry.BACKENDS)})")
    p.add_argument("--jobs", type=_ints(1), help="processes (default: one per core; 1: this process only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("shape", help=COMMANDS["shape"], description=COMMANDS["shape"])
    p.add_argument("--input", type=_ints(0), required=True, help="input size (one value, or one per dim: 28,28)")
    p.add_argument("--kernel", type=_ints(1), required=True, help="kernel size (one value, or one per dim)")
    p.add_argument("--channels", type=_ints(1), default=(1,),
                   help="input and output channels (C_in,C_out; one value: both), for parameters and FLOPs")
    p.add_argument("--draw", metavar="FILE", help="draw the picture (the last two dims) as a .png, or as an "
                   "animated .gif of the kernel sliding over the input (matplotlib)")
    _conv_options(p)

    p = sub.add_parser("explain", help=COMMANDS["explain"], description=COMMANDS["explain"])
    p.add_argument("--input", type=_ints(0), required=True, help="input shape N,C,*spatial (or C,*spatial)")
    p.add_argument("--weight", type=_ints(0), required=True,
                   help="weight shape K,C/groups,*kernel (transposed: C_in,C_out/groups,*kernel)")
    p.add_argument("--groups", type=int, default=1, help="groups (C and K divisible by it; C for depthwise)")
    p.add_argument("--padding-mode", default="zeros", help="zeros, reflect, replicate, circular or symmetric")
    p.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"])
    p.add_argument("--backend", default="auto", help="auto (by device), numba, numpy, cuda or cuda-sim")
    p.add_argument("--algorithm", default="auto", help="force one algorithm (its reasons are shown if it cannot)")
    _conv_options(p)

    p = sub.add_parser("bench", help=COMMANDS["bench"], description=COMMANDS["bench"])
    p.add_argument("--quick", action="store_true", help="a quarter of the batch, fewer repetitions")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--layers", help="only layers whose name contains one of these comma-separated parts")
    p.add_argument("--csv", metavar="FILE", help="write the rows (with the machine and versions) as CSV")
    p.add_argument("--plot", metavar="FILE.png", help="draw the ratios per layer as a PNG (matplotlib)")
    p.add_argument("--threads", type=_ints(1), help="CPU threads for both sides (default: all cores)")
    p.add_argument("--reps", type=_ints(1), help="timed repetitions per side")
    p.add_argument("--algorithms", action="store_true", help="CPU: also time every eligible algorithm, forced")
    p.add_argument("--batch", type=_ints(1), help="CUDA: batch size (default 32; --quick 8)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="CUDA: the dtype")
    p.add_argument("--algorithm", default="auto", help="CUDA: a convops CUDA algorithm (default: the choice of auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return top


_RUN = {"info": info, "check": check, "shape": shape, "explain": explain, "bench": bench}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["selfcheck"]:  # the earlier name of check
        argv[0] = "check"
    top = parser()
    args = top.parse_args(argv)  # exits 2 on bad arguments, 0 on --help
    if args.command is None:
        top.print_help()
        return 2
    def usage(message):
        top.exit(2, f"convops {args.command}: error: {message}\n")

    if args.command == "shape":
        if len(args.channels) > 2:
            usage(f"argument --channels: expected C_in or C_in,C_out, got {','.join(map(str, args.channels))}")
        args.channels = (args.channels[0], args.channels[-1])
    single = {"check": ("jobs",), "bench": ("threads", "reps", "batch")}.get(args.command, ())
    for name in single:
        value = getattr(args, name)
        if value is not None and len(value) != 1:
            usage(f"argument --{name}: expected one int, got {','.join(map(str, value))}")
        setattr(args, name, None if value is None else value[0])
    # Bad values the parser cannot see (a stride of the wrong length, a shape validation rejects) are
    # one line and status 2; for check and info only the usage errors are (a kernel's error is a bug).
    caught = (_UsageError, ValueError, TypeError) if args.command in ("shape", "explain") else (_UsageError,)
    if args.command == "bench" and args.layers:
        from . import benchmark
        try:
            benchmark._selected(args.layers)
        except ValueError as e:
            usage(str(e))
    try:
        return _RUN[args.command](args)
    except caught as e:
        from .errors import UnsupportedError
        text = str(e) if isinstance(e, UnsupportedError) else (str(e).splitlines() or [type(e).__name__])[0]
        print(f"convops {args.command}: error: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
