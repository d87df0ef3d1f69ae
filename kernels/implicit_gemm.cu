// convops: implicit GEMM, the SIMT performance path (CUTLASS's analytic
// conv iterators, in the shape of gemm_tile.cuh's mainloop).  No im2col
// buffer: loaders gather the operands straight from the tensors.
//
// fwd    C[m = (n, z, p, q), kn]      = sum_{kk = (c, t, r, s)} xpad[...] * w[kn, kk]
// dgrad  C[m = (n, d, h, w), c]       = sum_{kk = (kn, t, r, s)} dy[...] * w[kn, c, t, r, s]
// wgrad  C[kn, kk = (c, t, r, s)]     = sum_{m = (n, z, p, q)} dy[n, kn, ...] * xpad[...]
// per group (grid z).  The per-kk filter offsets (channel, t*dd, r*dh, s*dw)
// are precomputed by the launcher into `taps` (4 ints per kk), so the inner
// loads do no division.
//
// Tiles (gemm_tile.cuh, Tiles<T>): 128x128x8, 8x8 micro-tiles, 256 threads
// (float64: 64x64x8, 4x4); grid x = M tiles, y = N tiles (N <= 65535 tiles,
// checked by supports()), z = groups (x split-K slices for wgrad), looped
// past 65535; M, N and the wgrad reduction below 2^31 (supports()).  dgrad here is the gather for any stride, but the launcher runs
// strides > 1 as stride-1 phase sub-problems, so no inserted zero is
// multiplied; zero-filled borders make it exact only for finite weights (the
// launcher checks, and runs direct otherwise).  wgrad splits its reduction
// (N*Z*P*Q, huge) into slices whose partial sums a second kernel adds in a
// fixed order: deterministic, no atomics.
#include "gemm_tile.cuh"

// ---- fwd --------------------------------------------------------------------------------------
template <class T, int BM> struct FwdA {  // A[m, kk] = xpad[n, grp*Cg + c, z*sd - pd + t*dd, ...]
  typedef typename Acc<T>::type A;
  typedef RowsFast<BM> Map;
  const T* x; const int* taps; const ConvGeom& g; int c0;
  bool valid; int n, z0, y0, x0;
  A r[Map::COUNT];
  __device__ FwdA(const T* x_, const int* taps_, const ConvGeom& g_, int grp, int m, int M)
      : x(x_), taps(taps_), g(g_), c0(grp * g_.Cg), valid(m < M) {
    int rest = valid ? m : 0;
    const int q = rest % g.Q; rest /= g.Q;
    const int p = rest % g.P; rest /= g.P;
    const int z = rest % g.Z;
    n = rest / g.Z;
    z0 = z * g.sd - g.pd; y0 = p * g.sh - g.ph; x0 = q * g.sw - g.pw;
  }
  __device__ __forceinline__ void fetch(index_t k0, index_t k_end) {
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) {
      const index_t k = k0 + Map::k(j);
      A v = 0;
      if (valid && k < k_end) {
        const int* e = taps + 4 * k;
        const index_t off = input_offset(g, n, c0 + e[0], z0 + e[1], y0 + e[2], x0 + e[3]);
        if (off >= 0) v = load(x, off);
      }
      r[j] = v;
    }
  }
  __device__ __forceinline__ void stash(A (*s)[BM]) {
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) s[Map::k(j)][Map::row(j)] = r[j];
  }
};

template <class T, int BN> struct WeightRowsB {  // B[kk, kn] = w[(grp*Kg + kn) * KK + kk]: k contiguous
  typedef typename Acc<T>::type A;
  typedef KFast<BN> Map;
  const T* w; index_t base[Map::COUNT]; bool ok[Map::COUNT];
  A r[Map::COUNT];
  __device__ WeightRowsB(const T* w_, int grp, int Kg, int KK, int n0) : w(w_) {
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) {
      const int kn = n0 + Map::row(j);
      ok[j] = kn < Kg;
      base[j] = ((index_t)grp * Kg + kn) * KK;
    }
  }
  __device__ __forceinline__ void fetch(index_t k0, index_t k_end) {
    const index_t k = k0 + Map::k(0);
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) r[j] = ok[j] && k < k_end ? load(w, base[j] + k) : A(0);
  }
  __device__ __forceinline__ void stash(A (*s)[BN]) {
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) s[Map::k(j)][Map::row(j)] = r[j];
  }
};

// igemm_fwd: y = conv(x, w) + bias.  M = N*Z*P*Q, N = Kg, K = Cg*T*R*S per group.
// Block -> tile: block (bx, by) computes the 128x128 (float64: 64x64) tile of
// rows m0 = bx*BM (output positions) and columns n0 = by*BN (output channels
// of group bz, looped past 65535); thread -> micro-tile as in gemm_tile.cuh.
// Loads: A gathers x through `taps` and the padding mode (zeros past the
// padding), B reads weight rows along k.  Limits: M < 2^31, <= 65535 column
// tiles (supports()).
template <class T>
__global__ void __launch_bounds__(GEMM_THREADS, 1) igemm_fwd(const T* __restrict__ x, const T* __restrict__ w,
                                                           const T* __restrict__ bias, const int* __restrict__ taps,
                                                           T* __restrict__ y, ConvGeom g) {
  typedef Tiles<T> Ti;
  __shared__ typename Ti::Shared smem;
  const int M = g.N * g.Z * g.P * g.Q;
  const int KK = g.Cg * g.T * g.R * g.S;
  const int m0 = blockIdx.x * Ti::BM;
  const int n0 = blockIdx.y * Ti::BN;
  for (int grp = blockIdx.z; grp < g.groups; grp += gridDim.z) {
    FwdA<T, Ti::BM> la(x, taps, g, grp, m0 + RowsFast<Ti::BM>::row(0), M);
    WeightRowsB<T, Ti::BN> lb(w, grp, g.Kg, KK, n0);
    StoreY<T> ep{y, bias, g, grp, 0};
    gemm_tile<T, Ti::BM, Ti::BN, Ti::TM, Ti::TN>(smem, la, lb, ep, M, g.Kg, 0, KK, m0, n0);
  }
}

// ---- dgrad ------------------------------------------------------------------------------------
template <class T, int BM> struct DgradA {  // A[m, kk] = dy[n, grp*Kg + kn, (d + pd - t*dd) / sd, ...] where exact
  typedef typename Acc<T>::type A;
  typedef RowsFast<BM> Map;
  const T* dy; const int* taps; const ConvGeom& g; int k0;
  bool valid; int n, zd, yd, xd;
  A r[Map::COUNT];
  __device__ DgradA(const T* dy_, const int* taps_, const ConvGeom& g_, int grp, int m, int M)
      : dy(dy_), taps(taps_), g(g_), k0(grp * g_.Kg), valid(m < M) {
    int rest = valid ? m : 0;
    const int ix = rest % g.W; rest /= g.W;
    const int iy = rest % g.H; rest /= g.H;
    const int iz = rest % g.D;
    n = rest / g.D;
    zd = iz + g.pd; yd = iy + g.ph; xd = ix + g.pw;
  }
  __device__ __forceinline__ void fetch(index_t k0_, index_t k_end) {
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) {
      const index_t k = k0_ + Map::k(j);
      A v = 0;
      if (valid && k < k_end) {
        const int* e = taps + 4 * k;
        const int z = output_index(zd - e[1], g.sd, g.Z), p = output_index(yd - e[2], g.sh, g.P),
                  q = output_index(xd - e[3], g.sw, g.Q);
        if ((z | p | q) >= 0)
          v = load(dy, (((index_t)n * g.K + k0 + e[0]) * g.Z + z) * g.P * (index_t)g.Q + (index_t)p * g.Q + q);
      }
      r[j] = v;
    }
  }
  __device__ __forceinline__ void stash(A (*s)[BM]) {
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) s[Map::k(j)][Map::row(j)] = r[j];
  }
};

template <class T, int BN> struct DgradB {  // B[kk = (kn, trs), c] = w[((grp*Kg + kn)*Cg + c)*TRS + trs]
  typedef typename Acc<T>::type A;
  typedef KFast<BN> Map;
  const T* w; const int* taps; const ConvGeom& g; int grp, TRS;
  A r[Map::COUNT];
  int c[Map::COUNT];
  __device__ DgradB(const T* w_, const int* taps_, const ConvGeom& g_, int grp_, int n0)
      : w(w_), taps(taps_), g(g_), grp(grp_), TRS(g_.T * g_.R * g_.S) {
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) c[j] = n0 + Map::row(j);
  }
  __device__ __forceinline__ void fetch(index_t k0, index_t k_end) {
    const index_t k = k0 + Map::k(0);
    const bool kin = k < k_end;
    const int kn = kin ? taps[4 * k] : 0;
    const index_t base = ((index_t)grp * g.Kg + kn) * g.Cg * TRS + (k - (index_t)kn * TRS);
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) r[j] = kin && c[j] < g.Cg ? load(w, base + (index_t)c[j] * TRS) : A(0);
  }
  __device__ __forceinline__ void stash(A (*s)[BN]) {
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) s[Map::k(j)][Map::row(j)] = r[j];
  }
};

template <class T> struct StoreDx {  // dx (N, C, D, H, W) from rows m = (n, d, h, w), columns c (+ bias)
  T* dx; const T* bias; ConvGeom g; int grp;
  __device__ __forceinline__ void store(int m, int c, typename Acc<T>::type v) {
    const int plane = g.D * g.H * g.W;
    const int ci = grp * g.Cg + c;
    if (g.has_bias) v += load(bias, ci);
    ::store(dx, ((index_t)(m / plane) * g.C + ci) * plane + m % plane, v);
  }
};

// igemm_dgrad: dx = conv_transpose(dy, w) + bias.  M = N*D*H*W, N = Cg, K = Kg*T*R*S.
// Block -> tile: rows m0 = bx*BM (input positions), columns n0 = by*BN (input
// channels of group bz); A gathers dy at (i + pad - tap*dilation) / stride
// where that divides exactly and lies in the output (the launcher passes
// stride-1 phase sub-problems), B reads w[kn, c, tap].  Exact for a finite
// weight only (zero-filled borders multiply it: the launcher checks).
template <class T>
__global__ void __launch_bounds__(GEMM_THREADS, 1) igemm_dgrad(const T* __restrict__ dy, const T* __restrict__ w,
                                                             const T* __restrict__ bias, const int* __restrict__ taps,
                                                             T* __restrict__ dx, ConvGeom g) {
  typedef Tiles<T> Ti;
  __shared__ typename Ti::Shared smem;
  const int M = g.N * g.D * g.H * g.W;
  const int KK = g.Kg * g.T * g.R * g.S;
  const int m0 = blockIdx.x * Ti::BM;
  const int n0 = blockIdx.y * Ti::BN;
  for (int grp = blockIdx.z; grp < g.groups; grp += gridDim.z) {
    DgradA<T, Ti::BM> la(dy, taps, g, grp, m0 + RowsFast<Ti::BM>::row(0), M);
    DgradB<T, Ti::BN> lb(w, taps, g, grp, n0);
    StoreDx<T> ep{dx, bias, g, grp};
    gemm_tile<T, Ti::BM, Ti::BN, Ti::TM, Ti::TN>(smem, la, lb, ep, M, g.Cg, 0, KK, m0, n0);
  }
}

// ---- wgrad ------------------------------------------------------------------------------------
template <class T, int BM> struct WgradA {  // A[kn, m] = dy[n, grp*Kg + kn, z, p, q]: m contiguous
  typedef typename Acc<T>::type A;
  typedef KFast<BM> Map;
  const T* dy; const ConvGeom& g; int grp;
  int kn[Map::COUNT];
  A r[Map::COUNT];
  __device__ WgradA(const T* dy_, const ConvGeom& g_, int grp_, int m0) : dy(dy_), g(g_), grp(grp_) {
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) kn[j] = m0 + Map::row(j);
  }
  __device__ __forceinline__ void fetch(index_t k0, index_t k_end) {
    const int m = (int)(k0 + Map::k(0));
    const bool in = m < k_end;
    const int plane = g.Z * g.P * g.Q;
    const index_t base = in ? ((index_t)(m / plane) * g.K + (index_t)grp * g.Kg) * plane + m % plane : 0;
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) r[j] = in && kn[j] < g.Kg ? load(dy, base + (index_t)kn[j] * plane) : A(0);
  }
  __device__ __forceinline__ void stash(A (*s)[BM]) {
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) s[Map::k(j)][Map::row(j)] = r[j];
  }
};

template <class T, int BN> struct WgradB {  // B[m, kk] = xpad[n, grp*Cg + c, z*sd - pd + t*dd, ...]
  typedef typename Acc<T>::type A;
  typedef KFast<BN> Map;
  const T* x; const ConvGeom& g; int c0;
  int e[Map::COUNT][4];  // each column's (c, t*dd, r*dh, s*dw), or c = -1 past the last column
  A r[Map::COUNT];
  __device__ WgradB(const T* x_, const int* taps, const ConvGeom& g_, int grp, int n0, int KK)
      : x(x_), g(g_), c0(grp * g_.Cg) {
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) {
      const int kk = n0 + Map::row(j);
#pragma unroll
      for (int i = 0; i < 4; ++i) e[j][i] = kk < KK ? taps[4 * kk + i] : -1;
    }
  }
  __device__ __forceinline__ void fetch(index_t k0, index_t k_end) {
    const int m = (int)(k0 + Map::k(0));
    const bool in = m < k_end;
    int rest = in ? m : 0;
    const int q = rest % g.Q; rest /= g.Q;
    const int p = rest % g.P; rest /= g.P;
    const int z = rest % g.Z;
    const int n = rest / g.Z;
    const int z0 = z * g.sd - g.pd, y0 = p * g.sh - g.ph, x0 = q * g.sw - g.pw;
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) {
      A v = 0;
      if (in && e[j][0] >= 0) {
        const index_t off = input_offset(g, n, c0 + e[j][0], z0 + e[j][1], y0 + e[j][2], x0 + e[j][3]);
        if (off >= 0) v = load(x, off);
      }
      r[j] = v;
    }
  }
  __device__ __forceinline__ void stash(A (*s)[BN]) {
#pragma unroll
    for (int j = 0; j < Map::COUNT; ++j) s[Map::k(j)][Map::row(j)] = r[j];
  }
};

// igemm_wgrad: partial[split][grp][kn][kk] over slice `split` of the
// reduction m in [split*chunk, min((split+1)*chunk, N*Z*P*Q)); chunk is a
// multiple of GEMM_BK.  M = Kg, N = Cg*T*R*S.  grid z = groups * splits.
template <class T>
__global__ void __launch_bounds__(GEMM_THREADS, 1) igemm_wgrad(const T* __restrict__ x, const T* __restrict__ dy,
                                                             const int* __restrict__ taps,
                                                             typename Acc<T>::type* __restrict__ partial, ConvGeom g,
                                                             int splits, long long chunk) {
  typedef Tiles<T> Ti;
  __shared__ typename Ti::Shared smem;
  const index_t red = (index_t)g.N * g.Z * g.P * g.Q;
  const int KK = g.Cg * g.T * g.R * g.S;
  const int m0 = blockIdx.x * Ti::BM;
  const int n0 = blockIdx.y * Ti::BN;
  for (int zi = blockIdx.z; zi < g.groups * splits; zi += gridDim.z) {
    const int grp = zi % g.groups, split = zi / g.groups;
    const index_t k_begin = split * chunk, k_end = min(red, k_begin + chunk);
    WgradA<T, Ti::BM> la(dy, g, grp, m0);
    WgradB<T, Ti::BN> lb(x, taps, g, grp, n0, KK);
    StoreWeightPartial<T> ep{partial + (index_t)split * g.K * KK, grp, g.Kg, KK, 0};
    gemm_tile<T, Ti::BM, Ti::BN, Ti::TM, Ti::TN>(smem, la, lb, ep, g.Kg, KK, k_begin, k_end, m0, n0);
  }
}

// sum_splits: out[i] = sum over s of partial[s * count + i], s ascending (a
// fixed order: deterministic), converted to T.  One thread per element.
template <class T>
__global__ void __launch_bounds__(256, 1) sum_splits(const typename Acc<T>::type* __restrict__ partial,
                                                   T* __restrict__ out, long long count, int splits) {
  GRID_STRIDE_LOOP(i, count) {
    typename Acc<T>::type acc = 0;
    for (int s = 0; s < splits; ++s) acc += partial[s * count + i];
    store(out, i, acc);
  }
}
