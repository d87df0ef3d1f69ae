import dataclasses
import math

import pytest

from convops import ConvProblem, problems


def test_forward_problem_shapes():
    p = problems.fwd(8, 64, 128, (56, 56), 3, stride=2, padding=1)
    assert p.out_size == (28, 28)
    assert p.x_shape == (8, 64, 56, 56) and p.w_shape == (128, 64, 3, 3) and p.y_shape == (8, 128, 28, 28)
    assert p.operand_shapes == (p.x_shape, p.w_shape) and p.result_shape == p.y_shape
    assert p.flops == 2 * 8 * 128 * 64 * 9 * 28 * 28
    assert p.bytes == 4 * (math.prod(p.x_shape) + math.prod(p.w_shape) + math.prod(p.y_shape))
    assert p.gemm_shape == (1, 8 * 28 * 28, 128, 64 * 9)
    assert not p.is_depthwise and not p.is_pointwise and not p.is_empty


def test_gradient_problems_are_the_same_geometry():
    p = problems.fwd(2, 6, 4, (9, 9), 3, stride=2, padding=1, groups=2)
    dg, wg = p.grad_input(), p.grad_weight()
    assert dg.op == "dgrad" and wg.op == "wgrad"
    assert dg.operand_shapes == (p.y_shape, p.w_shape) and dg.result_shape == p.x_shape
    assert wg.operand_shapes == (p.x_shape, p.y_shape) and wg.result_shape == p.w_shape
    assert dg.flops == wg.flops == p.flops
    assert dg.gemm_shape == (2, 2 * 81, 3, 2 * 9) and wg.gemm_shape == (2, 2, 3 * 9, 2 * 25)
    assert dg.forward_pass() == p


def test_transposed_problem():
    # conv_transpose(x (1, 16, 8, 8), w (16, 8, 4, 4), stride 2, padding 1) -> (1, 8, 16, 16)
    t = problems.transposed(1, 16, 8, (8, 8), 4, stride=2, padding=1)
    assert t.op == "dgrad" and t.x_shape == (1, 8, 16, 16) and t.y_shape == (1, 16, 8, 8)
    assert t.w_shape == (16, 8, 4, 4) and not t.is_transposed_geometry
    # output_padding >= stride (allowed below the dilation): truncated forward outputs
    t = problems.transposed(1, 2, 2, 5, 3, stride=1, padding=1, output_padding=1, dilation=2)
    assert t.in_size == (8,) and t.out_size == (5,) and t.natural_out_size == (6,) and t.is_transposed_geometry


def test_hashable_and_frozen():
    a = problems.fwd(1, 2, 3, 5, 3)
    b = problems.fwd(1, 2, 3, 5, 3)
    assert a == b and hash(a) == hash(b) and len({a, b, a.grad_input()}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.n = 2
    assert str(a) == "fwd-n1-c2k3-in5-r3-float32"
    assert str(problems.fwd(1, 4, 4, (5, 6), 3, padding=((1, 2), 1), groups=2, mode="reflect")) == \
        "fwd-n1-c4k4-in5x6-r3x3-p1:2,1-g2-reflect-float32"


def test_derived_properties():
    dw = problems.fwd(1, 8, 16, (5, 5), 3, padding=1, groups=8)
    assert dw.is_depthwise and dw.channel_multiplier == 2
    pw = problems.fwd(1, 8, 16, (5, 5), 1)
    assert pw.is_pointwise and pw.gemm_shape == (1, 25, 16, 8)
    assert problems.fwd(0, 8, 16, (5, 5), 1).is_empty
    assert problems.fwd(1, 0, 16, (5, 5), 1).is_empty
    assert problems.fwd(1, 8, 16, (0, 5), 1).is_empty


def test_inconsistent_problem_rejected():
    with pytest.raises(ValueError, match="out_size"):
        ConvProblem("fwd", 1, 1, 1, (5,), (6,), (1,), (1,), ((0, 0),), (1,), 1, "zeros", "float32")
    with pytest.raises(ValueError, match="groups"):
        ConvProblem("fwd", 1, 3, 2, (5,), (5,), (1,), (1,), ((0, 0),), (1,), 2, "zeros", "float32")
    with pytest.raises(ValueError, match="1-3 spatial"):
        ConvProblem("fwd", 1, 1, 1, (), (), (), (), (), (), 1, "zeros", "float32")


def test_problem_lists_are_consistent():
    for p in problems.TINY + problems.RIGOROUS + list(problems.NETWORKS.values()):
        assert p.out_size == p.natural_out_size or p.op == "dgrad"
        assert not p.is_empty
