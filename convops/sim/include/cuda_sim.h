// cuda_sim.h -- CUDA C on the CPU, for convops.sim: the header a kernel's
// source is compiled against (instead of NVRTC's built-ins).
//
// Kernels are ordinary C++ functions run by the simulator runtime
// (sim_runtime.cpp): each block on one OS thread, its threads as cooperative
// fibers.  This header maps CUDA's keywords, built-in variables, barriers,
// warp operations, atomics, math and half precision onto it.  The kernel's
// translation unit is compiled with GCC's thread-sanitizer instrumentation,
// so every memory access it makes is checked by the runtime (see sim_abi.h).
#pragma once
#include <algorithm>
#include <cassert>  // NVRTC provides assert without an include; the runtime reports a failed one
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <type_traits>
#include <utility>

#include "sim_abi.h"

#if !defined(__x86_64__)
#error "convops.sim supports x86-64 hosts"
#endif

// ---- CUDA keywords ---------------------------------------------------------
// A kernel is never inlined: it runs under the thread-sanitizer
// instrumentation, its launcher stub does not.
#define __global__ __attribute__((noinline))
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __inline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
// Static shared memory: one copy per OS thread running blocks (the runtime
// fills it with NaN-like garbage before every block); its size is the
// executable's TLS segment, checked against the target's limit.
#define __shared__ static thread_local
#define __constant__ static
#define __align__(n) __attribute__((aligned(n)))
#define __CUDACC__ 1
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 800
#endif
#define CONVOPS_SIM 1

// ---- built-in variables ------------------------------------------------------------
#define threadIdx (::sim::thread_idx())
#define blockIdx (::sim::block_idx())
#define blockDim (::sim::block_dim())
#define gridDim (::sim::grid_dim())
#define warpSize 32

// A barrier's site: its line in the low 20 bits, a per-expansion counter above
// (two barriers on one line are still different barriers).
#define SIM_SITE (((long)__COUNTER__ << 20) | (long)__LINE__)
#define __syncthreads() ((void)::sim::barrier(SIM_SITE, 0, 1))
#define __syncthreads_count(p) ::sim::barrier(SIM_SITE, 1, (p))
#define __syncthreads_and(p) ::sim::barrier(SIM_SITE, 2, (p))
#define __syncthreads_or(p) ::sim::barrier(SIM_SITE, 3, (p))
#define __syncwarp(...) ((void)::sim::warp_op(SIM_SITE, ::sim::W_SYNC, sim_mask(__VA_ARGS__), 0, 0, 32))
#define __shfl_sync(mask, v, lane, ...) sim_shfl(SIM_SITE, ::sim::W_SHFL, (mask), (v), (lane), sim_width(__VA_ARGS__))
#define __shfl_up_sync(mask, v, d, ...) sim_shfl(SIM_SITE, ::sim::W_SHFL_UP, (mask), (v), (d), sim_width(__VA_ARGS__))
#define __shfl_down_sync(mask, v, d, ...) \
  sim_shfl(SIM_SITE, ::sim::W_SHFL_DOWN, (mask), (v), (d), sim_width(__VA_ARGS__))
#define __shfl_xor_sync(mask, v, m, ...) sim_shfl(SIM_SITE, ::sim::W_SHFL_XOR, (mask), (v), (m), sim_width(__VA_ARGS__))
#define __ballot_sync(mask, p) ((unsigned)::sim::warp_op(SIM_SITE, ::sim::W_BALLOT, (mask), (p) != 0, 0, 32))
#define __any_sync(mask, p) ((int)::sim::warp_op(SIM_SITE, ::sim::W_ANY, (mask), (p) != 0, 0, 32))
#define __all_sync(mask, p) ((int)::sim::warp_op(SIM_SITE, ::sim::W_ALL, (mask), (p) != 0, 0, 32))
#define __activemask() ((unsigned)::sim::warp_op(SIM_SITE, ::sim::W_ACTIVEMASK, 0xffffffffu, 0, 0, 32))
#define __trap() ::sim::trap("__trap()", __FILE__, __LINE__)

inline unsigned sim_mask() { return 0xffffffffu; }
inline unsigned sim_mask(unsigned m) { return m; }
inline int sim_width() { return 32; }
inline int sim_width(int w) { return w; }

template <class T>
inline T sim_shfl(long site, int kind, unsigned mask, T v, int lane_arg, int width) {
  static_assert(sizeof(T) <= 8, "shuffle of more than 8 bytes");
  unsigned long long bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = ::sim::warp_op(site, kind, mask, bits, lane_arg, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

// ---- atomics (instrumented: the runtime sees them as atomic accesses) ---------------
// CUDA's overloads for the built-in integer and floating types, no more (NVRTC 13,
// sm_75 to sm_90; tests/test_sim.py compares this table with NVRTC's), as plain
// functions (not here: the __half/__half2, float2/float4 and scoped _block/_system forms): the value converts to the
// pointer's type (atomicAdd(unsigned*, 1) is fine), and a call CUDA has no overload
// for (atomicMax on a float, atomicExch on a double) fails to compile here too.
template <class T> inline T sim_fetch_max(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
  return old;
}
template <class T> inline T sim_fetch_min(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (old > v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
  return old;
}
template <class T> inline T sim_cas(T* p, T cmp, T v) {
  __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return cmp;
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
#define SIM_ATOMIC(NAME, T, EXPR) inline T NAME(T* p, T v) { return EXPR; }
#define SIM_ATOMIC_ADD_SUB(T) SIM_ATOMIC(atomicAdd, T, __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST)) \
  SIM_ATOMIC(atomicSub, T, __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST))
#define SIM_ATOMIC_BITS_MIN_MAX(T) SIM_ATOMIC(atomicAnd, T, __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST)) \
  SIM_ATOMIC(atomicOr, T, __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST)) \
  SIM_ATOMIC(atomicXor, T, __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST)) \
  SIM_ATOMIC(atomicMax, T, sim_fetch_max(p, v)) SIM_ATOMIC(atomicMin, T, sim_fetch_min(p, v))
#define SIM_ATOMIC_EXCH_CAS(T) SIM_ATOMIC(atomicExch, T, __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST)) \
  inline T atomicCAS(T* p, T cmp, T v) { return sim_cas(p, cmp, v); }
SIM_ATOMIC_ADD_SUB(int) SIM_ATOMIC_ADD_SUB(unsigned int)
SIM_ATOMIC(atomicAdd, unsigned long long, __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST))
SIM_ATOMIC_BITS_MIN_MAX(int) SIM_ATOMIC_BITS_MIN_MAX(unsigned int)
SIM_ATOMIC_BITS_MIN_MAX(long long) SIM_ATOMIC_BITS_MIN_MAX(unsigned long long)
SIM_ATOMIC_EXCH_CAS(int) SIM_ATOMIC_EXCH_CAS(unsigned int) SIM_ATOMIC_EXCH_CAS(unsigned long long)
inline unsigned short atomicCAS(unsigned short* p, unsigned short cmp, unsigned short v) { return sim_cas(p, cmp, v); }
SIM_ATOMIC(atomicAdd, float, (sim_atomic_float<float, uint32_t>(p, v, [](float a, float b) { return a + b; })))
SIM_ATOMIC(atomicAdd, double, (sim_atomic_float<double, uint64_t>(p, v, [](double a, double b) { return a + b; })))
SIM_ATOMIC(atomicExch, float, (sim_atomic_float<float, uint32_t>(p, v, [](float, float b) { return b; })))
#undef SIM_ATOMIC
#undef SIM_ATOMIC_ADD_SUB
#undef SIM_ATOMIC_BITS_MIN_MAX
#undef SIM_ATOMIC_EXCH_CAS
// ((old >= limit) ? 0 : old + 1) and (((old == 0) || (old > limit)) ? limit : old - 1), as CUDA defines them
inline unsigned atomicInc(unsigned* p, unsigned limit) {
  unsigned old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (!__atomic_compare_exchange_n(p, &old, old >= limit ? 0u : old + 1, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
  return old;
}
inline unsigned atomicDec(unsigned* p, unsigned limit) {
  unsigned old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (!__atomic_compare_exchange_n(p, &old, (old == 0 || old > limit) ? limit : old - 1, false, __ATOMIC_SEQ_CST,
                                      __ATOMIC_SEQ_CST)) {}
  return old;
}

// ---- math and intrinsics ----------------------------------------------------------
// CUDA's min and max take mixed arguments (min(int, unsigned), max(float, double)).
template <class A, class B> inline std::common_type_t<A, B> min(A a, B b) {
  return b < a ? std::common_type_t<A, B>(b) : std::common_type_t<A, B>(a);
}
template <class A, class B> inline std::common_type_t<A, B> max(A a, B b) {
  return a < b ? std::common_type_t<A, B>(b) : std::common_type_t<A, B>(a);
}
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
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline int __mul24(int a, int b) { return a * b; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
template <class To, class From> inline To sim_bits(From f) {
  static_assert(sizeof(To) == sizeof(From), "");
  To t;
  std::memcpy(&t, &f, sizeof t);
  return t;
}
inline float __int_as_float(int i) { return sim_bits<float>(i); }
inline int __float_as_int(float f) { return sim_bits<int>(f); }
inline float __uint_as_float(unsigned i) { return sim_bits<float>(i); }
inline unsigned __float_as_uint(float f) { return sim_bits<unsigned>(f); }
inline double __longlong_as_double(long long i) { return sim_bits<double>(i); }
inline long long __double_as_longlong(double d) { return sim_bits<long long>(d); }
inline int __float2int_rn(float x) { return (int)std::nearbyint(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline int __float2int_rd(float x) { return (int)std::floor(x); }
inline int __float2int_ru(float x) { return (int)std::ceil(x); }
inline float __int2float_rn(int x) { return (float)x; }
inline int __double2int_rz(double x) { return (int)x; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float rhypotf(float a, float b) { return 1.0f / std::hypot(a, b); }
inline long long clock64() { return (long long)__builtin_ia32_rdtsc(); }
inline int clock() { return (int)__builtin_ia32_rdtsc(); }
inline void __nanosleep(unsigned) {}
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
inline unsigned __lanemask_lt() { return (1u << ::sim::lane_id()) - 1; }
inline unsigned __lanemask_le() { return (2u << ::sim::lane_id()) - 1; }
inline unsigned __lanemask_eq() { return 1u << ::sim::lane_id(); }
inline unsigned __lanemask_gt() { return ~__lanemask_le(); }
inline unsigned __lanemask_ge() { return ~__lanemask_lt(); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---- vector types --------------------------------------------------------------------
// Aligned as CUDA aligns them (float2 to 8 bytes, float4 and double2 to 16), so a misaligned
// vector access is caught and structs holding them are laid out as on a GPU.
#define SIM_VEC2(T, N) struct __attribute__((aligned(sizeof(T) * 2))) N { T x, y; }; \
  inline N make_##N(T x, T y) { return N{x, y}; }
#define SIM_VEC4(T, N) struct __attribute__((aligned(sizeof(T) * 4 < 16 ? sizeof(T) * 4 : 16))) N { T x, y, z, w; }; \
  inline N make_##N(T x, T y, T z, T w) { return N{x, y, z, w}; }
SIM_VEC2(float, float2) SIM_VEC4(float, float4) SIM_VEC2(double, double2) SIM_VEC4(double, double4)
SIM_VEC2(int, int2) SIM_VEC4(int, int4) SIM_VEC2(unsigned int, uint2) SIM_VEC4(unsigned int, uint4)
struct float3 { float x, y, z; };
inline float3 make_float3(float x, float y, float z) { return float3{x, y, z}; }
struct int3 { int x, y, z; };
inline int3 make_int3(int x, int y, int z) { return int3{x, y, z}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }

// ---- half precision: include <cuda_fp16.h> (the simulator's own, beside this file), as for NVRTC


// ---- library calls a kernel makes: checked like its own accesses ---------------------------
extern "C" void __tsan_read_range(void*, unsigned long);
extern "C" void __tsan_write_range(void*, unsigned long);
inline void* sim_memcpy(void* d, const void* s, size_t n) {
  __tsan_read_range(const_cast<void*>(s), n);
  __tsan_write_range(d, n);
  return __builtin_memcpy(d, s, n);
}
inline void* sim_memmove(void* d, const void* s, size_t n) {
  __tsan_read_range(const_cast<void*>(s), n);
  __tsan_write_range(d, n);
  return __builtin_memmove(d, s, n);
}
inline void* sim_memset(void* d, int c, size_t n) {
  __tsan_write_range(d, n);
  return __builtin_memset(d, c, n);
}
namespace std { using ::sim_memcpy; using ::sim_memmove; using ::sim_memset; }
#define memcpy sim_memcpy
#define memmove sim_memmove
#define memset sim_memset

// ---- launcher glue (not instrumented: it reads the runtime's argument array) ------------
namespace sim {

// ``extern __shared__ T name[];`` at namespace scope: the launch's dynamic
// shared memory on every use (a pointer there would be set once, at start-up).
template <class T> struct DynamicShared {
  operator T*() const { return reinterpret_cast<T*>(dynamic_shared()); }
  T& operator[](long i) const { return reinterpret_cast<T*>(dynamic_shared())[i]; }
};

template <class T> struct scalar_info {
  static constexpr char kind = std::is_same<T, bool>::value ? 'b'
      : std::is_floating_point<T>::value ? 'f'
      : (std::is_same<T, char>::value || std::is_same<T, signed char>::value || std::is_same<T, unsigned char>::value) ? 'v'
      : std::is_integral<T>::value ? (std::is_signed<T>::value ? 'i' : 'u') : 's';
  static constexpr int elem = sizeof(T);
};
template <> struct scalar_info<void> { static constexpr char kind = 'v'; static constexpr int elem = 1; };
// scalar_info<__half>: in cuda_fp16.h
#define SIM_VECTOR_INFO(V, K, E) template <> struct scalar_info<V> { static constexpr char kind = K; static constexpr int elem = E; };
SIM_VECTOR_INFO(float2, 'f', 4) SIM_VECTOR_INFO(float3, 'f', 4) SIM_VECTOR_INFO(float4, 'f', 4)
SIM_VECTOR_INFO(double2, 'f', 8) SIM_VECTOR_INFO(double4, 'f', 8) SIM_VECTOR_INFO(int2, 'i', 4)
SIM_VECTOR_INFO(int3, 'i', 4) SIM_VECTOR_INFO(int4, 'i', 4) SIM_VECTOR_INFO(uint2, 'u', 4)
SIM_VECTOR_INFO(uint3, 'u', 4) SIM_VECTOR_INFO(uint4, 'u', 4)

template <class T> const char* type_name() { return __PRETTY_FUNCTION__; }  // "... [with T = float*]"

template <class A>
__attribute__((no_sanitize_thread)) ParamInfo param_info() {
  using P = std::remove_cv_t<std::remove_reference_t<A>>;
  using E = std::remove_cv_t<std::remove_pointer_t<P>>;
  ParamInfo info;
  info.size = sizeof(P);
  info.is_pointer = std::is_pointer<P>::value;
  if constexpr (std::is_pointer<P>::value) {
    if constexpr (std::is_void<E>::value) info.pointee_size = 1; else info.pointee_size = sizeof(E);
    info.kind = scalar_info<E>::kind;
    info.elem_size = scalar_info<E>::elem;
  } else {
    info.pointee_size = 0;
    info.kind = scalar_info<P>::kind;
    info.elem_size = sizeof(P);
  }
  info.type = type_name<P>();
  return info;
}

template <class... A>
__attribute__((no_sanitize_thread)) int signature(void (*)(A...), ParamInfo* out, int capacity) {
  ParamInfo all[] = {param_info<A>()..., ParamInfo{}};
  int n = sizeof...(A);
  for (int i = 0; i < n && i < capacity; ++i) out[i] = all[i];
  return n;
}

template <class... A, size_t... I>
__attribute__((no_sanitize_thread)) void invoke_with(void (*k)(A...), void** args, std::index_sequence<I...>) {
  k(*reinterpret_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

template <class... A>
__attribute__((no_sanitize_thread)) void invoke(void (*k)(A...), void** args) {
  invoke_with(k, args, std::index_sequence_for<A...>{});
}

}  // namespace sim
