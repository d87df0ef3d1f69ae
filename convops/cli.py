"""Command line: ``convops selfcheck`` (the main job: every registered
implementation against the NumPy reference, as a table) and
``convops shape`` (convolution arithmetic for one dimension)."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import arithmetic, problems, reference, registry, tolerance


def _operands(problem, rng):
    a_shape, b_shape = problem.operand_shapes
    a = rng.standard_normal(a_shape).astype(problem.dtype)
    b = rng.standard_normal(b_shape).astype(problem.dtype)
    return a, b


def _adjoint_error(problem, rng) -> float:
    """For the reference itself: <fwd(x, w), y> against <x, dgrad(y, w)> and
    <w, wgrad(x, y)>, in float64."""
    p = problem.with_op("fwd")
    p = type(p)(**{**p.__dict__, "dtype": "float64"})
    x, w = rng.standard_normal(p.x_shape), rng.standard_normal(p.w_shape)
    y = rng.standard_normal(p.y_shape)
    lhs = float(np.vdot(reference.run(p, x, w), y))
    rx = float(np.vdot(x, reference.run(p.with_op("dgrad"), y, w)))
    rw = float(np.vdot(w, reference.run(p.with_op("wgrad"), x, y)))
    scale = max(abs(lhs), 1e-300)
    return max(abs(lhs - rx), abs(lhs - rw)) / scale


def selfcheck(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="convops selfcheck", description=selfcheck.__doc__)
    parser.add_argument("--list", choices=["tiny", "rigorous", "networks"], default="tiny",
                        help="problem list (default: tiny)")
    parser.add_argument("--backend", default=None, help="only this backend")
    args = parser.parse_args(argv)
    plist = {"tiny": problems.TINY, "rigorous": problems.RIGOROUS,
             "networks": list(problems.NETWORKS.values())}[args.list]
    rng = np.random.default_rng(0)
    rows, failed = [], 0
    print(f"convops selfcheck: {len(plist)} problems x 3 passes, backends: {', '.join(registry.available_backends())}")
    for impl in registry.implementations(backend=args.backend):
        if impl.backend not in registry.available_backends():
            continue
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
                out = impl.run(p, a, b, None)
                err = tolerance.relative_error(out, reference.run(p, a, b))
                tol = impl.tolerance(p)
            seconds += time.perf_counter() - t0
            ran += 1
            worst = max(worst, err / tol)
            ok &= err <= tol
        failed += not ok
        rows.append((impl.op, impl.name, ran, skipped, f"{worst:.2e}", "ok" if ok else "FAIL", f"{seconds:.2f}"))
    head = ("op", "implementation", "ran", "skipped", "err/tol", "status", "seconds")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    print("reference rows check <fwd(x,w),y> == <x,dgrad(y,w)> == <w,wgrad(x,y)> in float64; "
          "others compare with the reference (err/tol <= 1 passes); seconds include Numba compilation "
          "on the first run (kernels are cached on disk afterwards)")
    print("FAILED" if failed else "all implementations agree with the reference")
    return 1 if failed else 0


def shape(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="convops shape",
                                     description="Output size of a convolution along one dimension.")
    parser.add_argument("input", type=int)
    parser.add_argument("kernel", type=int)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--padding", default="0", help="int, lo,hi, valid, same or full")
    parser.add_argument("--dilation", type=int, default=1)
    parser.add_argument("--transposed", action="store_true")
    parser.add_argument("--output-padding", type=int, default=0)
    args = parser.parse_args(argv)
    if args.padding in ("valid", "same", "full"):
        pad = arithmetic.resolve_padding(args.padding, args.input, args.kernel, args.stride, args.dilation)
    else:
        parts = [int(v) for v in args.padding.split(",")]
        pad = (parts[0], parts[-1])
    if args.transposed:
        o = arithmetic.conv_transpose_output_size(args.input, args.kernel, args.stride, pad, args.dilation,
                                                  args.output_padding)
        lo, hi = arithmetic.conv_transpose_output_range(args.input, args.kernel, args.stride, pad, args.dilation)
        print(f"transposed: input {args.input}, kernel {args.kernel}, stride {args.stride}, padding {pad}, "
              f"dilation {args.dilation}, output_padding {args.output_padding} -> output {o} "
              f"(valid output sizes {lo}..{hi})")
    else:
        o = arithmetic.conv_output_size(args.input, args.kernel, args.stride, pad, args.dilation)
        print(f"input {args.input}, kernel {args.kernel}, stride {args.stride}, padding {pad}, "
              f"dilation {args.dilation} -> output {o}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"selfcheck": selfcheck, "shape": shape}
    if not argv or argv[0] not in commands:
        print("usage: convops {selfcheck,shape} [options]   (convops <command> --help for more)")
        return 2
    try:
        return commands[argv[0]](argv[1:])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
