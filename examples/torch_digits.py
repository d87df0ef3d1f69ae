"""The same training run twice in PyTorch: once with ``torch.nn``
convolutions, once with ``convops.replace_convs`` swapping them for convops
ones (same seed, same initialization, same batches), and the per-step losses
side by side.

    python examples/torch_digits.py --steps 50
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import convops.torch as ct


def make_model() -> torch.nn.Module:
    """An all-convolutional digits classifier (N, 1, 8, 8) -> (N, 10)."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(64, 10, 2), torch.nn.Flatten())


def batches(steps: int, batch: int, seed: int):
    from sklearn.datasets import load_digits
    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(data.target)
    rng = np.random.default_rng(seed)
    return [(x[idx], y[idx]) for idx in (torch.from_numpy(rng.choice(len(x), batch, replace=False))
                                         for _ in range(steps))]


def run(use_convops: bool, steps: int = 50, batch: int = 64, lr: float = 0.5, seed: int = 0):
    """Per-step training losses and the seconds the loop took."""
    torch.manual_seed(seed)
    model = make_model()
    if use_convops:
        ct.replace_convs(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses, start = [], time.perf_counter()
    for x, y in batches(steps, batch, seed):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ref, t_ref = run(False, args.steps, seed=args.seed)
    ours, t_ours = run(True, args.steps, seed=args.seed)
    for step, (a, b) in enumerate(zip(ref, ours)):
        print(f"step {step + 1:3d}  torch.nn {a:.6f}  convops {b:.6f}  gap {abs(a - b):.2e}")
    gap = max(abs(a - b) for a, b in zip(ref, ours))
    print(f"max loss gap {gap:.2e} over {args.steps} steps; torch.nn {t_ref:.2f} s, convops {t_ours:.2f} s")
    return gap


if __name__ == "__main__":
    main()
