"""The SIMT simulator against NumPy, and the bugs it must catch."""

import numpy as np
import pytest

from convops import sim
from convops.sim import SimModule

KERNELS = r'''
#include <cuda_fp16.h>
__global__ void axpy(float a, const float* __restrict__ x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}

// 32x32 tiles through shared memory; block (32, 8)
__global__ void transpose(const float* in, float* out, int rows, int cols) {
    __shared__ float tile[32][33];
    int x = blockIdx.x * 32 + threadIdx.x, y = blockIdx.y * 32 + threadIdx.y;
    for (int j = 0; j < 32; j += 8)
        if (x < cols && y + j < rows) tile[threadIdx.y + j][threadIdx.x] = in[(y + j) * cols + x];
    __syncthreads();
    x = blockIdx.y * 32 + threadIdx.x; y = blockIdx.x * 32 + threadIdx.y;
    for (int j = 0; j < 32; j += 8)
        if (x < rows && y + j < cols) out[(y + j) * rows + x] = tile[threadIdx.x][threadIdx.y + j];
}

// block sum: warp shuffles, then one value per warp in dynamic shared memory
__global__ void block_sum(const float* in, float* out, int n) {
    extern __shared__ float warp_sums[];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? in[i] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < blockDim.x / 32 ? warp_sums[lane] : 0.0f;
        for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
        if (lane == 0) out[blockIdx.x] = v;
    }
}

__global__ void histogram(const int* values, int n, unsigned int* bins) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) atomicAdd(&bins[values[i]], 1u);
}

template <typename T>
__global__ void scale(T* data, T factor, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) data[i] = data[i] * factor;
}

// 3-D grid of 3-D blocks: out[z][y][x] = linear index
__global__ void index3d(int* out, int X, int Y, int Z) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int z = blockIdx.z * blockDim.z + threadIdx.z;
    if (x < X && y < Y && z < Z) out[(z * Y + y) * X + x] = (z * Y + y) * X + x;
}

__global__ void half_axpy(const __half* x, __half* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __float2half(a * __half2float(x[i]) + __half2float(y[i]));
}

__global__ void float4_add(const float4* a, const float4* b, float4* c, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { float4 u = a[i], v = b[i]; c[i] = make_float4(u.x + v.x, u.y + v.y, u.z + v.z, u.w + v.w); }
}

__global__ void votes(const int* flags, unsigned int* out) {
    int lane = threadIdx.x;
    unsigned int b = __ballot_sync(0xffffffffu, flags[lane]);
    int any = __any_sync(0xffffffffu, flags[lane]);
    int all = __all_sync(0xffffffffu, flags[lane]);
    int all_true = __all_sync(0xffffffffu, 1);
    int count = __syncthreads_count(flags[lane]);
    if (lane == 0) { out[0] = b; out[1] = any; out[2] = all; out[3] = count; out[4] = all_true; }
}

// warp scan with __shfl_up_sync, broadcast with __shfl_sync, __syncwarp, __activemask
__global__ void warp_scan(const int* in, int* out, unsigned int* mask) {
    int lane = threadIdx.x % 32;
    int v = in[threadIdx.x];
    for (int d = 1; d < 32; d <<= 1) {
        int up = __shfl_up_sync(0xffffffffu, v, d);
        if (lane >= d) v += up;
    }
    __syncwarp();
    int first = __shfl_sync(0xffffffffu, v, 0);
    out[threadIdx.x] = v * 1000 + first;
    unsigned int converged = __activemask();           // the whole warp
    if (threadIdx.x == 0) mask[0] = converged;
    if (threadIdx.x == 1) mask[1] = __activemask();    // only this lane takes the branch
}

__global__ void math(const float* x, float* y) {
    int i = threadIdx.x;
    float a = x[i];
    y[i] = fmaf(a, 2.0f, 1.0f) + __fmaf_rn(a, a, 0.0f) + rsqrtf(a + 2.0f) + __expf(-a) + max(a, 0.5f) + min(i, 3)
         + sqrtf(fabsf(a)) + __ldg(&x[i]);
}

__global__ void wide_index(long long* out) {
    long long i = (long long)blockIdx.x * 3000000000LL + threadIdx.x;   // past 2^31
    out[blockIdx.x * blockDim.x + threadIdx.x] = i;
}

__global__ void atomics(int* i32, unsigned int* u32, unsigned long long* u64, long long* i64, unsigned short* u16,
                        float* f32, double* f64) {
    int t = threadIdx.x;
    atomicAdd(&i32[0], 1); atomicSub(&i32[1], 2); atomicMax(&i32[2], t); atomicMin(&i32[3], -t);
    if (t == 0) atomicExch(&i32[4], 42);
    atomicOr(&i32[5], 1 << (t % 31));
    atomicAdd(&u32[0], 3u); atomicMax(&u32[1], (unsigned int)t); atomicCAS(&u32[2], 0u, 7u);
    atomicAdd(&u64[0], 1ull << 33); atomicMax(&u64[1], (unsigned long long)t);
    atomicMax(&i64[0], (long long)t << 40); atomicMin(&i64[1], -((long long)t << 40)); atomicXor(&i64[2], 1ll << 40);
    atomicCAS(&u16[0], (unsigned short)0, (unsigned short)5);
    atomicAdd(&f32[0], 0.5f); if (t == 0) atomicExch(&f32[1], 1.5f);
    atomicAdd(&f64[0], 0.25);
}

// planted bugs
__global__ void reverse_no_sync(const float* in, float* out) {   // missing __syncthreads
    __shared__ float s[256];
    s[threadIdx.x] = in[blockIdx.x * 256 + threadIdx.x];
    out[blockIdx.x * 256 + threadIdx.x] = s[255 - threadIdx.x];
}
__global__ void write_past_end(float* y, int n) {                 // i <= n
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 1.0f;
}
__global__ void divergent_barrier(float* y) {                     // barrier in a branch
    if (threadIdx.x < 16) __syncthreads();
    y[threadIdx.x] = 1.0f;
}
__global__ void different_barriers(float* y) {                    // two barriers, one per branch
    if (threadIdx.x % 2) { __syncthreads(); } else { __syncthreads(); }
    y[threadIdx.x] = 1.0f;
}
__global__ void skips_last(float* y, int n) {                     // never writes y[n - 1]
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n - 1) y[i] = 2.0f;
}
'''


@pytest.fixture(scope="module")
def module():
    return SimModule(KERNELS, name_expressions=("scale<float>", "scale<double>"))


def test_elementwise(module, rng):
    n = 1000
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    expect = 2.5 * x + y
    module.get_function("axpy")((4,), (256,), (np.float32(2.5), x, y, np.int32(n)))
    np.testing.assert_array_equal(y, expect)


def test_tiled_transpose(module, rng):
    a = rng.standard_normal((70, 45)).astype(np.float32)
    out = np.zeros((45, 70), np.float32)
    module.get_function("transpose")((2, 3), (32, 8), (a, out, np.int32(70), np.int32(45)))
    np.testing.assert_array_equal(out, a.T)


def test_block_reduction(module, rng):
    x = rng.standard_normal(1000).astype(np.float32)
    out = np.zeros(4, np.float32)
    module.get_function("block_sum")((4,), (256,), (x, out, np.int32(1000)), shared_mem=8 * 4)
    np.testing.assert_allclose(out, [x[i * 256:(i + 1) * 256].sum() for i in range(4)], rtol=1e-5)


def test_atomic_histogram(module, rng):
    values = rng.integers(0, 16, 5000).astype(np.int32)
    bins = np.zeros(16, np.uint32)
    module.get_function("histogram")((20,), (256,), (values, np.int32(5000), bins))
    np.testing.assert_array_equal(bins, np.bincount(values, minlength=16))


@pytest.mark.parametrize("expr, dtype", [("scale<float>", np.float32), ("scale<double>", np.float64)])
def test_templates_and_64bit_index(module, expr, dtype):
    data = np.arange(3000, dtype=dtype)
    module.get_function(expr)((12,), (256,), (data, dtype(3), np.int64(3000)))
    np.testing.assert_array_equal(data, 3 * np.arange(3000, dtype=dtype))


def test_3d_grid_and_block(module):
    X, Y, Z = 9, 7, 5
    out = np.full((Z, Y, X), -1, np.int32)
    module.get_function("index3d")((3, 2, 2), (4, 4, 3), (out, np.int32(X), np.int32(Y), np.int32(Z)))
    np.testing.assert_array_equal(out.ravel(), np.arange(X * Y * Z))


def test_half(module, rng):
    x = rng.standard_normal(100).astype(np.float16)
    y = rng.standard_normal(100).astype(np.float16)
    expect = (0.5 * x.astype(np.float32) + y.astype(np.float32)).astype(np.float16)
    module.get_function("half_axpy")((1,), (128,), (x, y, np.float32(0.5), np.int32(100)))
    np.testing.assert_array_equal(y, expect)


def test_vector_types(module, rng):
    a = rng.standard_normal((10, 4)).astype(np.float32)
    b = rng.standard_normal((10, 4)).astype(np.float32)
    c = np.zeros((10, 4), np.float32)
    module.get_function("float4_add")((1,), (32,), (a, b, c, np.int32(10)))
    np.testing.assert_array_equal(c, a + b)


def test_votes(module):
    flags = np.zeros(32, np.int32)
    flags[[1, 5, 31]] = 1
    out = np.zeros(5, np.uint32)
    module.get_function("votes")((1,), (32,), (flags, out))
    assert out.tolist() == [(1 << 1) | (1 << 5) | (1 << 31), 1, 0, 3, 1]


def test_warp_scan_and_broadcast(module):
    x = np.arange(64, dtype=np.int32) % 7
    out = np.zeros(64, np.int32)
    mask = np.zeros(2, np.uint32)
    module.get_function("warp_scan")((1,), (64,), (x, out, mask))
    scan = np.concatenate([np.cumsum(x[:32]), np.cumsum(x[32:])])
    first = np.repeat(scan[[0, 32]], 32)
    np.testing.assert_array_equal(out, scan * 1000 + first)
    assert mask[0] == 0xFFFFFFFF and mask[1] == 1 << 1


def test_math_intrinsics(module, rng):
    x = rng.uniform(-1, 1, 32).astype(np.float32)
    y = np.zeros(32, np.float32)
    module.get_function("math")((1,), (32,), (x, y))
    i = np.arange(32)
    expect = (x * 2 + 1) + x * x + 1 / np.sqrt(x + 2) + np.exp(-x) + np.maximum(x, 0.5) + np.minimum(i, 3) \
        + np.sqrt(np.abs(x)) + x
    np.testing.assert_allclose(y, expect, rtol=1e-5)


def test_concurrent_builds_share_the_cache(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor
    monkeypatch.setenv("CONVOPS_SIM_CACHE", str(tmp_path))
    src = "__global__ void fill(int* y) { y[threadIdx.x] = 7; }\n"
    with ThreadPoolExecutor(4) as pool:
        modules = list(pool.map(lambda _: SimModule(src), range(4)))
    assert len(list(tmp_path.glob("*.exe"))) == 1
    y = np.zeros(8, np.int32)
    modules[3].get_function("fill")(1, 8, (y,))
    assert (y == 7).all()


def test_64bit_index_arithmetic(module):
    out = np.zeros(3 * 4, np.int64)
    module.get_function("wide_index")((3,), (4,), (out,))
    np.testing.assert_array_equal(out, [b * 3_000_000_000 + t for b in range(3) for t in range(4)])


def test_atomics_every_type(module):
    i32 = np.zeros(6, np.int32)
    u32 = np.zeros(3, np.uint32)
    u64 = np.zeros(2, np.uint64)
    i64 = np.zeros(3, np.int64)
    u16 = np.zeros(1, np.uint16)
    f32 = np.zeros(2, np.float32)
    f64 = np.zeros(1, np.float64)
    kernel = module.get_function("atomics")
    kernel((4,), (64,), (i32, u32, u64, i64, u16, f32, f64), check_races=False)  # float atomics: order dependent
    n = 256
    assert i32.tolist() == [n, -2 * n, 63, -63, 42, 2**31 - 1]
    assert u32.tolist() == [3 * n, 63, 7]
    assert u64.tolist() == [n << 33, 63]
    assert i64.tolist() == [63 << 40, -(63 << 40), 0]
    assert u16.tolist() == [5]
    assert f32.tolist() == [n * 0.5, 1.5]
    assert f64.tolist() == [n * 0.25]


# ---- planted bugs: each reported by the simulator itself -------------------------------
def test_missing_syncthreads_is_a_race(module, rng):
    x = rng.standard_normal(512).astype(np.float32)
    out = np.zeros(512, np.float32)
    with pytest.raises(sim.SimRaceError, match=r"reverse_no_sync: data race on __shared__ "
                                               r"reverse_no_sync\(float const\*, float\*\)::s at byte offset "
                                               r"\d+: a write by thread \(\d+,0,0\) of block \(0,0,0\) at "
                                               r"<sim-source>:\d+ .*conflicts with a read by thread"):
        module.get_function("reverse_no_sync")((2,), (256,), (x, out))
    assert not out.any()  # nothing is copied back from a failed launch


def test_out_of_bounds_write(module):
    y = np.zeros(1000, np.float32)
    with pytest.raises(sim.SimOutOfBoundsError, match=r"argument 0 .*4000 bytes\) past the end, at byte offset 4000"):
        module.get_function("write_past_end")((4,), (256,), (y, np.int32(1000)))


def test_divergent_barrier(module):
    y = np.zeros(32, np.float32)
    with pytest.raises(sim.SimBarrierError, match=r"barrier divergence"):
        module.get_function("divergent_barrier")((1,), (32,), (y,))


def test_threads_at_different_barriers(module):
    y = np.zeros(32, np.float32)
    with pytest.raises(sim.SimBarrierError, match=r"threads wait at different __syncthreads \(lines \d+ and \d+\)"):
        module.get_function("different_barriers")((1,), (32,), (y,))


def test_scalar_of_wrong_width(module):
    y = np.zeros(10, np.float32)
    with pytest.raises(sim.SimArgumentError, match=r"axpy argument 3: the kernel's parameter is 4 bytes, got int64 "
                                                   r"\(8 bytes\)"):
        module.get_function("axpy")((1,), (32,), (np.float32(1), y, y, np.int64(10)))
    with pytest.raises(TypeError, match=r"expected a NumPy scalar of 4 bytes, got int"):
        module.get_function("axpy")((1,), (32,), (np.float32(1), y, y, 10))
    with pytest.raises(TypeError, match=r"axpy takes 4 arguments, got 3"):
        module.get_function("axpy")((1,), (32,), (np.float32(1), y, y))


def test_unwritten_output_is_visible(module):
    from convops.sim.runtime import SimRuntime
    rt = SimRuntime()
    y = rt.empty(100, np.float32)
    module.get_function("skips_last")((1,), (128,), (y, np.int32(100)))
    assert np.all(y[:99] == 2.0) and np.isnan(y[99])


def test_compile_error_names_file_and_line(tmp_path):
    src = tmp_path / "broken.cu"
    src.write_text("__global__ void k(float* y) {\n  y[0] = undefined_name;\n}\n")
    with pytest.raises(sim.SimCompileError, match=r"broken\.cu:2.*undefined_name"):
        SimModule(path=src)


def test_bad_launch_configuration(module):
    y = np.zeros(4, np.float32)
    with pytest.raises(sim.SimLaunchError, match=r"at most 1024 threads"):
        module.get_function("axpy")((1,), (32, 33), (np.float32(1), y, y, np.int32(4)))
    with pytest.raises(sim.SimLaunchError, match=r"no kernel 'scale<int>'"):
        module.get_function("scale<int>")
    assert issubclass(sim.SimRaceError, sim.SimError) and issubclass(sim.SimArgumentError, TypeError)


def test_runtime_seam_interfaces_match():
    """Launchers are written once against the seam: both runtimes offer the same methods."""
    import inspect

    from convops.cuda.runtime import CupyRuntime
    from convops.sim.runtime import SimRuntime
    methods = ["empty", "zeros", "to_device", "to_host", "module", "get_function", "launch", "synchronize"]
    for name in methods:
        a, b = getattr(SimRuntime, name), getattr(CupyRuntime, name)
        assert list(inspect.signature(a).parameters) == list(inspect.signature(b).parameters), name


# ---- fidelity: the simulator compiles what NVRTC compiles, and refuses what it refuses ----
def _nvrtc(source, arch="sm_75"):
    """Compile ``source`` with the real NVRTC (offline, cuda-bindings), with
    cuda_fp16.h on the include path (the copy Numba ships, as CuPy adds the
    toolkit's); the simulator's test kernels must be CUDA, not just C++."""
    import os
    from pathlib import Path

    import numba

    from helpers import nvrtc_gate
    pytest.importorskip("cuda.bindings.nvrtc", reason="needs cuda-bindings (pip install 'convops[nvrtc]')")
    headers = Path(numba.__file__).parent / "cuda"
    if not (headers / "cuda_fp16.h").exists():
        home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
        headers = Path(home) / "include"
    assert (headers / "cuda_fp16.h").exists(), "no cuda_fp16.h to compile against"
    return nvrtc_gate().compile_text(source, "test_kernels.cu", [], [f"-I{headers}", "-std=c++17"], arch)


def test_the_test_kernels_compile_under_nvrtc():
    # the GPU test runs KERNELS on both; found on the H100 (2026-11-23): the simulator
    # accepted __half without <cuda_fp16.h>, atomicMax on floats and atomicExch on doubles
    for arch in ("sm_75", "sm_90"):
        _nvrtc(KERNELS, arch)


ATOMIC_TYPES = ("int", "unsigned int", "long long", "unsigned long long", "float", "double", "unsigned short")
ATOMIC_OPS = ("atomicAdd", "atomicSub", "atomicExch", "atomicMin", "atomicMax", "atomicAnd", "atomicOr", "atomicXor",
              "atomicCAS", "atomicInc", "atomicDec")


def _atomic_traits():
    """C++ detecting, for every op and type, whether the call has an overload."""
    lines = ["template <class T> __device__ T&& declval_();",  # NVRTC has no <type_traits> of its own
             "template <class...> struct void_ { typedef void type; };",
             "template <bool B> struct bool_ { static constexpr bool value = B; };"]
    for op in ATOMIC_OPS:
        args = "declval_<T>(), declval_<T>()" if op == "atomicCAS" else "declval_<T>()"
        lines.append(f"template <class T, class = void> struct has_{op} : bool_<false> {{}};\n"
                     f"template <class T> struct has_{op}<T, typename void_<decltype({op}(declval_<T*>(), {args}))>"
                     f"::type> : bool_<true> {{}};")
    return "\n".join(lines)


def test_atomic_overloads_are_cudas():
    """The simulator declares an atomic for exactly the types NVRTC does: the
    simulator's answers, run as a kernel, are asserted in a source NVRTC compiles."""
    table = [f"has_{op}<{t}>::value" for op in ATOMIC_OPS for t in ATOMIC_TYPES]
    source = _atomic_traits() + "\n__global__ void table(int* out) {\n" + "".join(
        f"  out[{i}] = {v};\n" for i, v in enumerate(table)) + "}\n"
    out = np.full(len(table), -1, np.int32)
    SimModule(source).get_function("table")((1,), (1,), (out,))
    assert set(out.tolist()) <= {0, 1}
    claims = "".join(f'static_assert({v} == {str(bool(b)).lower()}, "{v}: {b} in the simulator");\n'
                     for v, b in zip(table, out.tolist()))
    _nvrtc(_atomic_traits() + "\n" + claims)
    # and the table is not vacuous: CUDA's integer atomics and float add are there, float max is not
    found = dict(zip(table, out.tolist()))
    assert found["has_atomicAdd<float>::value"] == 1 and found["has_atomicMax<float>::value"] == 0
    assert found["has_atomicCAS<unsigned short>::value"] == 1 and found["has_atomicExch<double>::value"] == 0


def test_half_needs_cuda_fp16_h_as_under_nvrtc():
    kernel = "__global__ void k(__half* p) { p[0] = __float2half(1.0f); }\n"
    with pytest.raises(sim.SimCompileError, match="__half"):
        SimModule(kernel).get_function("k")
    out = np.zeros(1, np.float16)
    SimModule("#include <cuda_fp16.h>\n" + kernel).get_function("k")((1,), (1,), (out,))
    assert out[0] == 1


def _has_gpu():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _has_gpu(), reason="needs a CUDA device")
def test_same_kernel_on_gpu_and_simulator():
    from convops.cuda.runtime import CupyRuntime
    from convops.sim.runtime import SimRuntime
    results = []
    for rt in (SimRuntime(), CupyRuntime()):
        mod = rt.module(KERNELS, name_expressions=("scale<float>",))
        y = rt.to_device(np.arange(100, dtype=np.float32))
        rt.launch(rt.get_function(mod, "scale<float>"), (1,), (128,), (y, np.float32(2), np.int64(100)))
        rt.synchronize()
        results.append(rt.to_host(y))
    np.testing.assert_array_equal(*results)
