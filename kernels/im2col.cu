// convops: im2col + GEMM.  The column buffer of a chunk of nb images is
// col[grp][kk = (c, t, r, s)][m = (n - n_begin, z, p, q)] (rows of Mc = nb*Z*P*Q);
// the GEMM is gemm_tile.cuh's mainloop over plain strided matrices.
//
// fwd    col = im2col(x);  y[n, grp*Kg + kn, pos] = sum_kk w[grp*Kg + kn, kk] * col[grp][kk][m]
// dgrad  col[grp][kk][m] (in Acc<T>) = sum_kn w[grp*Kg + kn, kk] * dy[n, grp*Kg + kn, pos];  dx = col2im(col)
// wgrad  col = im2col(x);  dw[grp*Kg + kn, kk] += sum_m dy[n, grp*Kg + kn, pos] * col[grp][kk][m]
//        (chunks added one after another into a float32/float64 buffer)
#include "gemm_tile.cuh"

// im2col: col from x for images [n_begin, n_begin + nb).  Thread -> element:
// one per col element, m fastest (coalesced writes; reads along output rows).
// Padded positions are zeros (zeros mode) or read through the padding mode.
template <class T>
__global__ void __launch_bounds__(256, 1) im2col(const T* __restrict__ x, T* __restrict__ col, ConvGeom g, int n_begin,
                                               int nb) {
  const index_t plane = (index_t)g.Z * g.P * g.Q;
  const index_t Mc = nb * plane;
  const int TRS = g.T * g.R * g.S;
  const index_t total = (index_t)g.groups * g.Cg * TRS * Mc;
  GRID_STRIDE_LOOP(i, total) {
    const index_t m = i % Mc;
    const index_t row = i / Mc;  // grp * Cg*TRS + kk
    const int trs = row % TRS;
    const int ci = (int)(row / TRS);  // grp * Cg + c
    const int s = trs % g.S, r = (trs / g.S) % g.R, t = trs / (g.S * g.R);
    const int q = m % g.Q, p = (m / g.Q) % g.P, z = (m / ((index_t)g.Q * g.P)) % g.Z;
    const int n = n_begin + (int)(m / plane);
    const index_t off = input_offset(g, n, ci, z * g.sd - g.pd + t * g.dd, p * g.sh - g.ph + r * g.dh,
                                     q * g.sw - g.pw + s * g.dw);
    store(col, i, off >= 0 ? load(x, off) : typename Acc<T>::type(0));
  }
}

// col2im: dx for images [n_begin, n_begin + nb) from the dgrad column buffer,
// plus bias.  Thread -> element: one per dx element, w fastest; it gathers
// the (tap, output) pairs that read it (exact division by the stride, inside
// the output): only the reference's terms, in a fixed order, no atomics.
template <class T>
__global__ void __launch_bounds__(256, 1) col2im(const typename Acc<T>::type* __restrict__ col,
                                                  const T* __restrict__ bias,
                                               T* __restrict__ dx, ConvGeom g, int n_begin, int nb) {
  typedef typename Acc<T>::type A;
  const index_t plane = (index_t)g.Z * g.P * g.Q;
  const index_t Mc = nb * plane;
  const int TRS = g.T * g.R * g.S;
  const index_t total = (index_t)nb * g.C * g.D * g.H * g.W;
  GRID_STRIDE_LOOP(i, total) {
    index_t rest = i;
    const int ix = rest % g.W; rest /= g.W;
    const int iy = rest % g.H; rest /= g.H;
    const int iz = rest % g.D; rest /= g.D;
    const int ci = rest % g.C;
    const int nl = (int)(rest / g.C);
    A acc = 0;
    for (int t = 0; t < g.T; ++t) {
      const int z = output_index(iz + g.pd - t * g.dd, g.sd, g.Z);
      if (z < 0) continue;
      for (int r = 0; r < g.R; ++r) {
        const int p = output_index(iy + g.ph - r * g.dh, g.sh, g.P);
        if (p < 0) continue;
        for (int s = 0; s < g.S; ++s) {
          const int q = output_index(ix + g.pw - s * g.dw, g.sw, g.Q);
          if (q < 0) continue;
          const index_t m = nl * plane + ((index_t)z * g.P + p) * g.Q + q;
          acc += col[((index_t)ci * TRS + (t * g.R + r) * g.S + s) * Mc + m];
        }
      }
    }
    if (g.has_bias) acc += load(bias, ci);
    store(dx, (index_t)n_begin * g.C * g.D * g.H * g.W + i, acc);
  }
}

// A strided matrix operand of the GEMM: element (row, k) at
//   base + (row / ri) * ro + (row % ri) * rs + (k / ki) * ko + (k % ki) * ks
// (ri or ki 0: no split along that index).  MAP: RowsFast<> when rows are
// contiguous in memory, KFast<> when k is.  The fixed index of each load
// (RowsFast: the row, KFast: k) is split once per fetch, not per element.
template <class T, int ROWS, class MAP> struct MatrixLoader {
  typedef typename Acc<T>::type A;
  const T* p; index_t rows, ri, ro, rs, ki, ko, ks;
  A r[MAP::COUNT];
  __device__ __forceinline__ index_t row_off(index_t row) const {
    return ri ? (row / ri) * ro + (row % ri) * rs : row * rs;
  }
  __device__ __forceinline__ index_t k_off(index_t k) const { return ki ? (k / ki) * ko + (k % ki) * ks : k * ks; }
  __device__ __forceinline__ void fetch(index_t row0, index_t k0, index_t k_end) {
#pragma unroll
    for (int j = 0; j < MAP::COUNT; ++j) {
      const index_t row = row0 + MAP::row(j), k = k0 + MAP::k(j);
      r[j] = row < rows && k < k_end ? load(p, row_off(row) + k_off(k)) : A(0);
    }
  }
  __device__ __forceinline__ void stash(A (*s)[ROWS]) {
#pragma unroll
    for (int j = 0; j < MAP::COUNT; ++j) s[MAP::k(j)][MAP::row(j)] = r[j];
  }
};

// gemm_tile's loader interface over a MatrixLoader anchored at a tile's first row.
template <class L> struct Anchored {
  L& l; index_t row0;
  __device__ __forceinline__ void fetch(index_t k0, index_t k_end) { l.fetch(row0, k0, k_end); }
  template <class S> __device__ __forceinline__ void stash(S s) { l.stash(s); }
};

template <class A> struct StoreMatrix {  // C[row, col] at out[col * ld + row], in the accumulation type
  A* out; index_t ld;
  __device__ __forceinline__ void store(int row, int col, A v) { out[col * ld + row] = v; }
};

// im2col_gemm: one GEMM per group (grid z, looped past 65535) for chunk
// [n_begin, n_begin + nb).  pass 0 fwd (M = Mc, N = Kg, K = Cg*TRS, into y);
// pass 1 dgrad (M = Mc, N = Cg*TRS, K = Kg, into the Acc<T> column buffer `partial`:
// float16's per-tap sums are not rounded to float16 before col2im adds them); pass 2 wgrad (M = Kg,
// N = Cg*TRS, K = Mc split into `splits` slices of `chunk` -- grid z = groups
// * splits -- each added into its own Acc<T> slot of `partial`, K x Cg*TRS per
// slot, unless `first`; a second kernel adds the slots in order).
// Tiles as implicit_gemm.cu (Tiles<T>).
template <class T>
__global__ void __launch_bounds__(GEMM_THREADS, 1) im2col_gemm(const T* __restrict__ a, const T* __restrict__ b,
                                                             const T* __restrict__ bias, T* __restrict__ out,
                                                             typename Acc<T>::type* __restrict__ partial, ConvGeom g,
                                                             int pass, int n_begin, int nb, int first, int splits,
                                                             long long chunk) {
  typedef Tiles<T> Ti;
  __shared__ typename Ti::Shared smem;
  const index_t plane = (index_t)g.Z * g.P * g.Q;
  const index_t Mc = nb * plane;
  const int TRS = g.T * g.R * g.S, KK = g.Cg * TRS;
  const int m0 = blockIdx.x * Ti::BM;
  const int n0 = blockIdx.y * Ti::BN;
  for (int zi = blockIdx.z; zi < g.groups * splits; zi += gridDim.z) {
    const int grp = zi % g.groups, split = zi / g.groups;
    const T* colg = (pass == 0 ? a : b) + (index_t)grp * KK * Mc;  // fwd and wgrad read col
    if (pass == 0) {  // A = col[grp] (rows m contiguous), B = w rows (k contiguous)
      MatrixLoader<T, Ti::BM, RowsFast<Ti::BM>> ma{colg, Mc, 0, 0, 1, 0, 0, Mc};
      MatrixLoader<T, Ti::BN, KFast<Ti::BN>> mb{b + (index_t)grp * g.Kg * KK, g.Kg, 0, 0, KK, 0, 0, 1};
      Anchored<decltype(ma)> la{ma, m0};
      Anchored<decltype(mb)> lb{mb, n0};
      StoreY<T> ep{out, bias, g, grp, n_begin};
      gemm_tile<T, Ti::BM, Ti::BN, Ti::TM, Ti::TN>(smem, la, lb, ep, (int)Mc, g.Kg, 0, KK, m0, n0);
    } else if (pass == 1) {  // A = dy (rows m = (n, pos)), B = w (columns kk contiguous)
      MatrixLoader<T, Ti::BM, RowsFast<Ti::BM>> ma{a + ((index_t)n_begin * g.K + (index_t)grp * g.Kg) * plane, Mc,
                                                   plane, (index_t)g.K * plane, 1, 0, 0, plane};
      MatrixLoader<T, Ti::BN, RowsFast<Ti::BN>> mb{b + (index_t)grp * g.Kg * KK, KK, 0, 0, 1, 0, 0, KK};
      Anchored<decltype(ma)> la{ma, m0};
      Anchored<decltype(mb)> lb{mb, n0};
      StoreMatrix<typename Acc<T>::type> ep{partial + (index_t)grp * KK * Mc, Mc};
      gemm_tile<T, Ti::BM, Ti::BN, Ti::TM, Ti::TN>(smem, la, lb, ep, (int)Mc, KK, 0, g.Kg, m0, n0);
    } else {  // A = dy (rows kn, k = m = (n, pos)), B = col[grp] (rows kk, k = m contiguous)
      MatrixLoader<T, Ti::BM, KFast<Ti::BM>> ma{a + ((index_t)n_begin * g.K + (index_t)grp * g.Kg) * plane, g.Kg,
                                                0, 0, plane, plane, (index_t)g.K * plane, 1};
      MatrixLoader<T, Ti::BN, KFast<Ti::BN>> mb{colg, KK, 0, 0, Mc, 0, 0, 1};
      Anchored<decltype(ma)> la{ma, m0};
      Anchored<decltype(mb)> lb{mb, n0};
      StoreWeightPartial<T> ep{partial + (index_t)split * g.K * KK, grp, g.Kg, KK, !first};
      const index_t k_begin = split * chunk, k_end = min(Mc, k_begin + chunk);
      gemm_tile<T, Ti::BM, Ti::BN, Ti::TM, Ti::TN>(smem, la, lb, ep, g.Kg, KK, k_begin, k_end, m0, n0);
    }
  }
}
