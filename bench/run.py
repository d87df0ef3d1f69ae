"""Side-by-side benchmark: ``convops bench`` from a checkout.

    python bench/run.py [--quick] [--threads 2] [--reps 7] [--algorithms] [--csv out.csv] [--plot out.png] [--only SUBSTR]
    python bench/run.py --device cuda [--dtype float16] [--algorithm implicit_gemm] [--csv out.csv]

The runner is ``convops.benchmark`` (see its docstring for the method); this
script passes its arguments to ``convops bench`` (``--only`` is ``--layers``).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convops import cli  # noqa: E402


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return cli.main(["bench"] + ["--layers" if a == "--only" else a for a in argv])


if __name__ == "__main__":
    sys.exit(main())
