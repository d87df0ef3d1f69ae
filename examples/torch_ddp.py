"""convops inside PyTorch's own distributed engine: two processes on the CPU
(the gloo backend) train the same small model with
``torch.nn.parallel.DistributedDataParallel``, once with ``torch.nn``
convolutions and once with convops ones, and end with the same parameters.
convops has no distributed layer of its own: DDP all-reduces the gradients
that convops's autograd formulas produce, as it would torch's.

    python examples/torch_ddp.py --steps 5
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import convops.torch as ct


def make_model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(8, 4, 2, stride=2), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 2, 3, padding=1, padding_mode="reflect"))


def train(rank: int, world: int, use_convops: bool, steps: int) -> dict:
    """This rank's share of the run; the final parameters (the same on every rank)."""
    torch.manual_seed(0)
    model = make_model().double()
    if use_convops:
        ct.replace_convs(model)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    data = torch.Generator().manual_seed(1000 + rank)  # each rank its own shard
    for _ in range(steps):
        x = torch.randn(4, 3, 12, 12, generator=data, dtype=torch.float64)
        target = torch.randn(4, 2, 12, 12, generator=data, dtype=torch.float64)
        opt.zero_grad()
        torch.nn.functional.mse_loss(ddp(x), target).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def worker(rank: int, world: int, init_file: str, out_dir: str, steps: int):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {name: train(rank, world, name == "convops", steps) for name in ("torch.nn", "convops")}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run(steps: int = 5, world: int = 2) -> dict:
    """Both runs on ``world`` processes; the largest parameter difference
    between the torch.nn and the convops run, and across ranks."""
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(world, os.path.join(tmp, "rendezvous"), tmp, steps), nprocs=world, join=True)
        ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(world)]
    ref, ours = ranks[0]["torch.nn"], ranks[0]["convops"]
    return {
        "convops vs torch.nn": max(float((ref[k] - ours[k]).abs().max()) for k in ref),
        "across ranks": max(float((r[name][k] - ranks[0][name][k]).abs().max())
                            for r in ranks for name in r for k in r[name]),
        "moved from init": max(float((ref[k] - make_model_init()[k]).abs().max()) for k in ref),
    }


def make_model_init() -> dict:
    torch.manual_seed(0)
    return make_model().double().state_dict()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    for what, value in run(args.steps).items():
        print(f"max parameter difference, {what}: {value:.3g}")


if __name__ == "__main__":
    main()
