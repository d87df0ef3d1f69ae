"""Per-call overhead of the framework adapters: the same small convolution
called on NumPy arrays (``convops.conv``), on torch CPU tensors through the
core API (``convops.conv``: views in and out), through ``convops.torch``
(the custom op: argument resolution, dispatcher, autograd bookkeeping),
forward and forward+backward, and through ``convops.jax`` (jit'ed, a
``pure_callback``), interleaved in one process; medians of many calls.

    python bench/adapter_overhead.py [--repeats 2000]

The problem is tiny on purpose (1x4x8x8, 4 filters 3x3): the kernel takes a
few microseconds, so the differences are the adapters' own cost.
"""

import argparse
import platform
import time

import numpy as np


def median_us(fn, repeats):
    for _ in range(20):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    import torch
    import convops as co
    import convops.torch as ct
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    txg, twg = tx.clone().requires_grad_(), tw.clone().requires_grad_()
    cases = {
        "convops.conv, NumPy arrays": lambda: co.conv(x, w, padding=1),
        "convops.conv, torch tensors": lambda: co.conv(tx, tw, padding=1),
        "convops.torch.conv2d, no grad": lambda: ct.conv2d(tx, tw, None, 1, 1),
        "convops.torch.conv2d, fwd+bwd": lambda: ct.conv2d(txg, twg, None, 1, 1).sum().backward(),
        "convops.conv_vjp fwd+bwd, NumPy": lambda: co.conv_vjp(x, w, padding=1)[1](np.ones((1, 4, 8, 8), np.float32)),
        "torch.nn.functional.conv2d (oneDNN), no grad": lambda: torch.nn.functional.conv2d(tx, tw, None, 1, 1),
        "torch.nn.functional.conv2d, fwd+bwd": lambda: torch.nn.functional.conv2d(txg, twg, None, 1, 1).sum().backward(),
    }
    try:
        import jax
        import convops.jax as cj
        jx, jw = jax.numpy.asarray(x), jax.numpy.asarray(w)
        jitted = jax.jit(lambda a, b: cj.conv(a, b, padding=1))
        cases["convops.jax.conv, jit"] = lambda: jitted(jx, jw).block_until_ready()
        cases["convops.conv, JAX arrays"] = lambda: co.conv(jx, jw, padding=1)
    except ImportError:
        pass
    results = {name: [] for name in cases}
    for _ in range(5):  # interleaved rounds; the median of the round medians
        for name, fn in cases.items():
            results[name].append(median_us(fn, args.repeats // 5))
    base = float(np.median(results["convops.conv, NumPy arrays"]))
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}; input (1, 4, 8, 8) float32, weight (4, 4, 3, 3), padding 1")
    print(f"{'call':<48} {'median us':>10} {'minus NumPy call':>17}")
    for name, values in results.items():
        m = float(np.median(values))
        print(f"{name:<48} {m:10.1f} {m - base:17.1f}")


if __name__ == "__main__":
    main()
