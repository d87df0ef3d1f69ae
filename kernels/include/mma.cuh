// convops: the tensor-core instructions (sm_80 and newer), in one place.
//
//   mma_f16_16816   mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32   D += A * B
//   mma_tf32_1688   mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32  D += A * B
//   ldmatrix<N, TRANS>  ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16
//   cp_async_16     cp.async.cg.shared.global, 16 bytes, zero-filled past src_bytes
//   cp_async_commit / cp_async_wait<N>   cp.async.commit_group / wait_group N
//   tf32_round      cvt.rna.tf32.f32
//
// Under NVRTC each is one inline PTX instruction.  Under the simulator
// (CONVOPS_SIM) the warp-collective ones are sim::warp_exchange calls: every
// lane of the warp waits at the same instruction (a lane that does not arrive
// is reported as divergence), receives every lane's operand registers, and
// computes its own result from the PTX ISA's per-lane fragment layouts -- so a
// kernel that puts an element in the wrong register gets a wrong answer here,
// as it would on a GPU.  cp.async is the runtime's asynchronous copy: the
// source is read at issue, the destination written at the wait that covers it,
// and any access to the destination in between is reported.
//
// Fragment layouts (PTX ISA, "Matrix fragments for mma.m16n8k16 / m16n8k8"),
// with g = lane / 4 (groupID) and t = lane % 4 (threadID_in_group):
//   m16n8k16 f16:  a[i] (i = 0..3) holds A[g + 8*(i%2)][2t + 8*(i/2) + {0,1}] (low half first)
//                  b[i] (i = 0..1) holds B[2t + 8*i + {0,1}][g]
//   m16n8k8 tf32:  a[i] holds A[g + 8*(i%2)][t + 4*(i/2)];  b[i] holds B[t + 4*i][g]
//   both:          d[i] (i = 0..3) is D[g + 8*(i/2)][2t + i%2]
// ldmatrix: lanes 8j..8j+7 give the row addresses (16 bytes each, 16-byte
// aligned) of matrix j; lane l receives, of each matrix, the two b16 at row
// l/4, columns 2*(l%4) and 2*(l%4)+1 (.trans: rows 2*(l%4), 2*(l%4)+1 of
// column l/4).
//
// Arithmetic of the simulator's mma: products are exact (f16 x f16 and tf32 x
// tf32 fit a double), the 16 (8) products and the accumulator are summed in
// double and rounded once to float.  The hardware accumulates with at least
// float32 precision in an order PTX leaves unspecified, so results may differ
// from a GPU's in the last bits; never in which elements meet.  tf32 operands
// are read as their top 19 bits (sign, exponent, 10 mantissa bits), as the
// hardware reads them; the kernels always pass tf32_round results.
#pragma once
#include "conv_common.cuh"

#ifdef CONVOPS_SIM
// The call site, for the simulator's divergence check (lanes at different
// mma/ldmatrix calls of one kernel are divergent).
#define MMA_SITE , long sim_site = __builtin_LINE()
#define MMA_SITE_ARG sim_site
#else
#define MMA_SITE
#endif

// ---- TF32 -----------------------------------------------------------------------------------
// cvt.rna.tf32.f32: round to 10 mantissa bits, to nearest, ties away from
// zero; the result's low 13 bits are zero.  Infinities stay; a NaN stays NaN.
__device__ __forceinline__ unsigned tf32_round(float x) {
#ifdef CONVOPS_SIM
  unsigned u = __float_as_uint(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return (u & 0x7fffffu) ? 0x7fffffffu : u;
  return (u + 0x1000u) & 0xffffe000u;  // half of the dropped ulp onto the magnitude: ties go away from zero
#else
  unsigned r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
#endif
}

// float32 on TF32 tensor cores: x = hi + mid + lo, each a TF32 value (11
// significant bits, so three hold all 24 of a float32 exactly, for |x| >=
// 2^-114; below, mid and lo fall on TF32's subnormal grid of 2^-136 and x
// keeps an absolute error up to 2^-137): hi =
// tf32_round(x) (its truncation if that would overflow), mid =
// tf32_round(x - hi), lo = tf32_round(x - hi - mid) (exact: at most 2 bits
// remain).  a*b is then hi*hi + hi*mid + mid*hi + mid*mid + hi*lo + lo*hi
// up to 2^-34 |a*b| (six products, "exact"); hi*hi + hi*mid + mid*hi is
// 3xTF32 (up to about 2^-22 |a*b|: two 11-bit pieces cannot hold 24 bits).
// hif is hi for finite x and 0 otherwise, mid and lo are 0 for non-finite x,
// and the correction products use hif: an infinity or NaN reaches the result
// through hi*hi alone (a correction term would turn Inf*0 into a NaN).
// Limits: |x| below 2^-137 rounds to a TF32 zero (then such an x times an
// infinity gives NaN, not the reference's infinity); |x| below 2^-114 keeps
// fewer than 24 bits (2^-120: relative error up to about 8e-6).
__device__ __forceinline__ void split_tf32(float x, unsigned& hi, unsigned& hif, unsigned& mid, unsigned& lo) {
  const bool finite = (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u;
  hi = tf32_round(x);
  if (finite && (hi & 0x7f800000u) == 0x7f800000u) hi = __float_as_uint(x) & 0xffffe000u;
  const float r = finite ? x - __uint_as_float(hi) : 0.f;  // exact
  mid = tf32_round(r);
  lo = tf32_round(r - __uint_as_float(mid));                // exact, and exactly representable
  hif = finite ? hi : 0u;
}

// ---- shared-memory addresses --------------------------------------------------------------------
#ifndef CONVOPS_SIM
__device__ __forceinline__ unsigned shared_address(const void* p) {
  unsigned r;
  asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
  return r;
}
#endif

// ---- cp.async -----------------------------------------------------------------------------------
// 16 bytes from global src to shared dst (both 16-byte aligned); bytes past
// src_bytes (0 or 16 in the kernels) are zeros and src is not read there.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, int src_bytes) {
#ifdef CONVOPS_SIM
  ::sim::cp_async(dst, src, 16, src_bytes);
#else
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(dst)), "l"(src),
               "r"(src_bytes));
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#ifdef CONVOPS_SIM
  ::sim::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Wait until at most N of this thread's committed groups are pending.
template <int N> __device__ __forceinline__ void cp_async_wait() {
#ifdef CONVOPS_SIM
  ::sim::cp_async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// ---- ldmatrix -----------------------------------------------------------------------------------
#ifdef CONVOPS_SIM
// Lane l's registers from the 8*num exchanged rows (8 b16 each): of matrix j,
// row l/4, columns 2*(l%4) and 2*(l%4)+1 (trans: rows 2*(l%4), 2*(l%4)+1 of column l/4).
static __attribute__((noinline, no_sanitize_thread)) void sim_ldmatrix_fragments(unsigned* r, int num, bool trans,
                                                                                 const unsigned short* rows) {
  const int lane = ::sim::lane_id(), g = lane / 4, t = lane % 4;
  for (int j = 0; j < num; ++j) {
    const unsigned short* m = rows + 64 * j;  // matrix j: 8 rows of 8
    const unsigned lo = trans ? m[(2 * t) * 8 + g] : m[g * 8 + 2 * t];
    const unsigned hi = trans ? m[(2 * t + 1) * 8 + g] : m[g * 8 + 2 * t + 1];
    r[j] = lo | (hi << 16);
  }
}
#endif
template <int NUM, bool TRANS>
__device__ __forceinline__ void ldmatrix(unsigned (&r)[NUM], const void* row MMA_SITE) {
  static_assert(NUM == 1 || NUM == 2 || NUM == 4, "ldmatrix loads 1, 2 or 4 matrices");
#ifdef CONVOPS_SIM
  struct Row { unsigned short e[8]; };
  const int lane = ::sim::lane_id();
  Row mine, all[32];
  if (lane < 8 * NUM) {  // the lanes whose addresses the instruction uses
    if (reinterpret_cast<unsigned long>(row) % 16) ::sim::trap("ldmatrix: a row address not 16-byte aligned", __FILE__, __LINE__);
    if (!::sim::is_shared(row, 16)) ::sim::trap("ldmatrix: a row address outside shared memory", __FILE__, __LINE__);
    mine = *static_cast<const Row*>(row);  // this lane's read: bounds, races and pending cp.async checked
  } else {
    for (int i = 0; i < 8; ++i) mine.e[i] = 0xFFFF;
  }
  ::sim::warp_exchange(MMA_SITE_ARG, ::sim::W_LDMATRIX, 0xffffffffu, &mine, sizeof mine, all);
  sim_ldmatrix_fragments(r, NUM, TRANS, all[0].e);
#else
  const unsigned a = shared_address(row);
  if constexpr (NUM == 1 && !TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
  if constexpr (NUM == 1 && TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
  if constexpr (NUM == 2 && !TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
  if constexpr (NUM == 2 && TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
  if constexpr (NUM == 4 && !TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
  if constexpr (NUM == 4 && TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a));
#endif
}

// ---- mma.sync -----------------------------------------------------------------------------------
#ifdef CONVOPS_SIM
struct MmaOperands { unsigned a[4], b[2]; };
__attribute__((no_sanitize_thread)) inline float sim_f16(unsigned reg, int high) {
  const unsigned short bits = (unsigned short)(high ? reg >> 16 : reg & 0xFFFFu);
  _Float16 h;
  __builtin_memcpy(&h, &bits, sizeof h);
  return (float)h;
}
__attribute__((no_sanitize_thread)) inline float sim_tf32(unsigned reg) {
  unsigned bits = reg & 0xffffe000u;
  float f;
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
}
#endif

#ifdef CONVOPS_SIM
// The emulations touch only this lane's registers and the exchanged copies (its
// own stack): uninstrumented, so the simulator's per-access checks do not
// dominate a tensor-core kernel's run time.
#define SIM_EMULATION static __attribute__((noinline, no_sanitize_thread))
SIM_EMULATION void sim_mma_f16(float* d, const unsigned* a, const unsigned* b, long site) {
  MmaOperands mine, all[32];
  for (int i = 0; i < 4; ++i) mine.a[i] = a[i];
  for (int i = 0; i < 2; ++i) mine.b[i] = b[i];
  ::sim::warp_exchange(site, ::sim::W_MMA, 0xffffffffu, &mine, sizeof mine, all);
  const int lane = ::sim::lane_id(), g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
    double s = d[i];
    for (int k = 0; k < 16; ++k) {
      // A[row][k]: lane (row%8)*4 + (k%8)/2, register row/8 + 2*(k/8), half k%2
      const float x = sim_f16(all[(row % 8) * 4 + (k % 8) / 2].a[row / 8 + 2 * (k / 8)], k % 2);
      // B[k][col]: lane col*4 + (k%8)/2, register k/8, half k%2
      const float y = sim_f16(all[col * 4 + (k % 8) / 2].b[k / 8], k % 2);
      s += (double)x * (double)y;
    }
    d[i] = (float)s;
  }
}
SIM_EMULATION void sim_mma_tf32(float* d, const unsigned* a, const unsigned* b, long site) {
  MmaOperands mine, all[32];
  for (int i = 0; i < 4; ++i) mine.a[i] = a[i];
  for (int i = 0; i < 2; ++i) mine.b[i] = b[i];
  ::sim::warp_exchange(site, ::sim::W_MMA, 0xffffffffu, &mine, sizeof mine, all);
  const int lane = ::sim::lane_id(), g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
    double s = d[i];
    for (int k = 0; k < 8; ++k) {
      // A[row][k]: lane (row%8)*4 + k%4, register row/8 + 2*(k/4);  B[k][col]: lane col*4 + k%4, register k/4
      const float x = sim_tf32(all[(row % 8) * 4 + k % 4].a[row / 8 + 2 * (k / 4)]);
      const float y = sim_tf32(all[col * 4 + k % 4].b[k / 4]);
      s += (double)x * (double)y;
    }
    d[i] = (float)s;
  }
}
#endif

__device__ __forceinline__ void mma_f16_16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2] MMA_SITE) {
#ifdef CONVOPS_SIM
  sim_mma_f16(d, a, b, MMA_SITE_ARG);
#else
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

__device__ __forceinline__ void mma_tf32_1688(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2] MMA_SITE) {
#ifdef CONVOPS_SIM
  sim_mma_tf32(d, a, b, MMA_SITE_ARG);
#else
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
               "{%0, %1, %2, %3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}
