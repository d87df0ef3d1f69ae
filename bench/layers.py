"""The benchmark layers (issue: CPU backend), full size, batch 8 unless stated.

Each entry: name -> (pass, public call kind, x shape, weight shape, keywords).
``transposed`` entries are conv_transpose calls (weight (C_in, C_out/g, *k)).
"""

LAYERS = [
    # name, passes, x shape, weight shape, keywords, transposed
    ("resnet50-3x3-c64-56", ("fwd", "dgrad", "wgrad"), (8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), False),
    ("resnet50-3x3-c256-14", ("fwd",), (8, 256, 14, 14), (256, 256, 3, 3), dict(padding=1), False),
    ("resnet50-1x1-256to64-56", ("fwd",), (8, 256, 56, 56), (64, 256, 1, 1), {}, False),
    ("resnet50-stem-7x7-s2-224", ("fwd",), (8, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3), False),
    ("mobilenetv2-dw-3x3-c144-56", ("fwd", "dgrad", "wgrad"), (8, 144, 56, 56), (144, 1, 3, 3),
     dict(padding=1, groups=144), False),
    ("mobilenetv2-dw-3x3-s2-c96-112", ("fwd",), (8, 96, 112, 112), (96, 1, 3, 3),
     dict(stride=2, padding=1, groups=96), False),
    ("deeplab-dilated-3x3-d2-c64-56", ("fwd",), (8, 64, 56, 56), (64, 64, 3, 3), dict(padding=2, dilation=2), False),
    ("dcgan-transposed-4x4-s2-128to64-16", ("fwd",), (8, 128, 16, 16), (128, 64, 4, 4),
     dict(stride=2, padding=1), True),
    ("wavenet-conv1d-k3-d4-c64-4096", ("fwd",), (8, 64, 4096), (64, 64, 3), dict(padding=4, dilation=4), False),
    ("conv3d-3x3x3-c32-8x28-b2", ("fwd",), (2, 32, 8, 28, 28), (32, 32, 3, 3, 3), dict(padding=1), False),
]

# Target ratio to PyTorch per (layer, pass), from the issue.
TARGETS = {
    ("resnet50-3x3-c64-56", "fwd"): 0.5, ("resnet50-3x3-c256-14", "fwd"): 0.5,
    ("resnet50-1x1-256to64-56", "fwd"): 0.8, ("resnet50-stem-7x7-s2-224", "fwd"): 0.8,
    ("mobilenetv2-dw-3x3-c144-56", "fwd"): 1.5, ("mobilenetv2-dw-3x3-s2-c96-112", "fwd"): 1.5,
    ("mobilenetv2-dw-3x3-c144-56", "dgrad"): 1.0, ("mobilenetv2-dw-3x3-c144-56", "wgrad"): 1.0,
    ("deeplab-dilated-3x3-d2-c64-56", "fwd"): 0.5, ("dcgan-transposed-4x4-s2-128to64-16", "fwd"): 1.0,
    ("wavenet-conv1d-k3-d4-c64-4096", "fwd"): 0.5, ("conv3d-3x3x3-c32-8x28-b2", "fwd"): 0.5,
    ("resnet50-3x3-c64-56", "dgrad"): 0.5, ("resnet50-3x3-c64-56", "wgrad"): 0.5,
}
