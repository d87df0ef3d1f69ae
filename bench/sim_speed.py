"""Speed of the SIMT simulator (convops.sim), not a test:

    python bench/sim_speed.py

1. launch overhead: a 32-thread kernel, with the default checks (race
   detector run + reversed-order run) and without (check_races=False);
2. a 1M-thread elementwise kernel without barriers, with and without checks;
3. a kernel whose threads cross many __syncthreads: thread-phase switches
   (a thread suspended at a barrier and resumed) per second.

Every access of a simulated kernel is instrumented (bounds, and with checks
the race detector's shadow), and launches run in a worker process, so this
measures the price of those checks too.
"""

import os
import platform
import time

import numpy as np

from convops.sim import SimModule

SOURCE = r"""
__global__ void axpy(float a, const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}
__global__ void barriers(float* out, int rounds) {
    __shared__ float s[1024];
    float v = threadIdx.x;
    for (int r = 0; r < rounds; ++r) {
        s[threadIdx.x] = v;
        __syncthreads();
        v = s[(threadIdx.x + 1) % blockDim.x] * 0.5f;
        __syncthreads();
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}
"""


def best(fn, reps=3):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    module = SimModule(SOURCE)
    axpy, barriers = module.get_function("axpy"), module.get_function("barriers")
    tiny = (np.float32(2), np.ones(32, np.float32), np.ones(32, np.float32), np.int32(32))
    axpy((1,), (32,), tiny)
    small = best(lambda: axpy((1,), (32,), tiny, check_races=False), reps=50)
    small_checked = best(lambda: axpy((1,), (32,), tiny), reps=50)
    n = 1 << 20
    x = np.random.rand(n).astype(np.float32)
    y = np.random.rand(n).astype(np.float32)
    args = (np.float32(2), x, y, np.int32(n))
    grid = (n // 256,)
    single = best(lambda: axpy(grid, (256,), args, check_races=False))
    checked = best(lambda: axpy(grid, (256,), args))
    blocks, threads, rounds = 16, 1024, 50
    out = np.zeros(blocks * threads, np.float32)
    t = best(lambda: barriers((blocks,), (threads,), (out, np.int32(rounds)), check_races=False))
    switches = blocks * threads * rounds * 2
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus; {time.strftime('%Y-%m-%d')}")
    print(f"launch overhead (32 threads): {small * 1e3:.2f} ms; {small_checked * 1e3:.2f} ms with the checks")
    print(f"1M-thread elementwise: {single * 1e3:.1f} ms per launch ({n / single / 1e6:.1f} M threads/s); "
          f"{checked * 1e3:.1f} ms with the checks")
    print(f"barrier kernel: {switches} thread-phase switches in {t * 1e3:.1f} ms = {switches / t / 1e6:.1f} M/s")


if __name__ == "__main__":
    main()
