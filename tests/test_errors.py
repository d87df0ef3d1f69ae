"""The bad-input catalogue: each case names the exception type and a regex on
the message, and no input may be modified by a rejected call."""

import numpy as np
import pytest

import convops as co

f32 = np.float32
X = np.ones((1, 3, 8, 8), f32)
W = np.ones((6, 3, 3, 3), f32)
WT = np.ones((3, 2, 3, 3), f32)  # transposed weight: C_in 3 -> C_out 2
X1 = np.ones((2, 4, 10), f32)
W1 = np.ones((4, 4, 3), f32)

CASES = [
    # --- ranks and channel counts
    ("weight rank", lambda: co.conv(X, np.ones((6, 3), f32)), ValueError, r"weight must have 3, 4 or 5 dims"),
    ("weight rank 6", lambda: co.conv(np.ones((1, 1, 2, 2, 2, 2), f32), np.ones((1, 1, 1, 1, 1, 1), f32)),
     ValueError, r"weight must have 3, 4 or 5 dims"),
    ("input rank", lambda: co.conv(np.ones((3, 8), f32), W), ValueError,
     r"expected input with 4 dims \(batched\) or 3 dims \(unbatched\) .*got input of shape \(3, 8\)"),
    ("channels", lambda: co.conv(np.ones((1, 4, 28, 28), f32), np.ones((6, 3, 5, 5), f32)), ValueError,
     r"expected input with 3 channels \(weight \(6, 3, 5, 5\), groups=1\), got input \(1, 4, 28, 28\)"),
    ("unbatched channels", lambda: co.conv(np.ones((4, 8, 8), f32), W), ValueError, r"expected input with 3 channels"),
    ("groups vs channels", lambda: co.conv(X, np.ones((6, 3, 3, 3), f32), groups=3), ValueError,
     r"expected input with 9 channels \(weight \(6, 3, 3, 3\), groups=3\)"),
    ("groups divide out", lambda: co.conv(np.ones((1, 4, 8, 8), f32), np.ones((6, 2, 3, 3), f32), groups=4),
     ValueError, r"groups=4 must divide the weight's 6 output channels"),
    ("groups zero", lambda: co.conv(X, W, groups=0), ValueError, r"groups must be >= 1, got groups=0"),
    ("groups type", lambda: co.conv(X, W, groups=1.0), TypeError, r"groups must be an int, got groups=1.0"),
    ("bias shape", lambda: co.conv(X, W, np.ones(5, f32)), ValueError,
     r"bias must have shape \(6,\) .*got bias of shape \(5,\)"),
    ("bias rank", lambda: co.conv(X, W, np.ones((6, 1), f32)), ValueError, r"bias must have shape \(6,\)"),
    ("kernel zero", lambda: co.conv(X, np.ones((6, 3, 0, 3), f32)), ValueError, r"kernel sizes must be >= 1"),
    # --- stride, dilation, padding
    ("stride zero", lambda: co.conv(X, W, stride=(0, 1)), ValueError, r"stride must be >= 1, got stride=\(0, 1\)"),
    ("stride length", lambda: co.conv(X, W, stride=(1, 1, 1)), ValueError,
     r"stride must be an int or 2 ints \(one per spatial dim\), got stride=\(1, 1, 1\)"),
    ("stride type", lambda: co.conv(X, W, stride=1.5), TypeError, r"stride must be an int .*got stride=1.5"),
    ("stride bool", lambda: co.conv(X, W, stride=True), TypeError, r"stride must be an int"),
    ("dilation zero", lambda: co.conv(X, W, dilation=0), ValueError, r"dilation must be >= 1, got dilation=\(0, 0\)"),
    ("padding negative", lambda: co.conv(X, W, padding=-1), ValueError, r"padding must be >= 0, got padding=-1"),
    ("padding pair negative", lambda: co.conv(X, W, padding=((0, -1), 0)), ValueError, r"padding must be >= 0"),
    ("padding string", lambda: co.conv(X, W, padding="half"), ValueError,
     r"padding string must be one of \('valid', 'same', 'full'\), got padding='half'"),
    ("padding length", lambda: co.conv(X, W, padding=(1, 1, 1)), ValueError,
     r"padding must have 2 entries \(one per spatial dim\), got padding=\(1, 1, 1\)"),
    ("padding 1d pair hint", lambda: co.conv(X1, W1, padding=(1, 2)), ValueError,
     r"for asymmetric padding use \(\(1, 2\),\)"),
    ("padding type", lambda: co.conv(X, W, padding=1.0), TypeError, r"padding must be an int"),
    ("padding entry type", lambda: co.conv(X, W, padding=((1, 2, 3), 0)), TypeError,
     r"padding entries must be ints or \(lo, hi\) pairs"),
    ("padding mode name", lambda: co.conv(X, W, padding_mode="mirror"), ValueError,
     r"padding_mode must be one of \('zeros', 'reflect', 'replicate', 'circular', 'symmetric'\), "
     r"got padding_mode='mirror'"),
    ("padding mode type", lambda: co.conv(X, W, padding_mode=None), TypeError, r"padding_mode must be a string"),
    ("reflect too large", lambda: co.conv(X, W, padding=8, padding_mode="reflect"), ValueError,
     r"padding_mode='reflect' needs padding smaller than the input .*padding \(8, 8\) in spatial dim 0"),
    ("symmetric too large", lambda: co.conv(X, W, padding=((0, 8), 0), padding_mode="symmetric"), ValueError,
     r"padding_mode='symmetric' needs padding smaller than the input"),
    ("circular too large", lambda: co.conv(X, W, padding=((9, 0), 0), padding_mode="circular"), ValueError,
     r"padding_mode='circular' needs padding at most the input size"),
    ("kernel larger than input", lambda: co.conv(np.ones((1, 3, 4, 8), f32), np.ones((6, 3, 3, 3), f32),
                                                 dilation=2), ValueError,
     r"dilated kernel size 5 \(kernel 3, dilation 2\) is larger than the padded input size 4 \(input 4, "
     r"padding \(0, 0\)\) in spatial dim 0"),
    # --- dtypes and array types
    ("int dtype", lambda: co.conv(X.astype(np.int32), W.astype(np.int32)), TypeError,
     r"x must be a floating-point array \(float16, float32 or float64\), got x of dtype int32"),
    ("complex dtype", lambda: co.conv(X.astype(np.complex64), W), TypeError, r"got x of dtype complex64"),
    ("dtype mismatch", lambda: co.conv(X, W.astype(np.float64)), TypeError,
     r"weight dtype float64 does not match x dtype float32"),
    ("bias dtype", lambda: co.conv(X, W, np.ones(6, np.float64)), TypeError, r"bias dtype float64 does not match"),
    ("list input", lambda: co.conv(X.tolist(), W), TypeError, r"x must be a numpy.ndarray, cupy.ndarray, torch.Tensor or jax.Array.*got builtins.list; wrap it with numpy.asarray\(x\)"),
    # --- transposed convolution
    ("transposed channels", lambda: co.conv_transpose(np.ones((1, 4, 5, 5), f32), WT), ValueError,
     r"expected input with 3 channels \(transposed weight \(3, 2, 3, 3\), groups=1\)"),
    ("transposed groups", lambda: co.conv_transpose(np.ones((1, 3, 5, 5), f32), WT, groups=2), ValueError,
     r"groups=2 must divide the input's 3 channels"),
    ("output_padding too large", lambda: co.conv_transpose(np.ones((1, 3, 5, 5), f32), WT, stride=2,
                                                          output_padding=2), ValueError,
     r"output_padding must be smaller than max\(stride, dilation\) in every dim, got output_padding=\(2, 2\) "
     r"with stride=\(2, 2\), dilation=\(1, 1\)"),
    ("output_padding negative", lambda: co.conv_transpose(np.ones((1, 3, 5, 5), f32), WT, output_padding=-1),
     ValueError, r"output_padding must be >= 0"),
    ("output_size range", lambda: co.conv_transpose(np.ones((1, 3, 5, 5), f32), WT, stride=2, padding=1,
                                                    output_size=(11, 9)), ValueError,
     r"output_size=\(11, 9\) is outside the valid range: sizes from \(9, 9\) to \(10, 10\)"),
    ("output_size length", lambda: co.conv_transpose(np.ones((1, 3, 5, 5), f32), WT, output_size=(7,)),
     ValueError, r"output_size must have 2 entries"),
    ("output_size and padding", lambda: co.conv_transpose(np.ones((1, 3, 5, 5), f32), WT, stride=2,
                                                          output_padding=1, output_size=(10, 10)), ValueError,
     r"give output_padding or output_size, not both"),
    ("same output range", lambda: co.conv_transpose(np.ones((1, 3, 5, 5), f32), WT, stride=2, padding="same",
                                                    output_size=(11, 10)), ValueError,
     r"output_size=\(11, 10\) is outside the valid range for padding='same': sizes from \(9, 9\) to \(10, 10\)"),
    ("same with output_padding", lambda: co.conv_transpose(np.ones((1, 3, 5, 5), f32), WT, stride=2,
                                                           padding="same", output_padding=1), ValueError,
     r"with padding='same' the output size is input \* stride"),
    ("transposed no output", lambda: co.conv_transpose(np.ones((1, 3, 1, 1), f32), np.ones((3, 2, 1, 1), f32),
                                                       padding=1), ValueError, r"has no valid output size"),
    ("transposed reflect", lambda: co.conv_transpose(np.ones((1, 3, 4, 4), f32), WT, padding=2,
                                                     padding_mode="reflect"), ValueError,
     r"padding_mode='reflect' needs padding smaller than the input"),
    # --- gradients
    ("grad_y shape", lambda: co.conv_grad_input(np.ones((1, 6, 5, 6), f32), W, (1, 3, 8, 8)), ValueError,
     r"grad_y must have shape \(1, 6, 6, 6\) \(the output of input_shape \(1, 3, 8, 8\) with weight "
     r"\(6, 3, 3, 3\)\), got grad_y of shape \(1, 6, 5, 6\)"),
    ("input_shape length", lambda: co.conv_grad_input(np.ones((1, 6, 6, 6), f32), W, (8, 8)), ValueError,
     r"input_shape must have 3 or 4 entries"),
    ("input_shape type", lambda: co.conv_grad_input(np.ones((1, 6, 6, 6), f32), W, 8), TypeError,
     r"input_shape must be a sequence of ints"),
    ("input_shape channels", lambda: co.conv_grad_input(np.ones((1, 6, 6, 6), f32), W, (1, 4, 8, 8)), ValueError,
     r"expected input_shape with 3 channels"),
    ("weight_shape", lambda: co.conv_grad_weight(X, np.ones((1, 6, 6, 6), f32), (6, 3, 3)), ValueError,
     r"expected input with 3 dims \(batched\) or 2 dims \(unbatched\)"),
    ("weight_shape grad_y", lambda: co.conv_grad_weight(X, np.ones((1, 6, 7, 6), f32), (6, 3, 3, 3)), ValueError,
     r"grad_y must have shape \(1, 6, 6, 6\)"),
    ("weight_shape negative", lambda: co.conv_grad_weight(X, np.ones((1, 6, 6, 6), f32), (6, 3, -3, 3)),
     ValueError, r"weight_shape must be non-negative"),
    ("grad dtype", lambda: co.conv_grad_weight(X, np.ones((1, 6, 6, 6), np.float64), (6, 3, 3, 3)), TypeError,
     r"grad_y dtype float64 does not match x dtype float32"),
    ("vjp pullback shape", lambda: co.conv_vjp(X, W)[1](np.ones((1, 6, 5, 5), f32)), ValueError,
     r"grad_y must have shape \(1, 6, 6, 6\)"),
    ("transpose vjp pullback shape", lambda: co.conv_transpose_vjp(np.ones((1, 3, 5, 5), f32), WT)[1](
        np.ones((1, 2, 6, 7), f32)), ValueError, r"grad_y must have shape \(1, 2, 7, 7\)"),
    # --- fixed-rank entry points
    ("conv2d rank", lambda: co.conv2d(X1, W1), ValueError,
     r"conv2d expects a 4-dim weight \(C_out, C_in/groups, kH, kW\), got weight of shape \(4, 4, 3\)"),
    ("conv_transpose3d rank", lambda: co.conv_transpose3d(X, WT), ValueError, r"conv_transpose3d expects a 5-dim weight"),
    # --- huge integers: bounded, with the parameter named (the hardening issue, class 9)
    ("stride 2**63", lambda: co.conv(X, W, stride=2**63), ValueError,
     r"stride must be <= 2147483647 \(2\*\*31 - 1\), got stride=\(9223372036854775808, 9223372036854775808\)"),
    ("padding 10**30", lambda: co.conv(X, W, padding=10**30), ValueError,
     r"padding must be <= 2147483647 .*got padding=1000000000000000000000000000000"),
    ("padding pair huge", lambda: co.conv(X, W, padding=((0, 2**40), 0)), ValueError, r"padding must be <= 2147483647"),
    ("dilation huge", lambda: co.conv(X, W, dilation=2**40), ValueError, r"dilation must be <= 2147483647"),
    ("groups huge", lambda: co.conv(X, W, groups=2**63), ValueError, r"groups must be <= 2147483647"),
    ("padded size", lambda: co.conv(X, W, padding=2**31 - 2), ValueError,
     r"padded input size 4294967300 in spatial dim 0 exceeds 2147483647"),
    ("output_padding huge", lambda: co.conv_transpose(np.ones((1, 3, 5, 5), f32), WT, output_padding=2**70),
     ValueError, r"output_padding must be <= 2147483647"),
    ("output_size huge", lambda: co.conv_transpose(np.ones((1, 3, 5, 5), f32), WT, output_size=(2**64, 7)),
     ValueError, r"output_size must be <= 2147483647"),
    ("transposed output huge", lambda: co.conv_transpose(np.ones((1, 3, 5, 5), f32), WT, stride=2**31 - 1),
     ValueError, r"conv_transpose output size .* exceeds 2147483647"),
    ("input_shape huge", lambda: co.conv_grad_input(np.ones((1, 6, 6, 6), f32), W, (1, 3, 2**62, 8)), ValueError,
     r"input_shape entries must be below 2\*\*62"),
    ("weight_shape huge", lambda: co.conv_grad_weight(X, np.ones((1, 6, 6, 6), f32), (6, 3, 2**40, 3)), ValueError,
     r"kernel size|dilated kernel size|padded input"),
    # --- array types
    ("masked array", lambda: co.conv(np.ma.masked_array(X, mask=X > 2), W), TypeError,
     r"x is a numpy.ma.MaskedArray; convops does not apply masks: pass a plain array, e.g. x.filled\(0\)"),
    ("masked weight", lambda: co.conv(X, np.ma.masked_array(W)), TypeError, r"weight is a numpy.ma.MaskedArray"),
    # --- backend and algorithm names
    ("unknown backend", lambda: co.conv(X, W, backend="tpu"), ValueError, r"unknown backend='tpu'; known: auto, .*numpy"),
    ("unknown algorithm", lambda: co.conv(X, W, algorithm="fft"), ValueError,
     r"unknown algorithm='fft'; known: auto, .*reference"),
    ("backend type", lambda: co.conv(X, W, backend=1), TypeError, r"backend must be a string"),
    ("explain op", lambda: co.explain(X, W, op="deconv"), ValueError, r"op must be one of"),
    ("set_validation type", lambda: co.set_validation(1), TypeError, r"set_validation expects a bool"),
]


@pytest.mark.parametrize("name, call, exc, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, call, exc, pattern):
    snapshot = [a.copy() for a in (X, W, WT, X1, W1)]
    with pytest.raises(exc, match=pattern):
        call()
    for before, after in zip(snapshot, (X, W, WT, X1, W1)):
        np.testing.assert_array_equal(before, after)


def test_unsupported_error_is_value_error():
    assert issubclass(co.UnsupportedError, ValueError)
