"""convops: convolution kernels for Python.

Hand-written CPU (Numba) and CUDA kernels for direct, im2col+GEMM, strided,
dilated, transposed and depthwise convolution, 1-D to 3-D, forward and both
gradients, behind one dispatch layer, every kernel validated against a plain
NumPy reference.  See ``convops.conv`` for the conventions (those of
``torch.nn.functional``).
"""

from . import arithmetic
from .api import (conv, conv1d, conv2d, conv3d, conv_grad_input, conv_grad_weight, conv_transpose,
                  conv_transpose1d, conv_transpose2d, conv_transpose3d, conv_transpose_vjp, conv_vjp, explain)
from .config import get_validation, set_validation
from .dispatch import Plan
from .errors import UnsupportedError, ValidationError
from .problem import ConvProblem
from .registry import Implementation, available_backends, implementations

__version__ = "0.1.0"

__all__ = [
    "arithmetic", "conv", "conv1d", "conv2d", "conv3d", "conv_transpose", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "conv_grad_input", "conv_grad_weight", "conv_vjp",
    "conv_transpose_vjp", "explain", "implementations", "available_backends", "set_validation",
    "get_validation", "ConvProblem", "Implementation", "Plan", "UnsupportedError", "ValidationError",
]
