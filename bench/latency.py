"""Cold and warm latency of a small conv2d (numba backend), each measured in a
fresh process:

    python bench/latency.py

- cold, empty cache: the first call compiles every kernel it needs (Numba JIT)
- cold, cached:      the first call in a new process loads compiled kernels from disk
- warm:              a later call in the same process

Uses a private NUMBA_CACHE_DIR so the package's own cache is not disturbed.
"""

import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np, convops as co
t_import = time.perf_counter() - t0
x = np.random.rand(1, 16, 32, 32).astype(np.float32)
w = np.random.rand(16, 16, 3, 3).astype(np.float32)
t0 = time.perf_counter(); co.conv(x, w, padding=1); first = time.perf_counter() - t0
times = []
for _ in range(20):
    t0 = time.perf_counter(); co.conv(x, w, padding=1); times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"import_s": t_import, "first_call_s": first, "warm_call_s": times[len(times) // 2],
                  "algorithm": co.explain(x, w, padding=1).chosen.name}))
"""


def run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    with tempfile.TemporaryDirectory() as cache:
        cold = run(cache)
        cached = run(cache)
    print(f"small conv2d (1x16x32x32, 3x3, 16->16) via {cold['algorithm']}:")
    print(f"  import convops:             {cold['import_s'] * 1e3:8.1f} ms")
    print(f"  first call, empty cache:    {cold['first_call_s'] * 1e3:8.1f} ms   (JIT compile)")
    print(f"  first call, cached kernels: {cached['first_call_s'] * 1e3:8.1f} ms   (load from disk)")
    print(f"  warm call:                  {cached['warm_call_s'] * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
