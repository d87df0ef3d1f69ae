"""Train an all-convolutional network on scikit-learn's bundled 8x8 digits
with NumPy and convops only: every convolution (forward and both gradients)
runs through ``convops.conv_vjp``, the rest is plain NumPy and plain SGD (with a cosine learning-rate decay).

    python examples/numpy_digits.py            # about 98% test accuracy
    CONVOPS_VALIDATE=1 python examples/numpy_digits.py --epochs 2   # every conv also checked against the reference

Network (N, C, H, W): 1x8x8 -> conv 3x3 (16) -> 16x8x8 -> conv 3x3 stride 2 (32)
-> 32x4x4 -> conv 3x3 stride 2 (64) -> 64x2x2 -> conv 2x2 (10) -> 10 logits.
Strided convolutions downsample; there is no pooling and no dense layer.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import convops as co

# (C_in, C_out, kernel, stride, padding) per layer
LAYERS = [(1, 16, 3, 1, 1), (16, 32, 3, 2, 1), (32, 64, 3, 2, 1), (64, 10, 2, 1, 0)]


def load_digits(seed: int):
    """(x_train, y_train, x_test, y_test); x as (N, 1, 8, 8) float32 in [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split
    data = sk_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(x, data.target, test_size=0.25, random_state=seed, stratify=data.target)


def init_params(rng):
    """He-initialized weights (K, C, R, S) and zero biases (K,)."""
    params = []
    for c_in, c_out, k, _, _ in LAYERS:
        std = np.sqrt(2.0 / (c_in * k * k))
        params.append([(rng.standard_normal((c_out, c_in, k, k)) * std).astype(np.float32),
                       np.zeros(c_out, np.float32)])
    return params


def forward(params, x):
    """Logits (N, 10) and the pullbacks the backward pass needs."""
    tape = []
    for i, ((w, b), (_, _, _, stride, pad)) in enumerate(zip(params, LAYERS)):
        x, pullback = co.conv_vjp(x, w, b, stride=stride, padding=pad)
        relu = i < len(LAYERS) - 1
        tape.append((pullback, x > 0 if relu else None))
        if relu:
            x = np.maximum(x, 0)
    return x.reshape(len(x), -1), tape


def loss_and_grads(params, x, labels):
    logits, tape = forward(params, x)
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(p[np.arange(n), labels] + 1e-12).mean()
    g = p
    g[np.arange(n), labels] -= 1
    g = (g / n).reshape(n, 10, 1, 1).astype(logits.dtype)
    grads = [None] * len(params)
    for i in reversed(range(len(params))):
        pullback, mask = tape[i]
        if mask is not None:
            g = g * mask
        g, gw, gb = pullback(g)
        grads[i] = (gw, gb)
    return loss, grads


def accuracy(params, x, labels) -> float:
    return float((forward(params, x)[0].argmax(axis=1) == labels).mean())


def train(epochs: int = 30, batch: int = 32, lr: float = 0.2, seed: int = 0, log=print):
    """Train and return (test accuracy, seconds, per-epoch train losses)."""
    x_train, x_test, y_train, y_test = load_digits(seed)
    rng = np.random.default_rng(seed)
    params = init_params(rng)
    start, losses = time.perf_counter(), []
    for epoch in range(epochs):
        step = lr * 0.5 * (1 + np.cos(np.pi * epoch / epochs))  # cosine decay settles the last epochs
        order = rng.permutation(len(x_train))
        total = 0.0
        for first in range(0, len(order), batch):
            idx = order[first:first + batch]
            loss, grads = loss_and_grads(params, x_train[idx], y_train[idx])
            total += loss * len(idx)
            for (w, b), (gw, gb) in zip(params, grads):
                w -= step * gw
                b -= step * gb
        losses.append(total / len(order))
        log(f"epoch {epoch + 1:3d}  train loss {losses[-1]:.4f}  test accuracy {accuracy(params, x_test, y_test):.4f}")
    seconds = time.perf_counter() - start
    return accuracy(params, x_test, y_test), seconds, losses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    acc, seconds, _ = train(args.epochs, args.batch, args.lr, args.seed)
    print(f"test accuracy {acc:.4f} after {args.epochs} epochs in {seconds:.1f} s "
          f"(validation {'on' if co.get_validation() else 'off'})")


if __name__ == "__main__":
    main()
