#!/usr/bin/env bash
# Build the wheel, install it into a scratch virtual environment and check
# that the package imports and finds the CUDA sources shipped in it.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet --upgrade pip build
"$scratch/venv/bin/python" -m build --wheel --outdir "$scratch/dist" . >/dev/null
"$scratch/venv/bin/python" -m pip install --quiet "$scratch"/dist/convops-*.whl
cd "$scratch"
export CONVOPS_SIM_CACHE="$scratch/sim-cache"
"$scratch/venv/bin/python" - <<'PY'
import convops, convops.resources as r
d = r.kernels_dir()
assert d.parent == __import__("pathlib").Path(convops.__file__).parent, d
assert (d / "README.md").is_file(), d
import numpy as np
from convops.sim import SimModule
k = SimModule("#include <cuda_fp16.h>\n__global__ void one(__half* y) { y[threadIdx.x] = __float2half(1.0f); }").get_function("one")
y = np.zeros(4, np.float16)
k(1, 4, (y,))
assert (y == 1).all()
print(f"wheel ok: convops {convops.__version__} imports from {convops.__file__}, kernels at {d}, simulator runs")
PY
