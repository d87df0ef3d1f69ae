#!/usr/bin/env bash
# On a machine with an NVIDIA GPU whose Python already has CuPy (cupy-cuda13x),
# a CUDA build of torch, numba, numpy, scipy, pytest and hypothesis (no network
# needed): run the `gpu` tests and the CUDA benchmark from this checkout with
# that Python ($PYTHON, default python3), installing nothing.
# Results go to ${1:-bench/results/gpu-$(date +%F)}.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/results/gpu-$(date +%F)}"
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX shares the GPU with CuPy and torch
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
status=0
"$python" -m pytest -q -rs -m gpu tests/test_cuda_gpu.py tests/test_sim.py 2>&1 | tee "$out/gpu-tests.txt" || status=1
"$python" -m convops bench --device cuda --no-progress --csv "$out/bench-cuda.csv" 2>&1 | tee "$out/bench-cuda.txt" || status=1
exit $status
