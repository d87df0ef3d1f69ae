// cuda_sim.h -- the CUDA execution model on the CPU, for convops.sim.
//
// A kernel's source is compiled by the system C++ compiler against this
// header.  Each block runs on one OS thread; its threads run as cooperative
// fibers (hand-written x86-64 context switch: no system call per switch), so
// __syncthreads, warp shuffles and votes suspend a fiber until the others
// arrive.  The scheduler checks what a GPU would not: barrier divergence
// (threads waiting at different barriers, or at a barrier some threads have
// left) is an error, never a hang.  Thread order inside each barrier interval
// is forward or reversed (the launch's `order`), so a missing barrier shows up
// as a difference between two runs.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if !defined(__x86_64__)
#error "convops.sim supports x86-64 hosts"
#endif

// ---- CUDA keywords ---------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __inline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static thread_local
#define __constant__ static
#define __align__(n) __attribute__((aligned(n)))
#define __CUDACC__ 1
#define __CUDA_ARCH__ 800
#define CONVOPS_SIM 1

struct uint3 { unsigned int x, y, z; };
struct dim3 {
  unsigned int x, y, z;
  dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace sim {

// ---- fibers ------------------------------------------------------------------
extern "C" void convops_sim_switch(void** save_sp, void* load_sp);
asm(R"(
.text
.globl convops_sim_switch
.type convops_sim_switch,@function
convops_sim_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size convops_sim_switch, .-convops_sim_switch
)");

enum State { READY, AT_BARRIER, AT_WARP, DONE };

struct Block;

struct Thread {
  void* sp = nullptr;
  char* stack = nullptr;
  State state = READY;
  long barrier = 0;      // barrier site id while AT_BARRIER / AT_WARP
  int bar_kind = 0;      // 0 plain, 1 count, 2 and, 3 or
  int bar_value = 0;
  int result = 0;        // value returned by a counting barrier
  uint3 tid;
  unsigned linear = 0;
  Block* block = nullptr;
};

struct Launch;

struct Block {
  Launch* launch = nullptr;
  uint3 bid;
  std::vector<Thread> threads;
  void* scheduler_sp = nullptr;
  Thread* current = nullptr;
  // warp exchange slots: one 8-byte value per lane
  std::vector<uint64_t> warp_slots;
  std::vector<unsigned> warp_masks;
};

struct Launch {
  dim3 grid, block;
  size_t shared_bytes = 0;
  int order = 0;  // 0 forward, 1 reversed
  std::function<void()> body;
  std::atomic<int> failed{0};
  std::mutex err_lock;
  char error[1024] = {0};
  void fail(const char* msg) {
    std::lock_guard<std::mutex> g(err_lock);
    if (!failed.exchange(1)) std::snprintf(error, sizeof error, "%s", msg);
  }
};

inline thread_local Block* tl_block = nullptr;
inline thread_local std::vector<char>* tl_dynamic_shared = nullptr;

inline Thread* cur() { return tl_block->current; }
inline void* dynamic_shared() { return tl_dynamic_shared->data(); }

// Suspend the current fiber and return to the block scheduler.
inline void yield_to_scheduler() {
  Thread* t = cur();
  convops_sim_switch(&t->sp, t->block->scheduler_sp);
}

[[noreturn]] inline void fiber_exit() {
  Thread* t = cur();
  t->state = DONE;
  void* dummy;
  convops_sim_switch(&dummy, t->block->scheduler_sp);
  __builtin_unreachable();
}

extern "C" inline void convops_sim_fiber_entry() {
  tl_block->launch->body();
  fiber_exit();
}

constexpr size_t kStack = 64 * 1024;

inline void start_fiber(Thread& t, char* stack) {
  // initial frame: six callee-saved registers, then the entry as return address
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + kStack) & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;  // fake return address of the entry (keeps 16-byte alignment at its start)
  *--sp = reinterpret_cast<void*>(&convops_sim_fiber_entry);
  for (int i = 0; i < 6; ++i) *--sp = nullptr;
  t.sp = sp;
  t.state = READY;
}

// Run one block to completion: every READY thread runs until it waits or
// ends; when none is READY, the waiting threads are released together if
// they all wait at the same barrier, else the launch fails.
inline bool run_block(Block& b, std::vector<char*>& stacks) {
  const unsigned n = b.threads.size();
  for (unsigned i = 0; i < n; ++i) start_fiber(b.threads[i], stacks[i]);
  tl_block = &b;
  while (true) {
    bool progressed = false;
    for (unsigned k = 0; k < n; ++k) {
      unsigned i = b.launch->order ? n - 1 - k : k;
      Thread& t = b.threads[i];
      if (t.state != READY) continue;
      b.current = &t;
      convops_sim_switch(&b.scheduler_sp, t.sp);
      progressed = true;
      if (b.launch->failed.load()) return false;
    }
    // warps: release every warp whose live lanes all wait at the same warp sync
    bool warp_released = false;
    for (unsigned w0 = 0; w0 < n; w0 += 32) {
      unsigned end = std::min(n, w0 + 32);
      long site = -1;
      bool all = true, any = false;
      for (unsigned i = w0; i < end; ++i) {
        Thread& t = b.threads[i];
        if (t.state == DONE) continue;
        if (t.state != AT_WARP) { all = false; break; }
        if (site == -1) site = t.barrier;
        else if (site != t.barrier) {
          char msg[256];
          std::snprintf(msg, sizeof msg, "warp divergence: block (%u,%u,%u) warp %u lanes wait at different warp "
                        "operations (sites %ld and %ld)", b.bid.x, b.bid.y, b.bid.z, w0 / 32, site, t.barrier);
          b.launch->fail(msg);
          return false;
        }
        any = true;
      }
      if (all && any) {
        for (unsigned i = w0; i < end; ++i)
          if (b.threads[i].state == AT_WARP) b.threads[i].state = READY;
        warp_released = true;
      }
    }
    if (warp_released) continue;
    if (!progressed) {
      // nobody ran: either all done, or all waiting at block barriers
      long site = -1;
      unsigned waiting = 0, done = 0, count = 0;
      bool all_and = true, any_or = false;
      for (unsigned i = 0; i < n; ++i) {
        Thread& t = b.threads[i];
        if (t.state == DONE) { ++done; continue; }
        if (t.state == AT_WARP) {
          char msg[256];
          std::snprintf(msg, sizeof msg, "warp operation deadlock: block (%u,%u,%u) thread %u waits at a warp "
                        "operation its warp's other lanes never reach", b.bid.x, b.bid.y, b.bid.z, i);
          b.launch->fail(msg);
          return false;
        }
        if (site == -1) site = t.barrier;
        else if (site != t.barrier) {
          char msg[256];
          std::snprintf(msg, sizeof msg, "barrier divergence: block (%u,%u,%u) threads wait at different "
                        "__syncthreads (lines %ld and %ld)", b.bid.x, b.bid.y, b.bid.z, site & 0xFFFFF,
                        t.barrier & 0xFFFFF);
          b.launch->fail(msg);
          return false;
        }
        ++waiting;
        count += t.bar_value != 0;
        all_and &= t.bar_value != 0;
        any_or |= t.bar_value != 0;
      }
      if (waiting == 0) return true;
      if (done > 0) {
        char msg[256];
        std::snprintf(msg, sizeof msg, "barrier divergence: block (%u,%u,%u): %u threads wait at __syncthreads "
                      "(line %ld) that %u exited threads never reach", b.bid.x, b.bid.y, b.bid.z, waiting,
                      site & 0xFFFFF, done);
        b.launch->fail(msg);
        return false;
      }
      for (unsigned i = 0; i < n; ++i) {
        Thread& t = b.threads[i];
        t.result = t.bar_kind == 1 ? int(count) : t.bar_kind == 2 ? int(all_and) : int(any_or);
        t.state = READY;
      }
    }
  }
}

inline int launch(Launch& L) {
  const unsigned nthreads = L.block.x * L.block.y * L.block.z;
  const unsigned long nblocks = (unsigned long)L.grid.x * L.grid.y * L.grid.z;
  if (nthreads == 0 || nthreads > 1024) {
    L.fail("block must have 1 to 1024 threads");
    return 1;
  }
  std::atomic<unsigned long> next{0};
  auto worker = [&]() {
    std::vector<char*> stacks(nthreads);
    for (auto& s : stacks) s = static_cast<char*>(std::malloc(kStack));
    std::vector<char> dyn(L.shared_bytes + 16);
    tl_dynamic_shared = &dyn;
    Block b;
    b.launch = &L;
    b.threads.resize(nthreads);
    b.warp_slots.assign(nthreads, 0);
    for (unsigned i = 0; i < nthreads; ++i) {
      Thread& t = b.threads[i];
      t.linear = i;
      t.tid = {i % L.block.x, (i / L.block.x) % L.block.y, i / (L.block.x * L.block.y)};
      t.block = &b;
    }
    while (!L.failed.load()) {
      unsigned long id = next.fetch_add(1);
      if (id >= nblocks) break;
      b.bid = {unsigned(id % L.grid.x), unsigned((id / L.grid.x) % L.grid.y), unsigned(id / ((unsigned long)L.grid.x * L.grid.y))};
      if (!run_block(b, stacks)) break;
    }
    for (auto s : stacks) std::free(s);
  };
  unsigned workers = std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), (unsigned)std::min<unsigned long>(nblocks, 64)));
  const char* env = std::getenv("CONVOPS_SIM_THREADS");
  if (env && std::atoi(env) > 0) workers = std::min<unsigned>(workers, std::atoi(env));
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < workers; ++i) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  return L.failed.load();
}

// ---- barriers and warp operations ----------------------------------------------
inline int barrier(long site, int kind, int value) {
  Thread* t = cur();
  t->state = AT_BARRIER;
  t->barrier = site;
  t->bar_kind = kind;
  t->bar_value = value;
  yield_to_scheduler();
  return t->result;
}

inline void warp_wait(long site) {
  Thread* t = cur();
  t->state = AT_WARP;
  t->barrier = site;
  yield_to_scheduler();
}

template <class T>
inline T shfl(long site, T v, int src_lane, int width) {
  static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
  Thread* t = cur();
  Block* b = t->block;
  unsigned lane = t->linear % 32, base = t->linear - lane;
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  b->warp_slots[t->linear] = bits;
  warp_wait(site * 2);
  unsigned seg = lane - lane % width;
  unsigned src = seg + ((unsigned)src_lane % width);
  uint64_t got = (base + src < b->threads.size()) ? b->warp_slots[base + src] : bits;
  warp_wait(site * 2 + 1);  // nobody overwrites a slot before every lane has read
  T out;
  std::memcpy(&out, &got, sizeof(T));
  return out;
}

// Warp vote: every live lane of the warp deposits its predicate and waits;
// while all are parked the result is read, so it does not depend on thread
// order.  kind 0: ballot, 1: any, 2: all (over the lanes that take part).
inline unsigned warp_vote(long site, int pred, int kind) {
  Thread* t = cur();
  Block* b = t->block;
  unsigned lane = t->linear % 32, base = t->linear - lane;
  b->warp_slots[t->linear] = pred != 0;
  warp_wait(site * 2);
  unsigned mask = 0, taking_part = 0;
  for (unsigned i = 0; i < 32 && base + i < b->threads.size(); ++i) {
    if (b->threads[base + i].state == DONE) continue;
    taking_part |= 1u << i;
    if (b->warp_slots[base + i]) mask |= 1u << i;
  }
  warp_wait(site * 2 + 1);
  return kind == 0 ? mask : kind == 1 ? unsigned(mask != 0) : unsigned(mask == taking_part);
}

// ---- launcher glue ---------------------------------------------------------------
template <class... A, size_t... I>
inline void invoke(void (*k)(A...), void** args, std::index_sequence<I...>) {
  k(*reinterpret_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

template <class... A>
inline int launch_kernel(void (*k)(A...), dim3 grid, dim3 block, void** args, size_t shared_bytes, int order,
                         char* err, int errlen) {
  Launch L;
  L.grid = grid;
  L.block = block;
  L.shared_bytes = shared_bytes;
  L.order = order;
  L.body = [&]() { invoke(k, args, std::index_sequence_for<A...>{}); };
  int rc = launch(L);
  if (rc) std::snprintf(err, errlen, "%s", L.error);
  return rc;
}

// Parameter sizes and kinds (1 = pointer, 0 = value) of a kernel, for the
// argument check on the Python side.
template <class... A>
inline int signature(void (*)(A...), long* sizes, int* pointers, int capacity) {
  long s[] = {long(sizeof(A))..., 0};
  int p[] = {int(std::is_pointer<A>::value)..., 0};
  int n = sizeof...(A);
  for (int i = 0; i < n && i < capacity; ++i) { sizes[i] = s[i]; pointers[i] = p[i]; }
  return n;
}

}  // namespace sim

// ---- built-in variables ------------------------------------------------------------
#define threadIdx (::sim::cur()->tid)
#define blockIdx (::sim::cur()->block->bid)
#define blockDim (::sim::cur()->block->launch->block)
#define gridDim (::sim::cur()->block->launch->grid)
#define warpSize 32

// A barrier's site: its line in the low 20 bits, a per-expansion counter above
// (two barriers on one line are still different barriers).
#define SIM_SITE (((long)__COUNTER__ << 20) | (long)__LINE__)
#define __syncthreads() ::sim::barrier(SIM_SITE, 0, 1)
#define __syncthreads_count(p) ::sim::barrier(SIM_SITE, 1, (p))
#define __syncthreads_and(p) ::sim::barrier(SIM_SITE, 2, (p))
#define __syncthreads_or(p) ::sim::barrier(SIM_SITE, 3, (p))
#define __syncwarp(...) ::sim::warp_wait(-(long)SIM_SITE * 4)
#define __shfl_sync(mask, v, lane, ...) ::sim::shfl(SIM_SITE, (v), (lane), sim_width(__VA_ARGS__))
#define __shfl_up_sync(mask, v, d, ...) \
  ::sim::shfl(SIM_SITE, (v), sim_up_lane((d), sim_width(__VA_ARGS__)), sim_width(__VA_ARGS__))
#define __shfl_down_sync(mask, v, d, ...) \
  ::sim::shfl(SIM_SITE, (v), sim_down_lane((d), sim_width(__VA_ARGS__)), sim_width(__VA_ARGS__))
#define __shfl_xor_sync(mask, v, m, ...) ::sim::shfl(SIM_SITE, (v), sim_lane() ^ (m), sim_width(__VA_ARGS__))
#define __ballot_sync(mask, p) ::sim::warp_vote(SIM_SITE, (p), 0)
#define __any_sync(mask, p) (int)::sim::warp_vote(SIM_SITE, (p), 1)
#define __all_sync(mask, p) (int)::sim::warp_vote(SIM_SITE, (p), 2)
#define __activemask() ::sim::warp_vote(SIM_SITE, 1, 0)

inline int sim_width() { return 32; }
inline int sim_width(int w) { return w; }
inline int sim_lane() { return (int)(::sim::cur()->linear % 32); }
inline int sim_up_lane(int d, int w) { int l = sim_lane() % w; return l >= d ? sim_lane() - d : sim_lane(); }
inline int sim_down_lane(int d, int w) { int l = sim_lane() % w; return l + d < w ? sim_lane() + d : sim_lane(); }

// ---- atomics (blocks run in parallel: real atomic operations) ------------------------
template <class T> inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
template <class T> inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }
template <class T> inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
template <class T> inline T atomicCAS(T* p, T cmp, T v) {
  __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return cmp;
}
template <class T> inline T atomicMax(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
  return old;
}
template <class T> inline T atomicMin(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (old > v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
  return old;
}
template <class F, class I> inline F sim_atomic_float(F* p, F v, F (*op)(F, F)) {
  static_assert(sizeof(F) == sizeof(I), "");
  I* ip = reinterpret_cast<I*>(p);
  I old = __atomic_load_n(ip, __ATOMIC_SEQ_CST), want;
  F f;
  do {
    std::memcpy(&f, &old, sizeof f);
    F n = op(f, v);
    std::memcpy(&want, &n, sizeof want);
  } while (!__atomic_compare_exchange_n(ip, &old, want, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
  return f;
}
inline float atomicAdd(float* p, float v) { return sim_atomic_float<float, uint32_t>(p, v, [](float a, float b) { return a + b; }); }
inline double atomicAdd(double* p, double v) { return sim_atomic_float<double, uint64_t>(p, v, [](double a, double b) { return a + b; }); }
inline float atomicSub(float* p, float v) { return sim_atomic_float<float, uint32_t>(p, v, [](float a, float b) { return a - b; }); }
inline double atomicSub(double* p, double v) { return sim_atomic_float<double, uint64_t>(p, v, [](double a, double b) { return a - b; }); }
inline float atomicMax(float* p, float v) { return sim_atomic_float<float, uint32_t>(p, v, [](float a, float b) { return a > b ? a : b; }); }
inline double atomicMax(double* p, double v) { return sim_atomic_float<double, uint64_t>(p, v, [](double a, double b) { return a > b ? a : b; }); }
inline float atomicMin(float* p, float v) { return sim_atomic_float<float, uint32_t>(p, v, [](float a, float b) { return a < b ? a : b; }); }
inline double atomicMin(double* p, double v) { return sim_atomic_float<double, uint64_t>(p, v, [](double a, double b) { return a < b ? a : b; }); }
inline float atomicExch(float* p, float v) { return sim_atomic_float<float, uint32_t>(p, v, [](float, float b) { return b; }); }
inline double atomicExch(double* p, double v) { return sim_atomic_float<double, uint64_t>(p, v, [](double, double b) { return b; }); }

// ---- math and intrinsics ----------------------------------------------------------
using std::max;
using std::min;
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : x > 1.f ? 1.f : x; }
template <class T> inline T __ldg(const T* p) { return *p; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline int __mul24(int a, int b) { return a * b; }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// ---- vector types --------------------------------------------------------------------
#define SIM_VEC2(T, N) struct N { T x, y; }; inline N make_##N(T x, T y) { return N{x, y}; }
#define SIM_VEC4(T, N) struct __attribute__((aligned(sizeof(T) * 4))) N { T x, y, z, w; }; \
  inline N make_##N(T x, T y, T z, T w) { return N{x, y, z, w}; }
SIM_VEC2(float, float2) SIM_VEC4(float, float4) SIM_VEC2(double, double2) SIM_VEC4(double, double4)
SIM_VEC2(int, int2) SIM_VEC4(int, int4) SIM_VEC2(unsigned int, uint2) SIM_VEC4(unsigned int, uint4)
struct float3 { float x, y, z; };
inline float3 make_float3(float x, float y, float z) { return float3{x, y, z}; }
struct int3 { int x, y, z; };
inline int3 make_int3(int x, int y, int z) { return int3{x, y, z}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }

// ---- half precision (cuda_fp16.h subset) ----------------------------------------------
struct __half {
  _Float16 v;
  __half() = default;
  __half(float f) : v((_Float16)f) {}
  __half(double f) : v((_Float16)f) {}
  __half(int i) : v((_Float16)i) {}
  operator float() const { return (float)v; }
};
inline __half __float2half(float f) { return __half(f); }
inline __half __float2half_rn(float f) { return __half(f); }
inline float __half2float(__half h) { return (float)h.v; }
inline __half __hadd(__half a, __half b) { return __half((float)a + (float)b); }
inline __half __hsub(__half a, __half b) { return __half((float)a - (float)b); }
inline __half __hmul(__half a, __half b) { return __half((float)a * (float)b); }
inline __half __hfma(__half a, __half b, __half c) { return __half(std::fma((float)a, (float)b, (float)c)); }
inline __half operator+(__half a, __half b) { return __hadd(a, b); }
inline __half operator-(__half a, __half b) { return __hsub(a, b); }
inline __half operator*(__half a, __half b) { return __hmul(a, b); }
inline __half operator/(__half a, __half b) { return __half((float)a / (float)b); }
inline __half& operator+=(__half& a, __half b) { return a = a + b; }
inline bool operator<(__half a, __half b) { return (float)a < (float)b; }
inline bool operator>(__half a, __half b) { return (float)a > (float)b; }
using half = __half;
