"""Tensor cores on the simulator: the instructions of kernels/include/mma.cuh
(mma.sync, ldmatrix, cp.async, cvt.rna.tf32) checked against plain NumPy, a
planted wrong lane mapping that the comparison must catch, and
``implicit_gemm_tc`` on every pass against the reference, at the geometry
where tiles, stages and packing have edges."""

import numpy as np
import pytest

import convops as co
from convops import config
from convops.cuda import implicit_gemm_tc
from convops.problem import ConvProblem
from convops.resources import kernels_dir
from convops.sim import SimBarrierError, SimModule, SimRaceError
from convops.tolerance import relative_error

from helpers import assert_close

pytestmark = pytest.mark.skipif("cuda-sim" not in co.available_backends(), reason="needs a C++ compiler")

OPTIONS = ("-std=c++17", f"-I{kernels_dir() / 'include'}")

PROBES = r'''
#include "mma.cuh"
__device__ unsigned short bits16(half_t h) { unsigned short b; memcpy(&b, &h, 2); return b; }
__device__ unsigned pack(half_t lo, half_t hi) { return bits16(lo) | ((unsigned)bits16(hi) << 16); }

// D (16 x 8) = A (16 x 16, row-major) * B (16 x 8, row-major) with each register filled by the
// PTX ISA's m16n8k16 layout; PLANT swaps the roles of a[1] and a[2] (rows +8 <-> columns +8).
__global__ void probe_f16(const half_t* A, const half_t* B, float* D) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  unsigned a[4], b[2];
  for (int i = 0; i < 4; ++i) {
    int row = g + 8 * (i % 2), col = 2 * t + 8 * (i / 2);
#ifdef PLANT
    if (i == 1 || i == 2) { row = g + 8 * (i / 2); col = 2 * t + 8 * (i % 2); }
#endif
    a[i] = pack(A[row * 16 + col], A[row * 16 + col + 1]);
  }
  for (int i = 0; i < 2; ++i) { const int k = 2 * t + 8 * i; b[i] = pack(B[k * 8 + g], B[(k + 1) * 8 + g]); }
  float d[4] = {0.f, 0.f, 0.f, 0.f};
  mma_f16_16816(d, a, b);
  for (int i = 0; i < 4; ++i) D[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2] = d[i];
}

// D (16 x 8) = A (16 x 8) * B (8 x 8), m16n8k8 TF32; PLANT swaps b[0] and b[1] (k <-> k + 4).
__global__ void probe_tf32(const float* A, const float* B, float* D) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  unsigned a[4], b[2];
  for (int i = 0; i < 4; ++i) a[i] = tf32_round(A[(g + 8 * (i % 2)) * 8 + t + 4 * (i / 2)]);
  for (int i = 0; i < 2; ++i) b[i] = tf32_round(B[(t + 4 * i) * 8 + g]);
#ifdef PLANT
  { unsigned s = b[0]; b[0] = b[1]; b[1] = s; }
#endif
  float d[4] = {0.f, 0.f, 0.f, 0.f};
  mma_tf32_1688(d, a, b);
  for (int i = 0; i < 4; ++i) D[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2] = d[i];
}

// lanes 16..31 leave before the mma (MODE 0) or call it from another line (MODE 1)
template <int MODE> __global__ void divergent_mma(float* out) {
  unsigned a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
  float d[4] = {0.f, 0.f, 0.f, 0.f};
  if (threadIdx.x >= 16) {
    if (MODE == 0) return;
    mma_f16_16816(d, a, b);
  } else {
    mma_f16_16816(d, a, b);
  }
  out[threadIdx.x] = d[0];
}

__global__ void round_tf32(const float* x, unsigned* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = tf32_round(x[i]);
}

// 4 matrices of 8 x 8 b16 in shared memory (from m); lane l names row l % 8 of matrix l / 8
// (lanes past 8*NUM give a null address: the instruction must not use it).
template <int NUM, bool TRANS> __global__ void load_matrices(const unsigned short* m, unsigned* out) {
  __shared__ __align__(16) unsigned short s[4 * 64];
  const int lane = threadIdx.x;
  for (int i = lane; i < 256; i += 32) s[i] = m[i];
  __syncwarp();
  unsigned r[NUM];
  const void* row = lane < 8 * NUM ? (const void*)&s[(lane / 8) * 64 + (lane % 8) * 8] : nullptr;
  ldmatrix<NUM, TRANS>(r, row);
  for (int j = 0; j < NUM; ++j) out[lane * NUM + j] = r[j];
}

// cp.async: each thread copies 16 bytes (4 floats) of x into shared memory, src_bytes of them
// from x and the rest zero; MODE 0 waits and syncs before reading (correct), 1 reads its own
// destination before waiting, 2 reads a neighbour's destination after its own wait but with
// no barrier, 3 commits two groups and waits for all but one before reading the second,
// 4 reads a neighbour's destination and then issues the copy into its own with no barrier
// between (a write-after-read race: the copy may land before the neighbour reads).
template <int MODE> __global__ void async_copy(const float* x, float* y, int src_bytes) {
  __shared__ __align__(16) float s[2][64 * 4];
  const int t = threadIdx.x;
  if (MODE == 4) {  // the refill pattern with its barrier after the issue instead of before it
    s[0][4 * t] = 1.f;
    __syncthreads();
    y[t] = s[0][4 * ((t + 1) % blockDim.x)];
    cp_async_16(&s[0][4 * t], x + 4 * t, 16);
    cp_async_commit();
    __syncthreads();
    cp_async_wait<0>();
    return;
  }
  cp_async_16(&s[0][4 * t], x + 4 * t, src_bytes);
  cp_async_commit();
  if (MODE == 3) { cp_async_16(&s[1][4 * t], x + 4 * t, 16); cp_async_commit(); }
  if (MODE == 1) { y[t] = s[0][4 * t]; return; }
  if (MODE == 3) { cp_async_wait<1>(); y[t] = s[0][4 * t] + s[1][4 * t]; return; }
  cp_async_wait<0>();
  if (MODE == 2) { y[t] = s[0][4 * ((t + 1) % blockDim.x)]; return; }
  __syncthreads();
  for (int i = 0; i < 4; ++i) y[4 * t + i] = s[0][4 * ((t + 1) % blockDim.x) + i];
}
'''
NAMES = tuple(f"load_matrices<{n}, {t}>" for n in (1, 2, 4) for t in ("false", "true")) + \
    tuple(f"async_copy<{m}>" for m in range(5)) + ("divergent_mma<0>", "divergent_mma<1>")


@pytest.fixture(scope="module")
def probes():
    return SimModule(PROBES, options=OPTIONS, name_expressions=NAMES)


@pytest.fixture(scope="module")
def planted():
    return SimModule("#define PLANT 1\n" + PROBES, options=OPTIONS, name_expressions=NAMES)


@pytest.mark.parametrize("mode, what", [(0, "exited before it"), (1, "warp divergence")])
def test_every_lane_must_execute_the_same_mma(probes, mode, what):
    with pytest.raises(SimBarrierError, match=what):
        probes.get_function(f"divergent_mma<{mode}>")((1,), (32,), (np.zeros(32, np.float32),))


def _small_ints(rng, shape, dtype):
    return rng.integers(-4, 5, shape).astype(dtype)  # every product and sum exact


def test_mma_f16_matches_a_plain_gemm_and_catches_a_planted_layout(probes, planted):
    rng = np.random.default_rng(0)
    a, b = _small_ints(rng, (16, 16), np.float16), _small_ints(rng, (16, 8), np.float16)
    want = a.astype(np.float64) @ b.astype(np.float64)
    for module, right in ((probes, True), (planted, False)):
        d = np.zeros((16, 8), np.float32)
        module.get_function("probe_f16")((1,), (32,), (a, b, d))
        assert np.array_equal(d, want) == right


def test_mma_tf32_matches_a_plain_gemm_and_catches_a_planted_layout(probes, planted):
    rng = np.random.default_rng(1)
    a, b = _small_ints(rng, (16, 8), np.float32), _small_ints(rng, (8, 8), np.float32)
    want = a.astype(np.float64) @ b.astype(np.float64)
    for module, right in ((probes, True), (planted, False)):
        d = np.zeros((16, 8), np.float32)
        module.get_function("probe_tf32")((1,), (32,), (a, b, d))
        assert np.array_equal(d, want) == right


def test_mma_tf32_reads_only_the_tf32_bits(probes):
    # operands round to 10 mantissa bits first: 1 + 2^-12 is 1 in TF32
    a = np.zeros((16, 8), np.float32)
    b = np.zeros((8, 8), np.float32)
    a[0, 0] = 1 + 2.0**-12
    b[0, 0] = 3.0
    d = np.zeros((16, 8), np.float32)
    probes.get_function("probe_tf32")((1,), (32,), (a, b, d))
    assert d[0, 0] == 3.0


def _rna_tf32(x: np.ndarray) -> np.ndarray:
    """cvt.rna.tf32.f32 from its definition: the nearer of the two TF32 values
    around x (10 mantissa bits), the one farther from zero on a tie."""
    out = np.empty(x.shape, np.uint32)
    for i, v in enumerate(x):
        if not np.isfinite(v):
            out[i] = np.float32(v).view(np.uint32) if np.isinf(v) else 0x7FFFFFFF
            continue
        bits = np.float32(v).view(np.uint32)
        lo = np.uint32(bits & 0xFFFFE000)                       # toward zero
        hi = np.uint32(lo + 0x2000)                             # away from zero (may reach infinity)
        lo_v, hi_v = float(lo.view(np.float32)), float(hi.view(np.float32))
        d_lo, d_hi = abs(float(v) - lo_v), abs(hi_v - float(v)) if np.isfinite(hi_v) else None
        if d_hi is None:  # past the largest TF32: round to nearest against 2^128
            d_hi = abs(2.0**128 * float(np.sign(v)) - float(v))
        out[i] = hi if d_hi <= d_lo else lo
    return out


def test_tf32_rounding_is_cvt_rna(probes):
    rng = np.random.default_rng(2)
    x = np.concatenate([
        rng.standard_normal(200).astype(np.float32) * 10.0 ** rng.integers(-30, 30, 200),
        (np.arange(1, 40, dtype=np.uint32) << 13 | 0x1000).view(np.float32),   # exact ties
        -(np.arange(1, 40, dtype=np.uint32) << 13 | 0x1000).view(np.float32),
        np.array([0x7F7FFFFF, 0x7F7FF000, 0x7F7FEFFF, 1, 0x1FFF, 0x00801000], np.uint32).view(np.float32),
        np.array([np.inf, -np.inf, 0.0, -0.0, np.float32(2**-149)], np.float32),
    ]).astype(np.float32)
    out = np.zeros(x.shape, np.uint32)
    probes.get_function("round_tf32")((-(-x.size // 64),), (64,), (x, out, np.int32(x.size)))
    np.testing.assert_array_equal(out, _rna_tf32(x))
    nan = np.array([np.nan], np.float32)
    probes.get_function("round_tf32")((1,), (32,), (nan, out, np.int32(1)))
    assert np.isnan(out[:1].view(np.float32)).all()


@pytest.mark.parametrize("num", [1, 2, 4])
def test_ldmatrix_gives_each_lane_its_fragment_and_trans_transposes(probes, num):
    m = np.arange(256, dtype=np.uint16) * 3 + 1
    mats = m.reshape(4, 8, 8)
    got = {}
    for trans in ("false", "true"):
        out = np.zeros(32 * num, np.uint32)
        probes.get_function(f"load_matrices<{num}, {trans}>")((1,), (32,), (m, out))
        got[trans] = out.reshape(32, num)
    for lane in range(32):
        g, t = divmod(lane, 4)
        for j in range(num):
            lo, hi = int(mats[j, g, 2 * t]), int(mats[j, g, 2 * t + 1])
            assert got["false"][lane, j] == lo | hi << 16
            lo, hi = int(mats[j, 2 * t, g]), int(mats[j, 2 * t + 1, g])  # of the transpose
            assert got["true"][lane, j] == lo | hi << 16


def test_cp_async_copies_and_zero_fills(probes):
    x = np.arange(1, 257, dtype=np.float32)
    for src_bytes, keep in ((16, 4), (8, 2), (0, 0)):
        y = np.full(256, np.nan, np.float32)
        probes.get_function("async_copy<0>")((1,), (64,), (x, y, np.int32(src_bytes)))
        want = x.reshape(64, 4).copy()
        want[:, keep:] = 0
        np.testing.assert_array_equal(y.reshape(64, 4), np.roll(want, -1, axis=0))


@pytest.mark.parametrize("mode, what", [(1, "has not waited for it"), (2, "data race"), (3, "has not waited for it"),
                                        (4, "data race|before the cp.async")])
def test_a_read_before_the_copy_completes_is_reported(probes, mode, what):
    x = np.arange(256, dtype=np.float32)
    y = np.zeros(256, np.float32)
    with pytest.raises(SimRaceError, match=what):
        probes.get_function(f"async_copy<{mode}>")((1,), (64,), (x, y, np.int32(16)))


# ---- implicit_gemm_tc against the reference ------------------------------------------------
CASES = [
    # (x shape, w shape, params): tiles, stages, packing and geometry at their edges
    ((2, 5, 9, 10), (6, 5, 3, 3), dict(padding=1)),                              # channels below one chunk
    ((1, 40, 12, 13), (136, 40, 3, 3), dict(padding=1)),                         # N tiles 2, K stages > 3
    ((3, 9, 11, 12), (7, 9, 3, 3), dict(stride=2, padding=(2, 0), dilation=(1, 2))),  # M past one tile
    ((1, 3, 4, 5), (2, 3, 7, 9), dict(padding=(3, 4))),                          # kernel wider than the input
    ((1, 2, 5, 5), (3, 2, 2, 2), dict(stride=4, padding=((6, 0), (0, 1)))),      # stride and padding past it
    ((1, 4, 30), (3, 4, 3), dict(dilation=9, padding=4)),                        # large dilation, 1-D
    ((1, 9, 7), (3, 9, 3), dict(padding=2, padding_mode="reflect")),
    ((1, 3, 6, 5), (4, 3, 3, 3), dict(padding=1, padding_mode="circular", stride=(2, 1))),
    ((1, 2, 4, 5, 6), (3, 2, 2, 3, 2), dict(stride=(1, 2, 1), padding=1)),       # 3-D
    ((2, 36, 3, 35), (5, 36, 3, 3), dict(padding=(1, 2), padding_mode="replicate")),  # 2 x 2 packing tiles
]


def _passes(x, w, b, **kw):
    rng = np.random.default_rng(7)
    tc = dict(backend="cuda-sim", algorithm="implicit_gemm_tc")
    y = co.conv(x, w, b, **tc, **kw)
    gy = rng.standard_normal(y.shape).astype(x.dtype)
    return [
        ("fwd", y, co.conv(x, w, b, backend="numpy", **kw)),
        ("dgrad", co.conv_grad_input(gy, w, x.shape, **tc, **kw), co.conv_grad_input(gy, w, x.shape, backend="numpy", **kw)),
        ("wgrad", co.conv_grad_weight(x, gy, w.shape, **tc, **kw), co.conv_grad_weight(x, gy, w.shape, backend="numpy", **kw)),
    ]


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_implicit_gemm_tc_matches_the_reference(case, dtype):
    xs, ws, kw = CASES[case]
    rng = np.random.default_rng(case)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    for name, out, ref in _passes(x, w, b, **kw):
        assert out.dtype == np.dtype(dtype) and out.shape == ref.shape, name
        assert_close(out, ref, dtype)


def test_conv_transpose_runs_on_the_dgrad_kernel():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 5, 4)).astype(np.float32)
    w = rng.standard_normal((6, 3, 4, 4)).astype(np.float32)
    kw = dict(stride=2, padding=1, output_padding=1)
    out = co.conv_transpose(x, w, backend="cuda-sim", algorithm="implicit_gemm_tc", **kw)
    assert_close(out, co.conv_transpose(x, w, backend="numpy", **kw), "float32")


def test_float32_accuracy_and_the_opt_ins(monkeypatch):
    # the default (three-piece split, six products) meets float32's tolerance;
    # 3xTF32 and TF32 are opt-ins held to their documented tolerances, and
    # validation mode applies those (implementation.tolerance)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 24, 8, 8)).astype(np.float32)
    w = rng.standard_normal((8, 24, 3, 3)).astype(np.float32)
    ref = co.conv(x, w, padding=1, backend="numpy")
    tc = dict(padding=1, backend="cuda-sim", algorithm="implicit_gemm_tc")
    assert_close(co.conv(x, w, **tc), ref, "float32")
    monkeypatch.setattr(config, "validation", True)
    monkeypatch.setattr(config, "tf32x3", True)
    three = co.conv(x, w, **tc)
    assert relative_error(three, ref) <= implicit_gemm_tc.TF32X3_TOLERANCE
    monkeypatch.setattr(config, "allow_tf32", True)
    fast = co.conv(x, w, **tc)
    assert_close(fast, ref, "float16")
    assert relative_error(fast, ref) > 1e-5, "one TF32 product per step is not float32-accurate: TF32 was not used"


def test_a_cancelling_sum_meets_float32_where_3xtf32_does_not(monkeypatch):
    # found by the extreme fuzz: dw = 0.3456 * -1.3366 + -1.3032 * -0.3516 = -0.00371
    # (products 124 times the result).  3xTF32's products err by about 2^-22 and
    # miss 1e-5; the default's are exact.
    x = np.array([[[0.34558418], [0.0], [0.0]], [[-1.3031572], [0.0], [0.0]]], np.float32)
    dy = np.array([[[0.0], [-1.3366427]], [[0.0], [-0.35161713]]], np.float32)
    ref = co.conv_grad_weight(x, dy, (2, 3, 1), backend="numpy")
    tc = dict(backend="cuda-sim", algorithm="implicit_gemm_tc")
    assert_close(co.conv_grad_weight(x, dy, (2, 3, 1), **tc), ref, "float32")
    monkeypatch.setattr(config, "tf32x3", True)
    assert relative_error(co.conv_grad_weight(x, dy, (2, 3, 1), **tc), ref) > 1e-5


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_infinities_and_nans_propagate_as_in_the_reference(dtype):
    # 3xTF32's correction terms must not turn Inf * 0 into NaN where the reference has Inf
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 3, 6, 6)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    x[0, 0, 2, 2] = np.inf
    x[0, 1, 4, 1] = np.nan
    x[0, 2, 0, 5] = -np.inf
    kw = dict(padding=1)
    out = co.conv(x, w, backend="cuda-sim", algorithm="implicit_gemm_tc", **kw)
    ref = co.conv(x, w, backend="numpy", **kw)
    assert np.isinf(ref).any() and np.isnan(ref).any()
    assert_close(out, ref, dtype)
    w[1, 2, 0, 0] = np.inf  # dgrad: a non-finite weight must reach only the inputs it touches
    gy = rng.standard_normal(ref.shape).astype(dtype)
    gx = co.conv_grad_input(gy, w, x.shape, backend="cuda-sim", algorithm="implicit_gemm_tc", **kw)
    assert_close(gx, co.conv_grad_input(gy, w, x.shape, backend="numpy", **kw), dtype)


def test_split_k_wgrad_and_determinism(monkeypatch):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 4, 10, 9)).astype(np.float16)
    w_shape = (5, 4, 3, 3)
    gy = rng.standard_normal((3, 5, 8, 7)).astype(np.float16)
    ref = co.conv_grad_weight(x, gy, w_shape, backend="numpy")
    monkeypatch.setattr(config, "cuda_min_split", 32)
    q = ConvProblem.forward(n=3, c_in=4, c_out=5, in_size=(10, 9), kernel=(3, 3), stride=(1, 1),
                            padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, dtype="float16",
                            op="wgrad").expand(3).canonical()
    splits, chunk = implicit_gemm_tc.wgrad_splits(q)
    assert splits > 1 and chunk % implicit_gemm_tc.stage_depth("float16") == 0
    first = co.conv_grad_weight(x, gy, w_shape, backend="cuda-sim", algorithm="implicit_gemm_tc")
    second = co.conv_grad_weight(x, gy, w_shape, backend="cuda-sim", algorithm="implicit_gemm_tc")
    assert_close(first, ref, "float16")
    np.testing.assert_array_equal(first, second)


def test_supports_and_selection():
    x = np.zeros((1, 8, 6, 6), np.float16)
    w = np.zeros((8, 8, 3, 3), np.float16)
    assert co.explain(x, w, backend="cuda-sim").chosen.algorithm == "implicit_gemm_tc"
    plan = co.explain(x, w.reshape(8, 4, 6, 3)[:, :, :3], groups=2, backend="cuda-sim")
    reasons = dict((impl.algorithm, r) for impl, r in plan.considered)
    assert any("ungrouped" in r for r in reasons["implicit_gemm_tc"])
    plan = co.explain(x.astype(np.float64), w.astype(np.float64), backend="cuda-sim")
    assert plan.chosen.algorithm != "implicit_gemm_tc"


def test_older_simulator_targets_are_refused(monkeypatch):
    monkeypatch.setattr(config, "sim_default_arch", "sm_75")
    x = np.zeros((1, 8, 6, 6), np.float32)
    w = np.zeros((8, 8, 3, 3), np.float32)
    plan = co.explain(x, w, backend="cuda-sim")
    reasons = dict((impl.algorithm, r) for impl, r in plan.considered)
    assert any("sm_80" in r and "sm_75" in r for r in reasons["implicit_gemm_tc"])
    assert plan.chosen.algorithm == "implicit_gemm"


@pytest.mark.parametrize("dtype, xs, ws, kw", [
    # reflect dgrad runs on the materialized problem in float32: bigger than the user's float16 one
    ("float16", (2, 8, 16, 16), (8, 8, 3, 3), dict(padding=(1, 1), padding_mode="reflect")),
    # a stride phase packs more than the whole problem's extent (large padding against the input)
    ("float32", (1, 3, 4, 4), (2, 3, 3, 2), dict(stride=(5, 2), dilation=(2, 4), padding=((1, 3), (5, 4)))),
])
def test_workspace_bytes_covers_what_dgrad_packs(dtype, xs, ws, kw, monkeypatch):
    sizes = []

    def recording(fn):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            sizes.append(out.nbytes)
            return out
        return wrapped

    monkeypatch.setattr(implicit_gemm_tc, "_pack_activation", recording(implicit_gemm_tc._pack_activation))
    monkeypatch.setattr(implicit_gemm_tc, "_pack_weight", recording(implicit_gemm_tc._pack_weight))
    rng = np.random.default_rng(9)
    w = rng.standard_normal(ws).astype(dtype)
    pad = kw["padding"]
    pad = tuple(p if isinstance(p, tuple) else (p, p) for p in pad)
    p = ConvProblem.forward(n=xs[0], c_in=xs[1], c_out=ws[0], in_size=xs[2:], kernel=ws[2:],
                            stride=kw.get("stride", (1, 1)), padding=pad, dilation=kw.get("dilation", (1, 1)),
                            groups=1, dtype=dtype, padding_mode=kw.get("padding_mode", "zeros"), op="dgrad")
    dy = rng.standard_normal(p.y_shape).astype(dtype)
    gx = co.conv_grad_input(dy, w, xs, backend="cuda-sim", algorithm="implicit_gemm_tc", **kw)
    assert_close(gx, co.conv_grad_input(dy, w, xs, backend="numpy", **kw), dtype)
    per_launch = [a + b for a, b in zip(sizes[::2], sizes[1::2])]  # (activation, weight) per stride-1 launch
    assert per_launch and max(per_launch) <= implicit_gemm_tc.workspace_bytes(p)


def test_packing_and_mainloop_grid_stride(monkeypatch):
    """One block for every grid-stride launch (the packing kernels loop over
    their tiles): same result as the reference."""
    from convops import config
    monkeypatch.setattr(config, "cuda_max_grid_blocks", 1)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 36, 3, 35)).astype(np.float16)
    w = rng.standard_normal((5, 36, 3, 3)).astype(np.float16)
    for name, out, ref in _passes(x, w, None, padding=1, padding_mode="reflect"):
        assert_close(out, ref, "float16")
