// convops: the threadblock GEMM mainloop every GEMM-shaped kernel shares
// (implicit_gemm.cu, im2col.cu).
//
// C[m, n] = sum_k A[m, k] * B[k, n] over one BM x BN tile of C and one range
// [k_begin, k_end) of the reduction.  256 threads; BK = 8.  Operands are
// staged through shared memory, double-buffered: while the tile of k-step i
// is multiplied out of one buffer, the global loads of step i+1 are in
// flight into registers and are then stored into the other buffer (one
// __syncthreads per k-step).  Each thread accumulates a TM x TN register
// micro-tile in Acc<T> (float32 for float16 storage): rows tm + i*(BM/TM),
// columns tn + j*(BN/TN), with tm = tid % (BM/TM) -- consecutive threads
// own consecutive rows, so shared-memory reads are conflict-free (16
// distinct words, broadcast) and epilogue stores along m coalesce.
//
// Loaders gather their operand (an implicit im2col, a plain matrix ...):
//   fetch(k0, k_end)  global -> registers for the tile starting at k0,
//                     zero outside the operand (rows past M/N, k >= k_end)
//   stash(tile)       registers -> tile[BK][BM or BN] in shared memory
// The epilogue functor's store(m, n, value) is called for m < M, n < N.
// Rows, columns and their decompositions are 32-bit (a 64-bit division is a
// called subroutine on the GPU whose calls make ptxas spill): supports()
// keeps M and N below 2^31; element offsets are 64-bit.
#pragma once
#include "conv_common.cuh"

#define GEMM_THREADS 256
#define GEMM_BK 8

// Which elements of a [BK][ROWS] tile a thread loads: ROWS_FAST: row = tid %
// ROWS (fixed per thread), k = tid / ROWS + j * (256 / ROWS); K_FAST: k = tid
// % BK (fixed), row = tid / BK + j * (256 / BK).  COUNT loads per thread.
template <int ROWS> struct RowsFast {
  enum { COUNT = GEMM_BK * ROWS / GEMM_THREADS, STEP = GEMM_THREADS / ROWS };
  static __device__ __forceinline__ int row(int j) { return threadIdx.x % ROWS; }
  static __device__ __forceinline__ int k(int j) { return threadIdx.x / ROWS + j * STEP; }
};
template <int ROWS> struct KFast {
  enum { COUNT = GEMM_BK * ROWS / GEMM_THREADS, STEP = GEMM_THREADS / GEMM_BK };
  static __device__ __forceinline__ int row(int j) { return threadIdx.x / GEMM_BK + j * STEP; }
  static __device__ __forceinline__ int k(int j) { return threadIdx.x % GEMM_BK; }
};

// The mainloop's shared memory, declared by each kernel (`__shared__
// GemmShared<...> smem;`): static shared memory belongs to the kernel.
template <class A, int BM, int BN> struct GemmShared {
  A a[2][GEMM_BK][BM];
  A b[2][GEMM_BK][BN];
};

template <class T, int BM, int BN, int TM, int TN, class LoaderA, class LoaderB, class Epilogue>
__device__ __forceinline__ void gemm_tile(GemmShared<typename Acc<T>::type, BM, BN>& smem, LoaderA& la, LoaderB& lb,
                                          Epilogue& ep, int M, int N, index_t k_begin, index_t k_end, int m0, int n0) {
  typedef typename Acc<T>::type A;
  static_assert((BM / TM) * (BN / TN) == GEMM_THREADS, "one micro-tile per thread");
  A (*As)[GEMM_BK][BM] = smem.a;
  A (*Bs)[GEMM_BK][BN] = smem.b;
  A acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0;
  const int tm = threadIdx.x % (BM / TM), tn = threadIdx.x / (BM / TM);
  // A thread whose whole micro-tile lies past M or N (a skinny GEMM in a big
  // tile) still loads and meets every barrier, but skips the arithmetic.
  const bool active = m0 + tm < M && n0 + tn < N;

  int buf = 0;
  if (k_begin < k_end) {
    la.fetch(k_begin, k_end);
    lb.fetch(k_begin, k_end);
    la.stash(As[0]);
    lb.stash(Bs[0]);
  }
  __syncthreads();
  for (index_t k0 = k_begin; k0 < k_end; k0 += GEMM_BK) {
    const bool more = k0 + GEMM_BK < k_end;
    if (more) {  // next tile's global loads overlap this tile's arithmetic
      la.fetch(k0 + GEMM_BK, k_end);
      lb.fetch(k0 + GEMM_BK, k_end);
    }
    if (active) {
#pragma unroll
      for (int kk = 0; kk < GEMM_BK; ++kk) {
        A a[TM], b[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) a[i] = As[buf][kk][tm + i * (BM / TM)];
#pragma unroll
        for (int j = 0; j < TN; ++j) b[j] = Bs[buf][kk][tn + j * (BN / TN)];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
      }
    }
    if (more) {  // the other buffer was last read before the previous barrier
      la.stash(As[buf ^ 1]);
      lb.stash(Bs[buf ^ 1]);
    }
    __syncthreads();
    buf ^= 1;
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + tm + i * (BM / TM);
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int n = n0 + tn + j * (BN / TN);
      if (n < N) ep.store(m, n, acc[i][j]);
    }
  }
}

// Tile shapes per element type: 128 x 128 tiles, 8 x 8 micro-tiles for
// float16/float32 (64 accumulators); 64 x 64 and 4 x 4 for float64 (a double
// takes two registers).  Shared memory: 16 KiB per block either way.
template <class T> struct Tiles {
  enum { BM = 128, BN = 128, TM = 8, TN = 8 };
  typedef GemmShared<typename Acc<T>::type, BM, BN> Shared;
};
template <> struct Tiles<double> {
  enum { BM = 64, BN = 64, TM = 4, TN = 4 };
  typedef GemmShared<double, BM, BN> Shared;
};

// ---- epilogues shared by the GEMM-shaped algorithms -----------------------------------------
// y (N, K, Z, P, Q) from rows m = (n - n_begin, z, p, q) and columns kn (the
// output channel within group grp), plus bias.
template <class T> struct StoreY {
  T* y; const T* bias; ConvGeom g; int grp; int n_begin;
  __device__ __forceinline__ void store(int m, int kn, typename Acc<T>::type v) {
    const int plane = g.Z * g.P * g.Q;
    const int k = grp * g.Kg + kn;
    if (g.has_bias) v += load(bias, k);
    ::store(y, ((index_t)(n_begin + m / plane) * g.K + k) * plane + m % plane, v);
  }
};

// dw partial sums in Acc<T> (a workspace slot of K x Cg*T*R*S): rows kn,
// columns kk = (c, t, r, s); accumulate adds to what the slot holds (chunks
// summed one after another, in order).
template <class T> struct StoreWeightPartial {
  typename Acc<T>::type* out; int grp, Kg, KK; int accumulate;
  __device__ __forceinline__ void store(int kn, int kk, typename Acc<T>::type v) {
    const index_t i = ((index_t)grp * Kg + kn) * KK + kk;
    out[i] = accumulate ? out[i] + v : v;
  }
};
