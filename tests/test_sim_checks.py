"""The simulator's checks, one section per class of the hardening issue:
aliasing, faults that must not kill the caller, out-of-bounds reads and
writes, races the order reversal cannot see, spin-waits, launch limits,
partial-mask warp operations, shared memory per block, argument element
types.  Every planted bug must be reported as a SimError that names the
kernel, and the caller (and the module) must carry on afterwards."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from convops import config, sim
from convops.sim import SimModule

SOURCE = r'''
__global__ void twice(const float* x, float* y, int n) {           // y = 2 x, y and x may alias
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 2.0f * x[i];
}
__global__ void shift_add(const float* a, const float* b, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}
__global__ void divide(const int* x, int* y, int d) {
    y[threadIdx.x] = x[threadIdx.x] / d;
}
__global__ void null_read(float* y) {
    const float* p = nullptr;
    y[threadIdx.x] = p[threadIdx.x];
}
__global__ void wild_read(float* y, long long address) {
    y[threadIdx.x] = *reinterpret_cast<const float*>(address);
}
__global__ void big_locals(float* y, int n) {
    volatile float locals[32768];                                     // 128 KiB of locals per thread
    for (int i = 0; i < n; ++i) locals[i] = y[i];
    y[threadIdx.x] = locals[n - 1 - threadIdx.x];
}
__global__ void checked(const int* x, int n) {
    assert(x[threadIdx.x] < n);
}
__global__ void trapping(int* y) { if (threadIdx.x == 3) __trap(); y[threadIdx.x] = 1; }
__global__ void write_past(float* y, int n, long long extra) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i == 0) y[n - 1 + extra] = 1.0f;
}
__global__ void read_past(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i + 1];                                       // x[n] read by the last thread
}
__global__ void read_before(const float* x, float* y) {
    y[threadIdx.x] = x[(int)threadIdx.x - 2];
}
__global__ void misaligned(float* y) {
    float* p = reinterpret_cast<float*>(reinterpret_cast<char*>(y) + 2);
    p[threadIdx.x] = 1.0f;
}
__global__ void shared_counter(int* out) {                           // c = c + 1 by every thread
    __shared__ int c;
    if (threadIdx.x == 0) c = 0;
    __syncthreads();
    c = c + 1;
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = c;
}
__global__ void global_counter(int* count) { count[0] = count[0] + 1; }       // lost update
__global__ void blocks_write_one(float* out) { if (threadIdx.x == 0) out[0] = (float)blockIdx.x; }
__global__ void atomic_counter(int* count) { atomicAdd(count, 1); }
__global__ void atomic_float_sum(const float* x, float* sum) { atomicAdd(sum, x[blockIdx.x * blockDim.x + threadIdx.x]); }
__global__ void warp_sum(const int* x, int* out) {                  // warp-synchronous, no block barrier
    int v = x[threadIdx.x];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (threadIdx.x % 32 == 0) out[threadIdx.x / 32] = v;
}
__global__ void syncwarp_exchange(const int* x, int* out) {
    __shared__ int s[64];
    s[threadIdx.x] = x[threadIdx.x];
    __syncwarp();
    out[threadIdx.x] = s[threadIdx.x ^ 1];                            // the neighbour lane's value, same warp
}
__global__ void spin(int* out) {                                      // thread 0 waits for thread 1
    __shared__ volatile int flag;
    if (threadIdx.x == 1) flag = 1;
    if (threadIdx.x == 0) { while (flag != 1) {} out[0] = 1; }
}
__global__ void endless(int* out) { while (*(volatile int*)out == 0) {} }
__global__ void dyn_fill(float* out) {
    extern __shared__ float dyn[];
    dyn[threadIdx.x] = threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = dyn[blockDim.x - 1 - threadIdx.x];
}
__global__ void huge_static(float* out) {
    __shared__ float big[1 << 20];                                    // 4 MiB of static shared memory
    big[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = big[threadIdx.x];
}
__global__ void half_shuffle(const int* x, int* out) {               // lanes 0-15 shuffle among themselves
    int v = x[threadIdx.x];
    if (threadIdx.x < 16) v = __shfl_xor_sync(0x0000ffffu, v, 1);
    __syncthreads();
    out[threadIdx.x] = v;
}
__global__ void full_mask_half_warp(const int* x, int* out) {         // full mask, 16 lanes: undefined
    int v = x[threadIdx.x];
    if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
    __syncthreads();
    out[threadIdx.x] = v;
}
__global__ void mask_without_self(int* out) {
    out[threadIdx.x] = __shfl_sync(0x1u, 5, 0);
}
__global__ void first_block_writes(float* out) {                     // blocks > 0 never write s
    __shared__ float s[32];
    if (blockIdx.x == 0) s[threadIdx.x] = 100.0f + threadIdx.x;
    __syncthreads();
    out[blockIdx.x * 32 + threadIdx.x] = s[threadIdx.x];
}
template <typename T>
__global__ void scale(T* data, T factor, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) data[i] = data[i] * factor;
}
'''


@pytest.fixture(scope="module")
def module():
    return SimModule(SOURCE, name_expressions=("scale<float>",))


@pytest.fixture
def k(module):
    return module.get_function


def _still_works(k):
    """After any error the module (a new worker) still runs kernels."""
    y = np.zeros(64, np.float32)
    k("twice")((1,), (64,), (np.arange(64, dtype=np.float32), y, np.int32(64)))
    np.testing.assert_array_equal(y, 2 * np.arange(64))


# ---- 13. aliased and overlapping arguments --------------------------------------------------------
def test_in_place_kernel_on_one_buffer(k):
    x = np.arange(1000, dtype=np.float32)
    k("twice")((4,), (256,), (x, x, np.int32(1000)))
    np.testing.assert_array_equal(x, 2 * np.arange(1000))


def test_overlapping_views(k):
    base = np.arange(101, dtype=np.float32)
    out = np.zeros(100, np.float32)
    k("shift_add")((1,), (128,), (base[1:], base[:-1], out, np.int32(100)))
    np.testing.assert_array_equal(out, np.arange(1, 101) + np.arange(100))
    # the output overlapping a shifted input is a real race (thread i writes what thread i - 1 reads):
    # staged once, the aliasing is visible to the race detector
    with pytest.raises(sim.SimRaceError, match=r"shift_add: data race on argument 0 \(one buffer with arguments 1, "
                                               r"2\) at byte offset 4: a write by thread \(1,0,0\) .* conflicts with a read by thread \(0,0,0\)"):
        k("shift_add")((1,), (128,), (base[1:], base[:-1], base[:-1], np.int32(100)))


# ---- 14. faults are SimErrors naming kernel, block, thread and line; the process lives on -----------
def test_integer_division_by_zero(k):
    y = np.zeros(8, np.int32)
    with pytest.raises(sim.SimFaultError, match=r"divide: integer division by zero at <sim-source>:\d+:\d+ in "
                                                r"thread \(\d,0,0\) of block \(0,0,0\)") as info:
        k("divide")((1,), (8,), (np.arange(8, dtype=np.int32), y, np.int32(0)))
    assert info.value.kernel == "divide" and info.value.block == (0, 0, 0)
    _still_works(k)


def test_null_pointer_read(k):
    with pytest.raises(sim.SimOutOfBoundsError, match=r"null_read: invalid read of 4 bytes at address 0 \(a null "
                                                      r"pointer\) by thread \(0,0,0\) of block \(0,0,0\) at "
                                                      r"<sim-source>:\d+"):
        k("null_read")((1,), (4,), (np.zeros(4, np.float32),))
    _still_works(k)


def test_wild_pointer_read(k):
    with pytest.raises(sim.SimOutOfBoundsError, match=r"wild_read: invalid read of 4 bytes at address 0x7000deadbee0"):
        k("wild_read")((1,), (4,), (np.zeros(4, np.float32), np.int64(0x7000DEADBEE0)))
    _still_works(k)


def test_stack_overflow(k):
    y = np.zeros(64, np.float32)
    with pytest.raises(sim.SimStackOverflowError, match=r"big_locals: stack overflow: thread \(0,0,0\) of block "
                                                        r"\(0,0,0\) used more than its 65536-byte stack"):
        k("big_locals")((1,), (2,), (y, np.int32(64)))
    _still_works(k)


def test_device_assert(k):
    x = np.arange(8, dtype=np.int32)
    k("checked")((1,), (8,), (x, np.int32(8)))
    with pytest.raises(sim.SimAssertError, match=r"checked: assertion `x\[threadIdx.x\] < n` failed at "
                                                 r"<sim-source>:\d+ .* thread \(7,0,0\) of block \(0,0,0\)"):
        k("checked")((1,), (8,), (x, np.int32(7)))
    with pytest.raises(sim.SimAssertError, match=r"trapping: __trap\(\) at .* thread \(3,0,0\)"):
        k("trapping")((1,), (8,), (np.zeros(8, np.int32),))
    _still_works(k)


def test_absurd_shared_memory_is_a_launch_error(k):
    with pytest.raises(sim.SimLaunchError, match=r"shared_mem=70368744177664 bytes of dynamic shared memory exceed"):
        k("dyn_fill")((1,), (32,), (np.zeros(32, np.float32),), shared_mem=2**46)


def test_worker_crash_is_a_fault(k, module):
    """A fault the checks do not see first (here: the worker killed mid-launch) is still a SimError."""
    spin = k("endless")
    out = np.zeros(1, np.int32)
    import threading
    killer = threading.Timer(1.0, lambda: [w.proc.kill() for w in list(module._pool.busy)])
    killer.start()
    try:
        with pytest.raises(sim.SimFaultError, match=r"endless: the simulator's launch worker was killed by signal "
                                                    r"SIGKILL without a report"):
            spin((1,), (1,), (out,))
    finally:
        killer.cancel()
    _still_works(k)


# ---- 15. out-of-bounds reads and writes --------------------------------------------------------
@pytest.mark.parametrize("extra, offset", [(1, 4000), (16, 4060), (1 << 18, 4 * (999 + (1 << 18)))])
def test_write_past_the_end(k, extra, offset):
    """64 bytes past the end, and 1 MiB past it, are reported with the byte offset."""
    y = np.zeros(1000, np.float32)
    with pytest.raises(sim.SimOutOfBoundsError, match=rf"write_past: out-of-bounds write of 4 bytes to argument 0 "
                                                      rf"\(4000 bytes\) past the end, at byte offset {offset}, by "
                                                      rf"thread \(0,0,0\) of block \(0,0,0\)"):
        k("write_past")((1,), (32,), (y, np.int32(1000), np.int64(extra)))
    assert not y.any()


def test_reads_out_of_bounds(k):
    x, y = np.ones(100, np.float32), np.zeros(100, np.float32)
    with pytest.raises(sim.SimOutOfBoundsError, match=r"read_past: out-of-bounds read of 4 bytes to argument 0 "
                                                      r"\(400 bytes\) past the end, at byte offset 400, by thread "
                                                      r"\(99,0,0\)"):
        k("read_past")((1,), (128,), (x, y, np.int32(100)))
    with pytest.raises(sim.SimOutOfBoundsError, match=r"read_before: out-of-bounds read .* argument 0 .* before the "
                                                      r"start, at byte offset -8"):
        k("read_before")((1,), (4,), (x, y))


def test_misaligned_access(k):
    with pytest.raises(sim.SimOutOfBoundsError, match=r"misaligned: misaligned access at address 0x[0-9a-f]+ through "
                                                      r"a pointer to 'float', which needs 4-byte alignment"):
        k("misaligned")((1,), (4,), (np.zeros(8, np.float32),))


# ---- 16. races the order reversal cannot see ----------------------------------------------------
def test_shared_read_modify_write_race(k):
    with pytest.raises(sim.SimRaceError, match=r"shared_counter: data race on __shared__ shared_counter\(int\*\)::c "
                                               r"at byte offset \d: a (read|write) by thread \(\d+,0,0\) of block \(0,0,0\) at "
                                               r"<sim-source>:\d+ .*conflicts with a (read|write) by thread"):
        k("shared_counter")((1,), (64,), (np.zeros(1, np.int32),))


def test_global_lost_update(k):
    with pytest.raises(sim.SimRaceError, match=r"global_counter: data race on argument 0 at byte offset 0"):
        k("global_counter")((1,), (32,), (np.zeros(1, np.int32),))


def test_write_write_race_between_blocks(k):
    with pytest.raises(sim.SimRaceError, match=r"blocks_write_one: data race on argument 0 at byte offset 0: a write "
                                               r"by thread \(0,0,0\) of block \(1,0,0\) .* conflicts with a write by "
                                               r"thread \(0,0,0\) of block \(0,0,0\) .*different blocks are never "
                                               r"ordered"):
        k("blocks_write_one")((4,), (32,), (np.zeros(1, np.float32),))


def test_synchronized_code_is_not_a_race(k):
    count = np.zeros(1, np.int32)
    k("atomic_counter")((4,), (64,), (count,))
    assert count[0] == 256
    x = np.arange(64, dtype=np.int32)
    out = np.zeros(2, np.int32)
    k("warp_sum")((1,), (64,), (x, out))
    assert out.tolist() == [x[:32].sum(), x[32:].sum()]
    out = np.zeros(64, np.int32)
    k("syncwarp_exchange")((1,), (64,), (x, out))
    np.testing.assert_array_equal(out, x ^ 1)


def test_order_reversal_is_the_second_net(k):
    """Float atomics race-free but order dependent: only the reversed run sees it."""
    x = np.array([1e8, 1.0, -1e8, 1.0] * 64, np.float32)
    with pytest.raises(sim.SimRaceError, match=r"atomic_float_sum: argument 1 differs between two runs with "
                                               r"different thread orders"):
        k("atomic_float_sum")((1,), (256,), (x, np.zeros(1, np.float32)))
    total = np.zeros(1, np.float32)
    k("atomic_float_sum")((1,), (256,), (x, total), check_races=False)


# ---- 17. spin-waits end with a SimTimeoutError; Ctrl-C interrupts ---------------------------------
def test_spin_wait_hits_the_watchdog(k, monkeypatch):
    monkeypatch.setattr(config, "sim_watchdog_seconds", 1.5)
    t0 = time.monotonic()
    with pytest.raises(sim.SimTimeoutError, match=r"spin: no progress for 1.5 s \(no thread finished\); running: "
                                                  r"linear block 0, linear thread 0: a spin-wait"):
        k("spin")((1,), (32,), (np.zeros(1, np.int32),))
    assert time.monotonic() - t0 < 30
    _still_works(k)


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_ctrl_c_interrupts_a_launch(tmp_path, inherited):
    # A process started with SIGINT ignored keeps it ignored, and Python then installs no
    # KeyboardInterrupt handler: so it is when pytest runs as a background job of a
    # non-interactive shell (`bash -c 'pytest ... &'` ignores SIGINT and SIGQUIT in the job).
    # The child restores the handler an interactive Python has; "ignored" starts it that way.
    script = tmp_path / "spin.py"
    script.write_text(textwrap.dedent(f"""
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import numpy as np
        from convops.sim import SimModule
        m = SimModule({SOURCE!r})
        k = m.get_function("endless")
        print("launching", flush=True)
        try:
            k((1,), (1,), (np.zeros(1, np.int32),))
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """))
    command = [sys.executable, str(script)]
    if inherited == "ignored":  # exec the child with SIGINT ignored (SIG_IGN survives exec)
        command = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                   "os.execv(sys.argv[1], sys.argv[1:])", *command]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "CONVOPS_SIM_WATCHDOG": "600"})
    try:
        assert proc.stdout.readline().strip() == "launching"
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert "interrupted" in out
    finally:  # a child that missed the signal would spin on (and its worker) until the watchdog
        proc.kill()
        proc.communicate()


# ---- 18. launch limits ------------------------------------------------------------------------------
@pytest.mark.parametrize("grid, block, match", [
    ((2**32 + 3,), (32,), r"grid.x = 4294967299 exceeds the limit 2147483647"),
    ((1, 70000), (32,), r"grid.y = 70000 exceeds the limit 65535"),
    ((1,), (1, 1, 128), r"block.z = 128 exceeds the limit 64"),
    ((1,), (32, 33), r"at most 1024 threads"),
])
def test_launch_limits(k, grid, block, match):
    with pytest.raises(sim.SimLaunchError, match=match):
        k("twice")(grid, block, (np.zeros(4, np.float32), np.zeros(4, np.float32), np.int32(4)))


def test_dynamic_shared_memory_above_48k_needs_an_opt_in(module):
    kernel = SimModule(SOURCE).get_function("dyn_fill")
    out = np.zeros(32, np.float32)
    with pytest.raises(sim.SimLaunchError, match=r"shared_mem=102400 bytes of dynamic shared memory exceed the limit "
                                                 r"of 49152: above 49152 bytes .* needs an opt-in: set "
                                                 r"kernel.max_dynamic_shared_size_bytes \(up to 166912 on sm_80\)"):
        kernel((1,), (32,), (out,), shared_mem=100 * 1024)
    kernel.max_dynamic_shared_size_bytes = 100 * 1024
    kernel((1,), (32,), (out,), shared_mem=100 * 1024)
    np.testing.assert_array_equal(out, np.arange(32)[::-1])
    with pytest.raises(sim.SimLaunchError, match=r"max_dynamic_shared_size_bytes must be an int from 0 to 98304 "
                                                 r"\(sm_70"):
        SimModule(SOURCE, options=("-arch=sm_70",)).get_function("dyn_fill").max_dynamic_shared_size_bytes = 100 * 1024
    assert SimModule(SOURCE, options=("--gpu-architecture=compute_90",)).arch == "sm_90"


def test_static_shared_memory_limit(k):
    with pytest.raises(sim.SimLaunchError, match=r"huge_static: \d+ bytes of static __shared__ memory exceed the limit "
                                                 r"of 49152 bytes per block"):
        k("huge_static")((1,), (32,), (np.zeros(32, np.float32),))


# ---- 19. partial-mask warp operations --------------------------------------------------------------
def test_partial_mask_shuffle_then_barrier(k):
    x = np.arange(32, dtype=np.int32)
    out = np.zeros(32, np.int32)
    k("half_shuffle")((1,), (32,), (x, out))
    np.testing.assert_array_equal(out, np.where(x < 16, x ^ 1, x))


def test_full_mask_used_by_half_a_warp(k):
    with pytest.raises(sim.SimBarrierError, match=r"full_mask_half_warp: warp operation deadlock: .* waits at "
                                                  r"__shfl_xor_sync .* with mask 0xffffffff, which names lane 16, but "
                                                  r"that lane waits at __syncthreads"):
        k("full_mask_half_warp")((1,), (32,), (np.arange(32, dtype=np.int32), np.zeros(32, np.int32)))


def test_mask_must_name_the_calling_lane(k):
    with pytest.raises(sim.SimBarrierError, match=r"mask_without_self: __shfl_sync at <sim-source>:\d+ .*: lane 1 "
                                                  r"of thread \(1,0,0\) of block \(0,0,0\) calls it with mask "
                                                  r"0x00000001, which does not name the lane itself"):
        k("mask_without_self")((1,), (2,), (np.zeros(2, np.int32),))


# ---- 20. shared memory is garbage at the start of every block, on every launch -------------------------
def test_shared_memory_does_not_persist(k):
    out = np.zeros(64, np.float32)
    for _ in range(2):
        k("first_block_writes")((2,), (32,), (out,))
        np.testing.assert_array_equal(out[:32], 100 + np.arange(32))
        assert np.isnan(out[32:]).all(), out[32:]  # block 1 never wrote s: garbage, not block 0's values


def test_missing_barrier_is_caught_on_every_launch(module):
    k = module.get_function
    x = np.zeros(64, np.int32)
    for _ in range(2):
        with pytest.raises(sim.SimRaceError):
            k("shared_counter")((1,), (64,), (x,))


# ---- 21. array element types against the kernel's signature ------------------------------------------
def test_element_type_is_checked(k):
    data = np.arange(10, dtype=np.float64)
    with pytest.raises(sim.SimArgumentError, match=r"scale<float> argument 0: the kernel's parameter is float\* "
                                                   r"\(4-byte floating-point elements\), got a float64 array "
                                                   r"\(8-byte elements\)"):
        k("scale<float>")((1,), (32,), (data, np.float32(2), np.int64(10)))
    with pytest.raises(sim.SimArgumentError, match=r"argument 1: the kernel's parameter is float \(floating-point\), "
                                                   r"got int32"):
        k("scale<float>")((1,), (32,), (data.astype(np.float32), np.int32(2), np.int64(10)))
    ints = np.arange(8, dtype=np.uint32)
    k("divide")((1,), (8,), (ints, np.zeros(8, np.int32), np.int32(1)))  # signed/unsigned of one size: accepted


def test_read_only_array_written_by_a_kernel(k):
    y = np.zeros(4, np.float32)
    y.setflags(write=False)
    with pytest.raises(sim.SimArgumentError, match=r"twice wrote to argument 1: read-only memory"):
        k("twice")((1,), (4,), (np.ones(4, np.float32), y, np.int32(4)))


def test_launches_from_several_python_threads(module):
    """Each concurrent launch takes its own worker: results as if run one by one."""
    from concurrent.futures import ThreadPoolExecutor
    kernel = module.get_function("twice")

    def run(seed):
        x = np.random.default_rng(seed).standard_normal(5000).astype(np.float32)
        y = np.zeros_like(x)
        kernel((20,), (256,), (x, y, np.int32(5000)))
        return np.array_equal(y, 2 * x)

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(run, range(12)))
