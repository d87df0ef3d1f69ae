"""The ``numba`` backend: hand-written Numba kernels (and BLAS GEMM for the
im2col family) for every pass, registered per algorithm:

- ``direct``          generic direct convolution (any stride/dilation/padding/groups)
- ``im2col``          im2col/col2im in Numba + BLAS GEMM, chunked workspace
- ``winograd``        F(2x2,3x3) for 3x3 stride-1 dense layers (wgrad opt-in), transform-domain GEMMs on BLAS
- ``depthwise``       groups == C, any channel multiplier, streaming
- ``polyphase``       strided fwd/wgrad as stride-1 phase sub-problems
- ``subpixel``        strided dgrad (transposed conv) without inserted zeros
- ``space_to_batch``  dilated convolution as undilated convs of phase batches

Non-zero padding modes go through a padded copy (fwd, wgrad) and a fold of
the padded gradient back onto the input (dgrad), so dgrad is the exact adjoint
in every mode; zero padding is handled inside the kernels.
"""

from __future__ import annotations


def unavailable_reason():
    try:
        import numba  # noqa: F401
    except ImportError as e:  # pragma: no cover - numba is a dependency
        return f"numba is not importable: {e}"
    return None


from . import direct, im2col, winograd, depthwise, polyphase, subpixel, space_to_batch  # noqa: E402,F401  (register)
