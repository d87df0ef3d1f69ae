"""Imports every CUDA algorithm module (each registers itself on both CUDA
backends and declares its kernel sources)."""

from . import depthwise, direct, im2col, implicit_gemm, implicit_gemm_tc  # noqa: F401
