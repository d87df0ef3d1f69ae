"""Findings of an adversarial review of the simulator, each a test: correct
CUDA that must run clean (no false positives), bugs that must be reported
(no false negatives), inputs that must not kill or hang the caller, and
messages that must name the right thing."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from convops import config, sim
from convops.sim import SimModule
from convops.sim.module import compiler_options, kernel_names

SOURCE = r'''
#include <cuda_fp16.h>
__global__ void bytecopy(const void* src, void* dst, long long n) {          // byte i by thread i
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) ((char*)dst)[i] = ((const char*)src)[i];
}
struct Pair { float a, b; };
__global__ void fields(Pair* p, int n) {                                      // thread 2i: .a, 2i+1: .b
    int t = threadIdx.x;
    if (t / 2 < n) { if (t % 2) p[t / 2].b = 2.0f; else p[t / 2].a = 1.0f; }
}
__global__ void partial_warp_sum(const float* x, float* out, int active) {    // 100 threads: last warp partial
    float v = x[threadIdx.x];
    int lane = threadIdx.x % 32;
    for (int o = 16; o > 0; o >>= 1) {
        float other = __shfl_down_sync(0xffffffffu, v, o);                    // may read an absent lane
        if (lane + o < active) v += other;                                    // ... and throw it away
    }
    if (lane == 0) out[threadIdx.x / 32] = v;
}
__device__ int calls;
__global__ void count_calls(int* out) { if (threadIdx.x == 0 && blockIdx.x == 0) out[0] = atomicAdd(&calls, 1); }
__device__ int table[4];
__global__ void device_overflow(int i) { if (threadIdx.x == 0) { int* p = table; p[i] = 42; } }
__device__ int acc;
__global__ void device_race() { acc = acc + 1; }
extern "C" __global__ void big_a(float* out) {
    __shared__ float s[7000];
    s[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x];
}
extern "C" __global__ void big_b(float* out) {
    __shared__ float s[7000];
    s[threadIdx.x] = 2.0f;
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x];
}
template <typename T>
__global__ void tiled(const T* x, T* out) {
    __shared__ T tile[24000 / sizeof(T)];
    tile[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    out[threadIdx.x] = tile[threadIdx.x];
}
__global__ void mixed(unsigned* count, float* y) {
    atomicAdd(count, 1);                                                      // unsigned* with an int
    y[threadIdx.x] = max(threadIdx.x, 3) + min(1.5f, 2.0);                    // mixed min/max
}
template <typename T>
__global__ void cub_style(const T* x, T* out) {
    extern __shared__ __align__(sizeof(T)) unsigned char smem[];
    T* s = reinterpret_cast<T*>(smem);
    s[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    out[threadIdx.x] = s[blockDim.x - 1 - threadIdx.x];
}
extern __shared__ float file_scope[];
__global__ void uses_file_scope(float* out) {
    file_scope[threadIdx.x] = threadIdx.x * 2.0f;
    __syncthreads();
    out[threadIdx.x] = file_scope[threadIdx.x];
}
__global__ void copy_past(const float* x, float* y, int n) {
    if (threadIdx.x == 0) memcpy(y, x, (n + 6) * sizeof(float));
}
__global__ void set_past(float* y, int n) { if (threadIdx.x == 0) memset(y, 0, (n + 6) * sizeof(float)); }
__global__ void read_then_write(float* x) {                                    // block 0 reads, block 1 writes
    float v = x[0];
    __syncthreads();
    if (blockIdx.x == 1 && threadIdx.x == 0) x[0] = v + 1.0f;
}
__global__ void warp_reads_then_write(float* x, float* out) {
    float v = 0.0f;
    if (threadIdx.x == 32) v = x[0];                                           // warp 1
    __syncwarp();
    if (threadIdx.x == 1 || threadIdx.x == 2) v = x[0];                        // warp 0
    __syncwarp();
    if (threadIdx.x == 0) x[0] = 7.0f;                                         // ordered after lanes 1, 2, not 32
    out[threadIdx.x] = v;
}
__global__ void misaligned_float2(const float2* p, float* out) { float2 v = p[threadIdx.x]; out[threadIdx.x] = v.x + v.y; }
__global__ void via_views(float* x, float* z) {
    if (threadIdx.x == 0) x[9] = 5.0f;
    if (threadIdx.x == 1) z[5] = 7.0f;
}
__global__ void hfma(const __half* a, const __half* b, const __half* c, __half* out) {
    out[threadIdx.x] = __hfma(a[threadIdx.x], b[threadIdx.x], c[threadIdx.x]);
}
__global__ void shared_overrun(float* out, int n) {
    __shared__ float last[64];
    float* p = last;
    for (int i = threadIdx.x; i <= n; i += blockDim.x) p[i] = 0.0f;           // p[64] is past the end
    out[threadIdx.x] = 1.0f;
}
__global__ void spin_on_other_block(volatile int* flag, int* out) {          // waits for the last block
    __shared__ int go;
    if (blockIdx.x + 1 < gridDim.x) {
        while (true) {                                                        // barriers in the loop: no
            if (threadIdx.x == 0) go = flag[0];                               // thread ever finishes
            __syncthreads();
            if (go) break;
            __syncthreads();
        }
        if (threadIdx.x == 0) out[blockIdx.x] = 1;
    } else if (threadIdx.x == 0) {
        atomicExch((int*)flag, 1);
    }
}
__global__ void hang_in_block(int* out, int stuck) {
    if (blockIdx.x == stuck) { while (*(volatile int*)out == 0) {} }
}
__global__ void talk(int* out) {
    if (threadIdx.x == 0) printf("hello from block %d\n", blockIdx.x);
    if (threadIdx.x == 0 && blockIdx.x == 0) out[0] = 1;
}
__global__ void aborts(int* out) { if (threadIdx.x == 1) abort(); out[threadIdx.x] = 1; }
__global__ void a(int* out) { out[threadIdx.x] = 3; }                          // names the stubs once used
__global__ void cap(int* out) { out[threadIdx.x] = 4; }
namespace deep { __global__ void inside(int* out) { out[threadIdx.x] = 5; } }
#define MAKE_KERNEL(NAME) __global__ void NAME(int* out) { out[threadIdx.x] = 6; }
MAKE_KERNEL(from_macro)
// __global__ void commented_out(int* out) {}
#if 0
__global__ void disabled(int* out) {}
#endif
const char* text = "__global__ void in_a_string(int* out)";
'''

NAMES = ("tiled<__half>", "tiled<float>", "cub_style<float>", "from_macro")


@pytest.fixture(scope="module")
def module():
    return SimModule(SOURCE, name_expressions=NAMES)


@pytest.fixture
def k(module):
    return module.get_function


# ---- the caller never dies or hangs --------------------------------------------------------
def test_object_and_foreign_byte_order_arrays_are_rejected(k):
    with pytest.raises(sim.SimArgumentError, match=r"argument 1: a object array holds Python objects"):
        k("bytecopy")((1,), (4,), (np.zeros(4, np.uint8), np.array([object()] * 4), np.int64(4)))
    with pytest.raises(sim.SimArgumentError, match=r"argument 0: >f4 is not in this machine's byte order"):
        k("fields")((1,), (4,), (np.zeros(2, ">f4"), np.int32(2)))


def test_spin_across_barriers_hits_the_watchdog(k, monkeypatch):
    """A block waiting for a later one: the race run has one OS thread; with two,
    blocks 0 and 1 wait for block 2, which never gets one."""
    monkeypatch.setattr(config, "sim_watchdog_seconds", 1.5)
    monkeypatch.setattr(config, "sim_threads", 2)
    for grid, check in ((2, True), (3, False)):
        with pytest.raises(sim.SimTimeoutError, match=r"spin_on_other_block: no progress for 1.5 s \(no thread "
                                                      r"finished\); running: linear block [01]"):
            k("spin_on_other_block")((grid,), (32,), (np.zeros(1, np.int32), np.zeros(3, np.int32)), check_races=check)


def test_the_timeout_names_the_stuck_block(k, monkeypatch):
    monkeypatch.setattr(config, "sim_watchdog_seconds", 1.5)
    monkeypatch.setattr(config, "sim_threads", 2)
    with pytest.raises(sim.SimTimeoutError, match=r"running: linear block 5, linear thread 0"):
        k("hang_in_block")((8,), (32,), (np.zeros(1, np.int32), np.int32(5)), check_races=False)


def test_many_kernels_and_parameters():
    params = ", ".join(f"float* p{i}" for i in range(70))
    source = f"template <int I> __global__ void wide({params}) {{ p69[threadIdx.x] = I; }}\n"
    m = SimModule(source, name_expressions=[f"wide<{i}>" for i in range(40)])
    arrays = [np.zeros(4, np.float32) for _ in range(70)]
    m.get_function("wide<39>")((1,), (4,), tuple(arrays))
    assert (arrays[69] == 39).all()


def test_oversized_parameters_are_a_launch_error():
    m = SimModule("struct Big { char b[40000]; };\n__global__ void big(Big v, char* out) { out[0] = v.b[7]; }\n")
    big = np.zeros((), np.dtype([("b", "u1", 40000)]))
    with pytest.raises(sim.SimLaunchError, match=r"40008 bytes of kernel parameters exceed the limit of 32764"):
        m.get_function("big")((1,), (1,), (big[()], np.zeros(1, np.uint8)))


# ---- correct code runs clean ---------------------------------------------------------------
def test_bytes_of_wider_elements_by_different_threads(k):
    src = np.arange(64, dtype=np.float32)
    dst = np.zeros(64, np.float32)
    k("bytecopy")((1,), (256,), (src, dst, np.int64(256)))
    np.testing.assert_array_equal(dst, src)
    pairs = np.zeros(8, np.complex64)  # two floats per element, written by two threads
    k("fields")((1,), (16,), (pairs, np.int32(8)))
    assert (pairs == 1 + 2j).all()


def test_partial_warp_reading_an_absent_lane(k):
    x = np.ones(100, np.float32)
    out = np.zeros(4, np.float32)
    k("partial_warp_sum")((1,), (100,), (x, out, np.int32(4)))
    np.testing.assert_array_equal(out[3], 4)


def test_device_variables_persist_across_launches_not_runs(k):
    out = np.zeros(1, np.int32)
    seen = []
    for _ in range(3):
        k("count_calls")((2,), (32,), (out,))  # race run and reversed run start from the same state
        seen.append(int(out[0]))
    assert seen == [0, 1, 2]


def test_static_shared_memory_is_charged_to_its_kernel(k):
    """extern "C" kernels and template names spelled unlike the compiler's: 28 KB each, fine."""
    for name in ("big_a", "big_b"):
        out = np.zeros(32, np.float32)
        k(name)((1,), (32,), (out,))
        assert (out == (1 if name == "big_a" else 2)).all()
    for name, dtype in (("tiled<__half>", np.float16), ("tiled<float>", np.float32)):
        x = np.arange(32).astype(dtype)
        out = np.zeros(32, dtype)
        k(name)((1,), (32,), (x, out))
        np.testing.assert_array_equal(out, x)


def test_cuda_forms_that_must_compile(k):
    count, y = np.zeros(1, np.uint32), np.zeros(8, np.float32)
    k("mixed")((1,), (8,), (count, y))
    assert count[0] == 8 and (y == np.maximum(np.arange(8), 3) + 1.5).all()
    x, out = np.arange(16, dtype=np.float32), np.zeros(16, np.float32)
    k("cub_style<float>")((1,), (16,), (x, out), shared_mem=64)
    np.testing.assert_array_equal(out, x[::-1])
    k("uses_file_scope")((1,), (16,), (out,), shared_mem=64)
    np.testing.assert_array_equal(out, 2 * np.arange(16))


def test_kernel_discovery_and_stub_names(k, module):
    assert set(module.names) >= {"a", "cap", "deep::inside", "from_macro"}
    assert not {"commented_out", "disabled", "in_a_string", "NAME"} & set(module.names)
    for name, value in (("a", 3), ("cap", 4), ("deep::inside", 5), ("from_macro", 6)):
        out = np.zeros(4, np.int32)
        k(name)((1,), (4,), (out,))
        assert (out == value).all()
    assert kernel_names("namespace n { namespace m { __global__ void g() {} } }")[0] == ["n::m::g"]


def test_zero_size_view_between_overlapping_arguments(k):
    buf = np.zeros(18, np.float32)
    k("via_views")((1,), (2,), (buf[0:10], buf[8:18]))
    assert buf[9] == 5 and buf[13] == 7
    buf = np.zeros(18, np.float32)
    m = SimModule("__global__ void three(float* x, float* e, float* z) { if (threadIdx.x == 0) x[9] = 5.0f;\n"
                  "  if (threadIdx.x == 1) z[5] = 7.0f; }\n")
    m.get_function("three")((1,), (2,), (buf[0:10], buf[5:5], buf[8:18]))
    assert buf[9] == 5 and buf[13] == 7


def test_read_only_input_view_of_the_output(k):
    x = np.arange(8, dtype=np.float32)
    view = x[:]
    view.setflags(write=False)
    m = SimModule("__global__ void twice(const float* x, float* y) { y[threadIdx.x] = 2.0f * x[threadIdx.x]; }\n")
    m.get_function("twice")((1,), (8,), (view, x))
    np.testing.assert_array_equal(x, 2 * np.arange(8))


def test_hfma_rounds_once(k):
    a, b, c = (np.array(v, np.float16) for v in ([96, 22.78], [156.375, -0.000857], [9.75e-05, -8.125]))
    out = np.zeros(2, np.float16)
    k("hfma")((1,), (2,), (a, b, c, out))
    exact = (a.astype(np.float64) * b + c).astype(np.float16)
    np.testing.assert_array_equal(out, exact)


def test_printf_appears_once(tmp_path):
    script = tmp_path / "talk.py"
    script.write_text(textwrap.dedent(f"""
        import numpy as np
        from convops.sim import SimModule
        SimModule({SOURCE!r}, name_expressions={NAMES!r}).get_function("talk")((2,), (4,), (np.zeros(1, np.int32),))
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.splitlines()) == ["hello from block 0", "hello from block 1"]


# ---- bugs are reported -------------------------------------------------------------------
def test_library_copies_are_checked(k):
    with pytest.raises(sim.SimOutOfBoundsError, match=r"copy_past: out-of-bounds write of 64 bytes to argument 1 "
                                                      r"\(40 bytes\) past the end"):
        k("copy_past")((1,), (4,), (np.ones(16, np.float32), np.zeros(10, np.float32), np.int32(10)))
    with pytest.raises(sim.SimOutOfBoundsError, match=r"set_past: out-of-bounds write of 64 bytes"):
        k("set_past")((1,), (4,), (np.zeros(10, np.float32), np.int32(10)))


def test_device_variables_are_checked(k):
    k("device_overflow")((1,), (1,), (np.int32(3),))
    with pytest.raises(sim.SimOutOfBoundsError, match=r"device_overflow: out-of-bounds write of 4 bytes at address "
                                                      r"0x[0-9a-f]+, outside every __device__ variable"):
        k("device_overflow")((1,), (1,), (np.int32(1000),))
    with pytest.raises(sim.SimRaceError, match=r"device_race: data race on __device__ acc at byte offset 0"):
        k("device_race")((2,), (4,), ())


def test_reads_from_other_blocks_and_warps_are_remembered(k):
    with pytest.raises(sim.SimRaceError, match=r"read_then_write: data race on argument 0 at byte offset 0: a write by "
                                               r"thread \(0,0,0\) of block \(1,0,0\) .* conflicts with a read by "
                                               r"thread \(\d+,0,0\) of block \(0,0,0\)"):
        k("read_then_write")((2,), (64,), (np.zeros(1, np.float32),))
    with pytest.raises(sim.SimRaceError, match=r"warp_reads_then_write: data race .* a write by thread \(0,0,0\) .* "
                                               r"conflicts with a read by thread \(32,0,0\)"):
        k("warp_reads_then_write")((1,), (64,), (np.zeros(1, np.float32), np.zeros(64, np.float32)))


def test_misaligned_vector_load(k):
    base = np.zeros(9, np.float32)
    with pytest.raises(sim.SimOutOfBoundsError, match=r"misaligned_float2: misaligned access at address 0x[0-9a-f]+ "
                                                      r"through a pointer to 'const (struct )?float2', which needs 8-byte "
                                                      r"alignment"):
        k("misaligned_float2")((1,), (2,), (base[1:], np.zeros(2, np.float32)))


def test_thread_locals_of_the_cpp_runtime_are_not_shared_memory(monkeypatch):
    """Found on a GPU machine (g++ 13.3, 2026-11-22): the executable held a
    16-byte thread-local of libsupc++ ('(anonymous namespace)::get_global()::global'),
    counted as every kernel's static shared memory, so a kernel using exactly
    48 KiB was refused.  Only the thread-locals the kernel source defines count."""
    from convops.sim import module as sim_module
    real = sim_module._symbols

    def with_a_runtime_tls(executable):
        return real(executable) + [(1 << 20, 16, "TLS", ".tbss", "(anonymous namespace)::get_global()::global",
                                    "_ZZN12_GLOBAL__N_110get_globalEvE6global")]
    monkeypatch.setattr(sim_module, "_symbols", with_a_runtime_tls)
    mod = SimModule(r'''
__global__ void all_48k(float* out) {
    __shared__ float s[12288];                                      // 48 KiB: the limit, allowed
    for (int i = threadIdx.x; i < 12288; i += blockDim.x) s[i] = i;
    __syncthreads();
    out[threadIdx.x] = s[12287 - threadIdx.x];
}''')
    kernel = mod.get_function("all_48k")
    assert kernel.static_shared_bytes == 49152
    out = np.zeros(32, np.float32)
    kernel((1,), (32,), (out,))
    np.testing.assert_array_equal(out, 12287 - np.arange(32))


def test_overrun_of_static_shared_memory_names_shared_memory(k):
    with pytest.raises(sim.SimOutOfBoundsError, match=r"shared_overrun: out-of-bounds write of 4 bytes at static "
                                                      r"shared memory byte offset \d+, outside every __shared__ "
                                                      r"variable"):
        k("shared_overrun")((1,), (32,), (np.zeros(32, np.float32), np.int32(64)))


def test_abort_names_the_kernel_line(k):
    with pytest.raises(sim.SimFaultError, match=r"aborts: SIGABRT .* in thread \(1,0,0\) of block \(0,0,0\) at "
                                                r"<sim-source>:\d+ \(aborts\(int\*\)\)"):
        k("aborts")((1,), (4,), (np.zeros(4, np.int32),))


def test_race_shadow_budget(k, monkeypatch):
    monkeypatch.setattr(config, "sim_race_shadow_bytes", 10**6)
    big = np.zeros(1 << 20, np.uint8)
    with pytest.raises(sim.SimLaunchError, match=r"bytecopy: the race detector would need \d+ bytes of shadow memory "
                                                 r".*check_races=False"):
        k("bytecopy")((1,), (32,), (big, big.copy(), np.int64(32)))
    k("bytecopy")((1,), (32,), (big, big.copy(), np.int64(32)), check_races=False)


def test_a_changed_header_is_a_new_build(tmp_path):
    (tmp_path / "val.cuh").write_text("#define VAL 1\n")
    source = '#include "val.cuh"\n__global__ void val(int* out) { out[0] = VAL; }\n'
    out = np.zeros(1, np.int32)
    SimModule(source, options=("-I", str(tmp_path))).get_function("val")((1,), (1,), (out,))
    assert out[0] == 1
    (tmp_path / "val.cuh").write_text("#define VAL 2\n")
    SimModule(source, options=(f"--include-path={tmp_path}",)).get_function("val")((1,), (1,), (out,))
    assert out[0] == 2


def test_nvrtc_option_spellings():
    assert compiler_options(["-I", "/a", "-I/b", "--include-path=/c", "-D", "X=5", "--define-macro=Y", "-DZ",
                             "-arch=sm_80", "--use_fast_math", "-std=c++17", "-U", "W"]) == \
        ["-I/a", "-I/b", "-I/c", "-DX=5", "-DY", "-DZ", "-std=c++17", "-UW"]
