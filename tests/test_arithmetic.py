"""The relations of Dumoulin & Visin, "A guide to convolution arithmetic for
deep learning", on the guide's own cases (relationship numbers in comments)."""

import pytest

from convops import arithmetic as A


def test_no_padding_unit_strides():  # relationship 1: o = i - k + 1
    assert A.conv_output_size(4, 3) == 2
    assert A.conv_output_size(5, 5) == 1


def test_arbitrary_padding():  # relationship 2: o = i - k + 2p + 1
    assert A.conv_output_size(5, 4, padding=2) == 6
    assert A.conv_output_size(5, 4, padding=(1, 3)) == 6
    assert A.conv_output_size(5, 4, padding=(0, 1)) == 3


def test_half_same_padding():  # relationship 3: k = 2n+1, p = floor(k/2) -> o = i
    for i in (1, 5, 8):
        for k in (1, 3, 5):
            if k <= i + 2 * (k // 2):
                assert A.conv_output_size(i, k, padding=k // 2) == i
    assert A.resolve_padding("same", 5, 3) == (1, 1)
    assert A.resolve_padding("same", 5, 4) == (1, 2)  # odd extra at the high end


def test_full_padding():  # relationship 4: p = k - 1 -> o = i + k - 1
    assert A.resolve_padding("full", 5, 3) == (2, 2)
    assert A.conv_output_size(5, 3, padding=A.resolve_padding("full", 5, 3)) == 7
    assert A.resolve_padding("full", 5, 3, dilation=2) == (4, 4)


def test_valid_padding():
    assert A.resolve_padding("valid", 9, 3, 2, 2) == (0, 0)


def test_strides_no_padding():  # relationship 5: o = floor((i - k)/s) + 1
    assert A.conv_output_size(5, 3, stride=2) == 2


def test_strides_with_padding():  # relationship 6
    assert A.conv_output_size(5, 3, stride=2, padding=1) == 3


def test_strides_non_divisible():  # the guide's odd case: i = 6, k = 3, s = 2, p = 1
    assert A.conv_output_size(6, 3, stride=2, padding=1) == 3
    assert A.conv_output_size(7, 3, stride=2, padding=1) == 4


def test_same_any_stride():
    for i in range(1, 20):
        for s in (1, 2, 3):
            for k in (1, 2, 3, 4):
                for d in (1, 2):
                    pad = A.resolve_padding("same", i, k, s, d)
                    assert A.conv_output_size(i, k, s, pad, d) == -(-i // s)
                    assert 0 <= pad[1] - pad[0] <= 1


def test_dilation():  # relationship 15: o = floor((i + 2p - k - (k-1)(d-1))/s) + 1
    assert A.conv_output_size(7, 3, dilation=2) == 3
    assert A.effective_kernel_size(3, 2) == 5
    for i, k, s, p, d in [(9, 3, 2, 1, 3), (12, 4, 3, 2, 2), (7, 2, 1, 0, 6)]:
        assert A.conv_output_size(i, k, s, p, d) == (i + 2 * p - k - (k - 1) * (d - 1)) // s + 1


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"dilated kernel size 5 .* larger than the padded input size 4"):
        A.conv_output_size(4, 3, dilation=2)
    assert A.conv_output_size(0, 3) == 0  # empty input, empty output


# Transposed counterparts: relationships 8-13.
def test_transposed_no_padding_unit_strides():  # 8: o' = i' + (k - 1)
    assert A.conv_transpose_output_size(2, 3) == 4


def test_transposed_padding():  # 9: o' = i' + (k - 1) - 2p
    assert A.conv_transpose_output_size(6, 4, padding=2) == 5


def test_transposed_half_and_full_padding():  # 10: half -> o' = i'; 11: full -> o' = i' - (k - 1)
    assert A.conv_transpose_output_size(5, 3, padding=1) == 5
    assert A.conv_transpose_output_size(7, 3, padding=2) == 5


def test_transposed_strides():  # 12: o' = s(i' - 1) + k
    assert A.conv_transpose_output_size(2, 3, stride=2) == 5


def test_transposed_strides_padding_and_output_padding():  # 13 and 14 (a = output padding)
    assert A.conv_transpose_output_size(3, 3, stride=2, padding=1) == 5
    assert A.conv_transpose_output_size(3, 3, stride=2, padding=1, output_padding=1) == 6
    assert A.conv_transpose_output_range(3, 3, 2, 1) == (5, 6)


def test_transposed_dilation():
    assert A.conv_transpose_output_size(3, 3, stride=1, dilation=2) == 7
    assert A.conv_transpose_output_range(3, 3, 1, 0, 3) == (9, 11)


def test_transposed_is_inverse_shape():
    """Every size in the transposed range maps back to the transposed input."""
    for i in range(1, 9):
        for k in (1, 2, 3, 4):
            for s in (1, 2, 3):
                for p in (0, 1):
                    for d in (1, 2):
                        try:
                            lo, hi = A.conv_transpose_output_range(i, k, s, p, d)
                        except ValueError:
                            continue
                        smallest = hi - max(s, d) + 1  # output_padding 0; below 1 when padding is large
                        assert lo == max(smallest, 1)
                        for o in range(lo, hi + 1):
                            if o - smallest < s:
                                assert A.conv_output_size(o, k, s, p, d) == i
                            else:  # truncated adjoints (dilation > stride)
                                assert A.conv_output_size(o, k, s, p, d) > i


def test_transpose_equivalent():
    # Guide, relationship 14: i = 5, k = 3, s = 2, p = 1 -> zero-inserted 5 -> 9, pad k - p - 1 = 1.
    eq = A.transpose_equivalent(3, 3, stride=2, padding=1)
    assert eq.input_size == 5 and eq.padding == (1, 1) and eq.stride == 1 and eq.output_size == 5
    eq = A.transpose_equivalent(3, 3, stride=2, padding=1, output_padding=1)
    assert eq.padding == (1, 2) and eq.output_size == 6
    for i, k, s, p, d, a in [(4, 3, 2, 0, 1, 1), (5, 4, 3, 2, 2, 1), (2, 2, 1, 0, 3, 2)]:
        eq = A.transpose_equivalent(i, k, s, p, d, a)
        assert eq.output_size == A.conv_transpose_output_size(i, k, s, p, d, a)
        assert eq.output_size == A.conv_output_size(eq.input_size + max(eq.padding[0], 0) + max(eq.padding[1], 0),
                                                    k, 1, 0, d) + min(eq.padding[0], 0) + min(eq.padding[1], 0)


def test_receptive_field():
    # two 3x3 stride-1 layers: 5; VGG-like 3x3 conv, 2x2/2 pool, 3x3 conv: 3 + 1 + 2*2 = 8
    assert A.receptive_field([(3, 1), (3, 1)]).size == 5
    rf = A.receptive_field([(3, 1, 1), (2, 2), (3, 1, 1)])
    assert rf.size == 8 and rf.jump == 2
    assert A.receptive_field([{"k": 3, "dilation": 2}, {"k": 3, "dilation": 4}]).size == 13
    assert A.receptive_field([(3, 1, 1)]).start == 0.5  # "same" keeps the centre on the first pixel


def test_params_and_flops():
    assert A.conv_params(64, 128, (3, 3)) == 64 * 128 * 9 + 128
    assert A.conv_params(64, 64, 3, groups=64, bias=False) == 64 * 3
    assert A.conv_flops(8, 64, 64, (3, 3), (56, 56)) == 2 * 8 * 64 * 64 * 9 * 56 * 56
    assert A.conv_flops(1, 32, 64, 3, 10, groups=32) == 2 * 64 * 1 * 3 * 10


def test_bad_arithmetic_args():
    with pytest.raises(ValueError, match="stride"):
        A.conv_output_size(5, 3, stride=0)
    with pytest.raises(ValueError, match="padding"):
        A.resolve_padding("bogus", 5, 3)
    with pytest.raises(ValueError, match="output size would be"):
        A.conv_transpose_output_size(1, 1, padding=1)
