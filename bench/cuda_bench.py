"""The CUDA benchmark: ``convops bench --device cuda`` from a checkout
(convops's CUDA kernels against cuDNN through PyTorch, ``cudnn.benchmark =
True``, TF32 off, CUDA events after warm-up; the runner is
``convops.benchmark.run_cuda``).  Needs a GPU, CuPy and a CUDA build of
torch; ci/gpu.sh runs it.

    python bench/cuda_bench.py [--batch 32] [--reps 20] [--dtype float32|float16] [--algorithm auto] [--csv F]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convops import cli  # noqa: E402


def main(argv=None) -> int:
    return cli.main(["bench", "--device", "cuda"] + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
