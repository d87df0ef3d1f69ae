"""Named problem lists shared by the self-check, the tests and the benchmarks.

Each entry is a forward :class:`ConvProblem`; its gradient problems come from
``problem.grad_input()`` / ``problem.grad_weight()``.  Transposed-convolution
entries are dgrad problems built from the transposed call's arguments.
"""

from __future__ import annotations

from .problem import ConvProblem


def _t(v, nd):
    return (v,) * nd if isinstance(v, int) else tuple(v)


def fwd(n, c, k, size, kernel, stride=1, padding=0, dilation=1, groups=1, mode="zeros", dtype="float32"):
    """A forward problem; ints broadcast over ``len(size)`` spatial dims and
    ``padding`` is an int, one int per dim or one (lo, hi) pair per dim."""
    size = (size,) if isinstance(size, int) else tuple(size)
    nd = len(size)
    pads = padding if isinstance(padding, (tuple, list)) else (padding,) * nd
    pads = tuple((p, p) if isinstance(p, int) else tuple(p) for p in pads)
    return ConvProblem.forward(n=n, c_in=c, c_out=k, in_size=size, kernel=_t(kernel, nd), stride=_t(stride, nd),
                               padding=pads, dilation=_t(dilation, nd), groups=groups, padding_mode=mode,
                               dtype=dtype)


def transposed(n, c, k, size, kernel, stride=1, padding=0, output_padding=0, dilation=1, groups=1,
               mode="zeros", dtype="float32"):
    """The dgrad problem of conv_transpose(x (n, c, *size), w (c, k/groups, *kernel))."""
    size = (size,) if isinstance(size, int) else tuple(size)
    nd = len(size)
    pads = padding if isinstance(padding, (tuple, list)) else (padding,) * nd
    pads = tuple((p, p) if isinstance(p, int) else tuple(p) for p in pads)
    return ConvProblem.transposed(n=n, c_in=c, c_out=k, in_size=size, kernel=_t(kernel, nd),
                                  stride=_t(stride, nd), padding=pads, dilation=_t(dilation, nd),
                                  output_padding=_t(output_padding, nd), groups=groups, padding_mode=mode,
                                  dtype=dtype)


# Edge cases: 1x1, kernel == input, single channel, odd sizes, every padding
# mode, asymmetric padding, stride > kernel, dilation > 1, groups.
TINY = [
    fwd(1, 1, 1, 5, 1),
    fwd(1, 1, 1, 4, 4),
    fwd(2, 3, 2, 7, 3),
    fwd(1, 2, 3, 6, 2, stride=3),
    fwd(1, 2, 2, 9, 3, stride=4, padding=1),
    fwd(2, 2, 2, 8, 3, dilation=3, padding=((2, 1),)),
    fwd(1, 3, 2, (5, 4), (2, 3), padding=((0, 1), (2, 0))),
    fwd(1, 2, 2, (5, 6), 3, padding=2, mode="reflect"),
    fwd(1, 2, 2, (5, 6), 3, padding=((1, 2), (0, 3)), mode="replicate"),
    fwd(1, 2, 2, (5, 6), 3, padding=(3, 2), mode="circular"),
    fwd(1, 2, 2, (5, 6), 3, padding=((2, 1), (4, 0)), mode="symmetric"),
    fwd(2, 4, 6, (5, 5), 3, padding=1, groups=2),
    fwd(1, 3, 6, (6, 5), 3, padding=1, groups=3),
    fwd(1, 2, 2, (3, 4, 5), (2, 1, 3), padding=((1, 0), 0, (1, 1))),
    fwd(1, 2, 4, (4, 5, 4), 2, stride=(2, 1, 2), dilation=(1, 2, 1), groups=2, mode="reflect", padding=1),
    fwd(1, 3, 3, 11, 3, stride=2, padding=1, dtype="float64"),
    fwd(1, 3, 3, (7, 7), 3, padding=1, dtype="float16"),
    # dilated, output a multiple of the dilation (every dilation phase the same size)
    fwd(1, 2, 3, 12, 3, dilation=3, padding=3),
    fwd(2, 4, 4, (9, 12), (3, 2), dilation=(3, 4), padding=(3, 2), groups=4),
    # extreme geometry: kernel wider than the input, stride past it, padding larger than it
    fwd(1, 1, 3, 8, 18, stride=2, padding=5),
    fwd(1, 1, 1, (1, 8), (1, 7), stride=(2, 1), dilation=(1, 3), padding=(0, 9)),
    transposed(1, 2, 3, 4, 3, stride=2, padding=1, output_padding=1),
    transposed(2, 4, 2, (3, 5), (4, 2), stride=(2, 3), padding=(1, 0), groups=2),
    transposed(1, 2, 2, 5, 3, stride=1, padding=1, output_padding=1, dilation=2),
    transposed(2, 3, 3, (5, 6), 3, stride=1, padding=0, output_padding=1, dilation=2, groups=3),
]

# A broader set: larger channel counts, every dim count and pass geometry.
RIGOROUS = [
    fwd(2, 16, 16, (12, 12), 3, padding=1),
    fwd(2, 16, 32, (13, 11), 3, stride=2, padding=1),
    fwd(2, 8, 8, (16, 16), 3, dilation=2, padding=2),
    fwd(2, 32, 16, (10, 10), 1),
    fwd(2, 12, 12, (9, 9), 3, padding=1, groups=12),
    fwd(2, 8, 24, (9, 9), 5, stride=2, padding=2, groups=8),
    fwd(2, 16, 16, 64, 5, padding=((4, 0),), dilation=1),
    fwd(2, 8, 8, 50, 3, dilation=4, padding=4),
    fwd(1, 4, 8, (6, 7, 8), 3, padding=1),
    fwd(1, 6, 6, (5, 6, 7), 3, stride=2, padding=1, groups=6),
    fwd(2, 3, 16, (23, 23), 7, stride=2, padding=3),
    fwd(2, 8, 8, (10, 10), 3, padding=1, mode="reflect"),
    fwd(2, 8, 8, (10, 10), 3, padding=1, mode="circular", dtype="float64"),
    transposed(2, 16, 8, (8, 8), 4, stride=2, padding=1),
    transposed(2, 8, 8, (7, 7), 3, stride=2, padding=1, output_padding=1, groups=8),
    transposed(1, 8, 4, (4, 5, 4), 3, stride=2, padding=1),
    # output_padding >= stride (allowed below the dilation): truncated forward outputs
    transposed(2, 4, 4, (4, 5, 6), 3, stride=1, padding=(0, 1, 0), output_padding=(1, 0, 2), dilation=(2, 1, 3),
               groups=4),
    transposed(2, 6, 4, (7, 6), (3, 2), stride=(1, 2), padding=((1, 0), (0, 1)), output_padding=(2, 1),
               dilation=(3, 2), groups=2),
]

# Layers from real networks at batch 1 and reduced size (the benchmarks use
# full sizes): ResNet, MobileNetV2, DeepLab, DCGAN, WaveNet, C3D-like.
NETWORKS = {
    "resnet50-3x3-c64": fwd(1, 64, 64, (28, 28), 3, padding=1),
    "resnet50-1x1-256to64": fwd(1, 256, 64, (14, 14), 1),
    "resnet50-stem-7x7-s2": fwd(1, 3, 64, (56, 56), 7, stride=2, padding=3),
    "mobilenetv2-dw-3x3-c144": fwd(1, 144, 144, (28, 28), 3, padding=1, groups=144),
    "mobilenetv2-dw-3x3-s2-c96": fwd(1, 96, 96, (28, 28), 3, stride=2, padding=1, groups=96),
    "deeplab-dilated-3x3-d2-c64": fwd(1, 64, 64, (28, 28), 3, padding=2, dilation=2),
    "dcgan-transposed-4x4-s2": transposed(1, 128, 64, (8, 8), 4, stride=2, padding=1),
    "wavenet-conv1d-k3-d4-c64": fwd(1, 64, 64, 512, 3, dilation=4, padding=4),
    "c3d-conv3d-3x3x3-c32": fwd(1, 32, 32, (4, 14, 14), 3, padding=1),
}
