"""convops.torch: the custom ops (opcheck, gradcheck, gradgradcheck), the
functional API against torch.nn.functional on a seeded fuzz, the modules,
replace_convs, torch.compile and DDP."""

import copy
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ct = pytest.importorskip("convops.torch")
F = torch.nn.functional
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _t(rng, *shape, dtype=torch.float64, grad=False):
    return torch.tensor(rng.standard_normal(shape), dtype=dtype, requires_grad=grad)


# --- the three operators ----------------------------------------------------

OPCHECK_CASES = {  # (input, weight, stride, flat padding, dilation, groups, padding_mode)
    "2d": ((2, 4, 7, 6), (6, 2, 3, 2), [2, 1], [1, 1, 0, 1], [1, 2], 2, "zeros"),
    "1d-reflect": ((3, 3, 9), (2, 3, 3), [1], [2, 1], [1], 1, "reflect"),
    "3d-circular": ((1, 2, 4, 5, 3), (2, 2, 2, 3, 1), [1, 2, 1], [1, 0, 1, 1, 0, 0], [1, 1, 2], 1, "circular"),
    "unbatched": ((3, 8, 8), (4, 3, 3, 3), [2, 2], [1, 1, 1, 1], [1, 1], 1, "replicate"),
}


@pytest.mark.parametrize("case", sorted(OPCHECK_CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_every_op(case, dtype, rng):
    xs, ws, stride, pad, dil, groups, mode = OPCHECK_CASES[case]
    x, w = _t(rng, *xs, dtype=dtype, grad=True), _t(rng, *ws, dtype=dtype, grad=True)
    bias = _t(rng, ws[0], dtype=dtype, grad=True)
    params = (stride, pad, dil, groups, mode)
    y = torch.ops.convops.conv(x, w, bias, *params)
    gy = torch.randn_like(y).requires_grad_()
    for op, args in ((torch.ops.convops.conv.default, (x, w, bias, *params)),
                     (torch.ops.convops.conv.default, (x, w, None, *params)),
                     (torch.ops.convops.conv_grad_input.default, (gy, w, list(xs), *params)),
                     (torch.ops.convops.conv_grad_weight.default, (x, gy, list(ws), *params))):
        result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, (op, result)


GRAD_CASES = [  # (functional, input, weight, keywords)
    ("conv1d", (2, 4, 9), (4, 2, 3), dict(stride=2, padding=2, dilation=2, groups=2)),
    ("conv2d", (2, 3, 6, 5), (4, 3, 3, 2), dict(stride=(2, 1), padding=((1, 0), (2, 1)), dilation=(1, 2))),
    ("conv2d", (1, 2, 5, 5), (2, 2, 3, 3), dict(padding=1, padding_mode="reflect")),
    ("conv3d", (1, 2, 4, 4, 3), (2, 1, 2, 3, 2), dict(stride=(1, 2, 1), padding=(1, 0, 1), groups=2)),
    ("conv_transpose1d", (2, 4, 5), (4, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ("conv_transpose2d", (1, 4, 4, 3), (4, 1, 3, 2), dict(stride=(2, 3), padding=(1, 0), groups=2, dilation=(1, 2))),
    ("conv_transpose3d", (1, 2, 3, 2, 3), (2, 2, 2, 2, 3), dict(stride=2, output_padding=(1, 0, 1))),
    # output_padding >= stride (dilation 2): outputs past a forward conv's reach (the fuzz found it)
    ("conv_transpose1d", (2, 2, 4), (2, 3, 3), dict(stride=1, padding=1, output_padding=1, dilation=2)),
]


@pytest.mark.parametrize("name,xs,ws,kw", GRAD_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(GRAD_CASES)])
def test_gradcheck_and_gradgradcheck(name, xs, ws, kw, rng):
    fn = getattr(ct, name)
    c_out = ws[1] * kw.get("groups", 1) if "transpose" in name else ws[0]
    x, w, b = _t(rng, *xs, grad=True), _t(rng, *ws, grad=True), _t(rng, c_out, grad=True)
    f = lambda x, w, b: fn(x, w, b, **kw)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_third_order_gradients_are_convolutions_too(rng):
    x, w = _t(rng, 1, 2, 5, 5, grad=True), _t(rng, 3, 2, 3, 3, grad=True)
    f = lambda x, w: ct.conv2d(x, w, None, 2, 1)  # noqa: E731
    g = lambda x, w: F.conv2d(x, w, None, 2, 1)  # noqa: E731

    def third(fn):
        y = fn(x, w)
        (gx,) = torch.autograd.grad((y ** 3).sum(), x, create_graph=True)
        (gw,) = torch.autograd.grad((gx ** 3).sum(), w, create_graph=True)
        return torch.autograd.grad((gw ** 2).sum(), x)[0]

    torch.testing.assert_close(third(f), third(g), rtol=1e-10, atol=1e-10)


# --- agreement with torch.nn on a seeded fuzz -------------------------------

def _random_module(rng, transposed: bool):
    nd = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 2, 3]))
    c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 4, nd))
    stride = tuple(int(s) for s in rng.integers(1, 4, nd))
    dilation = tuple(int(d) for d in rng.integers(1, 3, nd))
    cls = getattr(torch.nn, f"ConvTranspose{nd}d" if transposed else f"Conv{nd}d")
    kw = dict(stride=stride, dilation=dilation, groups=groups, bias=bool(rng.integers(0, 2)))
    if transposed:
        kw["padding"] = tuple(int(p) for p in rng.integers(0, 2, nd))
        kw["output_padding"] = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    else:
        mode = ("zeros", "reflect", "replicate", "circular")[int(rng.integers(0, 4))]
        kw["padding_mode"] = mode
        if rng.random() < 0.25 and all(s == 1 for s in stride):
            kw["padding"] = "same"
        else:
            kw["padding"] = tuple(int(p) for p in rng.integers(0, 3, nd))
    size = tuple(int(v) for v in rng.integers(1, 7, nd))  # down to 1: kernels and padding past the input
    batch = () if rng.random() < 0.15 else (int(rng.integers(0, 3)),)  # unbatched, and N = 0
    return cls(c_in, c_out, kernel, **kw), batch + (c_in,) + size


FUZZ_SEEDS = range(80)


@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_modules_agree_with_torch_nn(seed):
    rng = np.random.default_rng(seed)
    transposed = bool(seed % 3 == 2)
    torch.manual_seed(seed)
    ref = _random_module(rng, transposed)
    module, x_shape = ref
    ours = ct.replace_convs(copy.deepcopy(module))
    assert type(ours).__name__ == type(module).__name__ and type(ours).__module__ == "convops.torch"
    module, ours = module.double(), ours.double()
    x = torch.tensor(rng.standard_normal(x_shape), requires_grad=True)
    try:
        expect = module(x)
    except RuntimeError:  # torch refuses the geometry (kernel past the padded input, reflect padding
        with pytest.raises(ValueError):  # past the input): convops must refuse it too, with a ValueError
            ours(x)
        return
    got = ours(x)
    torch.testing.assert_close(got, expect, rtol=1e-10, atol=1e-10)
    gy = torch.tensor(rng.standard_normal(tuple(expect.shape)))
    params = [x] + list(module.parameters())
    expect_grads = torch.autograd.grad(expect, params, gy, allow_unused=True)
    got_grads = torch.autograd.grad(got, [x] + list(ours.parameters()), gy, allow_unused=True)
    for e, g in zip(expect_grads, got_grads):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10)


def test_the_module_fuzz_reaches_every_padding_mode_and_feature():
    """The seeds above cover what they claim, among the geometries torch accepts."""
    seen = set()
    for seed in FUZZ_SEEDS:
        rng = np.random.default_rng(seed)
        transposed = bool(seed % 3 == 2)
        torch.manual_seed(seed)
        module, x_shape = _random_module(rng, transposed)
        try:
            module(torch.zeros(x_shape))
        except RuntimeError:
            continue
        seen.add(("transposed", type(module).__name__) if transposed else ("mode", module.padding_mode))
        seen |= {("groups", module.groups > 1), ("dilation", max(module.dilation) > 1),
                 ("output_padding", transposed and max(module.output_padding) > 0),
                 ("unbatched", len(x_shape) == module.weight.dim() - 1), ("empty batch", x_shape[0] == 0)}
    expected = {("mode", m) for m in ("zeros", "reflect", "replicate", "circular")}
    expected |= {("transposed", f"ConvTranspose{nd}d") for nd in (1, 2, 3)}
    expected |= {("groups", True), ("dilation", True), ("output_padding", True), ("unbatched", True),
                 ("empty batch", True)}
    assert expected <= seen, sorted(expected - seen)


# --- modules ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
                                  "ConvTranspose3d"])
def test_modules_share_torch_nn_constructor_init_and_state_dict(name):
    torch.manual_seed(7)
    ref = getattr(torch.nn, name)(4, 6, 3, stride=2, padding=1, groups=2)
    torch.manual_seed(7)
    ours = getattr(ct, name)(4, 6, 3, stride=2, padding=1, groups=2)
    assert isinstance(ours, getattr(torch.nn, name))
    assert ours.state_dict().keys() == ref.state_dict().keys()
    for k, v in ref.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k  # same seed, same initialization
    fresh = getattr(ct, name)(4, 6, 3, stride=2, padding=1, groups=2)
    fresh.load_state_dict(ref.state_dict())  # torch.nn checkpoints load unchanged
    nd = int(name[-2])
    x = torch.randn((2, 4) + (5,) * nd)
    torch.testing.assert_close(fresh(x), ref(x), rtol=1e-5, atol=1e-5)


def test_conv_transpose_forward_output_size():
    torch.manual_seed(0)
    ref = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    ours = ct.replace_convs(copy.deepcopy(ref))
    x = torch.randn(1, 3, 5, 5)
    for size in ([9, 9], [10, 10], [1, 2, 10, 9]):
        torch.testing.assert_close(ours(x, output_size=size), ref(x, output_size=size), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="requested an output size of"):
        ours(x, output_size=[12, 12])  # torch's own check, kept


def test_replace_convs_nested_root_and_subclasses():
    class Mine(torch.nn.Conv2d):  # a user's subclass may override forward: left alone
        pass

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3),
                                torch.nn.Sequential(torch.nn.ReLU(), torch.nn.ConvTranspose2d(2, 2, 2)),
                                Mine(2, 2, 1))
    inner = model[1][1]
    with pytest.warns(UserWarning, match=r"left 1 convolution\(s\) running torch: 2 \(Mine\)"):
        assert ct.replace_convs(model) is model
    assert type(model[0]) is ct.Conv2d and type(model[1][1]) is ct.ConvTranspose2d and model[1][1] is inner
    assert type(model[2]) is Mine
    root = torch.nn.Conv1d(1, 1, 1)
    assert type(ct.replace_convs(root)) is ct.Conv1d
    normed = torch.nn.Sequential(torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv2d(1, 2, 3)))
    with pytest.warns(UserWarning, match=r"0 \(ParametrizedConv2d\)"):
        ct.replace_convs(normed)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        ct.replace_convs([torch.nn.Conv1d(1, 1, 1)])


def test_bad_arguments_are_errors_before_any_kernel():
    x, w = torch.zeros(1, 3, 8, 8), torch.zeros(4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"stride must be >= 1, got stride=\(0, 1\)"):
        ct.conv2d(x, w, None, (0, 1))
    with pytest.raises(ValueError, match=r"expected input with 3 channels"):
        ct.conv2d(torch.zeros(1, 4, 8, 8), w)
    with pytest.raises(ValueError, match="conv1d expects a 3-dim weight"):
        ct.conv1d(x, w)
    with pytest.raises(TypeError, match="must be a floating-point tensor"):
        ct.conv2d(x.int(), w.int())
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        ct.conv2d(x, np.zeros((4, 3, 3, 3)))
    # the registered ops validate too, when called directly
    with pytest.raises(ValueError, match=r"one \(lo, hi\) pair per spatial dim, flattened"):
        torch.ops.convops.conv(x, w, None, [1, 1], [1, 1, 1], [1, 1], 1, "zeros")
    with pytest.raises(ValueError, match=r"grad_y must have shape \(1, 4, 6, 6\)"):
        torch.ops.convops.conv_grad_input(torch.zeros(1, 4, 8, 8), w, [1, 3, 8, 8], [1, 1], [0, 0, 0, 0], [1, 1], 1,
                                          "zeros")
    with pytest.raises(ValueError, match=r"padding_mode must be one of"):
        torch.ops.convops.conv_grad_weight(x, torch.zeros(1, 4, 6, 6), [4, 3, 3, 3], [1, 1], [0, 0, 0, 0], [1, 1], 1,
                                           "mirror")


# --- torch.compile ----------------------------------------------------------

def test_torch_compile_forward_fullgraph_and_training_step():
    torch.manual_seed(0)
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    fn = torch.compile(lambda x: ct.conv2d(x, w, None, 1, "same").relu(), fullgraph=True)
    torch.testing.assert_close(fn(x), F.conv2d(x, w, None, 1, "same").relu(), rtol=1e-5, atol=1e-5)

    def make():
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.ReLU(),
                                   torch.nn.ConvTranspose2d(4, 2, 2, stride=2))

    eager, compiled_model = make(), ct.replace_convs(make())
    step = torch.compile(lambda m, x: (m(x) ** 2).mean())
    for model, run in ((eager, lambda x: (eager(x) ** 2).mean()), (compiled_model, lambda x: step(compiled_model, x))):
        run(x).backward()
    for a, b in zip(eager.parameters(), compiled_model.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dynamic", [None, True])
def test_torch_compile_with_changing_shapes(dynamic):
    """Batch and image sizes change between calls (a smaller last batch):
    one graph (fullgraph), static or dynamic shapes, forward and backward."""
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="reflect"), torch.nn.ReLU(),
                              torch.nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1))
    ours = ct.replace_convs(copy.deepcopy(ref))
    step = torch.compile(lambda m, x: m(x).square().mean(), fullgraph=True, dynamic=dynamic)
    for shape in [(2, 3, 8, 8), (3, 3, 8, 8), (1, 3, 10, 6)]:
        x = torch.randn(shape)
        ours.zero_grad()
        ref.zero_grad()
        loss = step(ours, x)
        expect = ref(x).square().mean()
        torch.testing.assert_close(loss, expect, rtol=1e-5, atol=1e-6)
        loss.backward()
        expect.backward()
        for a, b in zip(ref.parameters(), ours.parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6)


def test_forward_mode_ad_is_refused_not_zero():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(NotImplementedError, match="forward-mode AD"):
        torch.func.jvp(lambda w: ct.conv2d(x, w), (w,), (torch.randn_like(w),))
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level(), pytest.raises(NotImplementedError, match="forward-mode AD"):
        ct.conv_transpose2d(fwAD.make_dual(x, torch.ones_like(x)), w.transpose(0, 1).contiguous())


def test_argument_memo_tells_ints_from_floats_and_bools():
    x, w = torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3)
    ct.conv2d(x, w, None, 1, 1)  # memoized
    for bad in (1.0, True):
        with pytest.raises(TypeError, match="stride must be an int"):
            ct.conv2d(x, w, None, bad, 1)
    m = ct.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    m(x, output_size=[15, 15])
    with pytest.raises(TypeError):
        m(x, output_size=[15.0, 15.0])


# --- distributed: DDP on two gloo processes ---------------------------------

def test_ddp_two_processes_end_with_torch_nn_parameters():
    script = os.path.join(ROOT, "examples", "torch_ddp.py")
    out = subprocess.run([sys.executable, script, "--steps", "4"], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    values = {line.split(",")[1].split(":")[0].strip(): float(line.rsplit(":", 1)[1])
              for line in out.stdout.splitlines() if line.startswith("max parameter difference")}
    assert values["convops vs torch.nn"] < 1e-12
    assert values["across ranks"] == 0.0
    assert values["moved from init"] > 1e-3  # it trained
