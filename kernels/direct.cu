// convops: direct convolution, every pass.  The generic fallback: any stride,
// dilation, groups, padding and padding mode; no workspace.
#include "conv_common.cuh"

// Output channels (fwd) / input channels (dgrad) per thread: each input value
// loaded is used for this many weights (the register tile).
#define DIRECT_TILE 4

// conv_direct_fwd: y (N, K, Z, P, Q) = x (N, C, D, H, W) * w (K, Cg, T, R, S) (+ bias).
// Thread -> output: one thread per (n, channel block of DIRECT_TILE output
// channels within a group, z, p, q), q fastest (coalesced along output rows);
// grid-stride over all of them.  Every tap multiplies: a padded zero times the
// weight (so an infinite weight gives NaN, as in the reference).  Input reads
// go through the padding mode (source_index).  Limits: none (64-bit offsets).
template <class T>
__global__ void __launch_bounds__(256, 1) conv_direct_fwd(const T* __restrict__ x, const T* __restrict__ w,
                                                        const T* __restrict__ bias, T* __restrict__ y, ConvGeom g) {
  typedef typename Acc<T>::type A;
  const int kblocks = (g.Kg + DIRECT_TILE - 1) / DIRECT_TILE;
  const index_t total = (index_t)g.N * g.groups * kblocks * g.Z * g.P * g.Q;
  GRID_STRIDE_LOOP(i, total) {
    index_t r = i;
    const int q = r % g.Q; r /= g.Q;
    const int p = r % g.P; r /= g.P;
    const int z = r % g.Z; r /= g.Z;
    const int kb = r % kblocks; r /= kblocks;
    const int grp = r % g.groups;
    const int n = r / g.groups;
    const int k0 = grp * g.Kg + kb * DIRECT_TILE;
    const int kn = min(DIRECT_TILE, g.Kg - kb * DIRECT_TILE);
    A acc[DIRECT_TILE];
#pragma unroll
    for (int j = 0; j < DIRECT_TILE; ++j) acc[j] = 0;
    for (int c = 0; c < g.Cg; ++c) {
      const int ci = grp * g.Cg + c;
      for (int t = 0; t < g.T; ++t)
        for (int rr = 0; rr < g.R; ++rr)
          for (int s = 0; s < g.S; ++s) {
            const index_t off = input_offset(g, n, ci, z * g.sd - g.pd + t * g.dd, p * g.sh - g.ph + rr * g.dh,
                                             q * g.sw - g.pw + s * g.dw);
            const A xv = off >= 0 ? load(x, off) : A(0);
            const index_t wi = (((index_t)k0 * g.Cg + c) * g.T + t) * g.R * g.S + rr * g.S + s;
            const index_t wstride = (index_t)g.Cg * g.T * g.R * g.S;
#pragma unroll
            for (int j = 0; j < DIRECT_TILE; ++j)
              if (j < kn) acc[j] += xv * load(w, wi + j * wstride);
          }
    }
    const index_t plane = (index_t)g.Z * g.P * g.Q;
    const index_t base = ((index_t)n * g.K + k0) * plane + ((index_t)z * g.P + p) * g.Q + q;
#pragma unroll
    for (int j = 0; j < DIRECT_TILE; ++j)
      if (j < kn) store(y, base + j * plane, acc[j] + (g.has_bias ? load(bias, k0 + j) : A(0)));
  }
}

// conv_direct_dgrad: dx (N, C, D, H, W) from dy (N, K, Z, P, Q) and w, the exact
// adjoint of zero-padded fwd (other padding modes: the launcher runs this on
// the padded input's geometry and folds, padding.cu), plus bias[c] if given.
// Thread -> output: one thread per (n, block of DIRECT_TILE input channels
// within a group, d, h, w), w fastest.  A gather: for each tap, the output
// position that reads this input is (i + pad - tap*dilation) / stride when
// that divides exactly and lies in the output; only those terms are summed
// (the reference's terms, so a NaN weight reaches only the inputs it touches).
template <class T>
__global__ void __launch_bounds__(256, 1) conv_direct_dgrad(const T* __restrict__ dy, const T* __restrict__ w,
                                                          const T* __restrict__ bias, T* __restrict__ dx, ConvGeom g) {
  typedef typename Acc<T>::type A;
  const int cblocks = (g.Cg + DIRECT_TILE - 1) / DIRECT_TILE;
  const index_t total = (index_t)g.N * g.groups * cblocks * g.D * g.H * g.W;
  GRID_STRIDE_LOOP(i, total) {
    index_t r = i;
    const int ix = r % g.W; r /= g.W;
    const int iy = r % g.H; r /= g.H;
    const int iz = r % g.D; r /= g.D;
    const int cb = r % cblocks; r /= cblocks;
    const int grp = r % g.groups;
    const int n = r / g.groups;
    const int c0 = cb * DIRECT_TILE;  // within the group
    const int cn = min(DIRECT_TILE, g.Cg - c0);
    A acc[DIRECT_TILE];
#pragma unroll
    for (int j = 0; j < DIRECT_TILE; ++j) acc[j] = 0;
    for (int t = 0; t < g.T; ++t) {
      const int z = output_index(iz + g.pd - t * g.dd, g.sd, g.Z);
      if (z < 0) continue;
      for (int rr = 0; rr < g.R; ++rr) {
        const int p = output_index(iy + g.ph - rr * g.dh, g.sh, g.P);
        if (p < 0) continue;
        for (int s = 0; s < g.S; ++s) {
          const int q = output_index(ix + g.pw - s * g.dw, g.sw, g.Q);
          if (q < 0) continue;
          for (int k = 0; k < g.Kg; ++k) {
            const int ko = grp * g.Kg + k;
            const A dv = load(dy, (((index_t)n * g.K + ko) * g.Z + z) * g.P * (index_t)g.Q + (index_t)p * g.Q + q);
            const index_t wi = (((index_t)ko * g.Cg + c0) * g.T + t) * g.R * g.S + rr * g.S + s;
            const index_t wstride = (index_t)g.T * g.R * g.S;
#pragma unroll
            for (int j = 0; j < DIRECT_TILE; ++j)
              if (j < cn) acc[j] += dv * load(w, wi + j * wstride);
          }
        }
      }
    }
    const index_t plane = (index_t)g.D * g.H * g.W;
    const int ci = grp * g.Cg + c0;
    const index_t base = ((index_t)n * g.C + ci) * plane + ((index_t)iz * g.H + iy) * g.W + ix;
#pragma unroll
    for (int j = 0; j < DIRECT_TILE; ++j)
      if (j < cn) store(dx, base + j * plane, acc[j] + (g.has_bias ? load(bias, ci + j) : A(0)));
  }
}

// conv_direct_wgrad: dw (K, Cg, T, R, S) = sum over n, z, p, q of
// dy[n, k, z, p, q] * xpad[n, c, z*sd + t*dd, ...] (input reads through the
// padding mode; padded zeros multiply, as in the reference).
// Thread -> output: one thread per weight element, s fastest; each sums its
// whole reduction in a fixed order (deterministic, no atomics).  Slow for a
// large N*Z*P*Q (one thread's serial sum): the fallback, not the fast path.
template <class T>
__global__ void __launch_bounds__(256, 1) conv_direct_wgrad(const T* __restrict__ x, const T* __restrict__ dy,
                                                          T* __restrict__ dw, ConvGeom g) {
  typedef typename Acc<T>::type A;
  const index_t total = (index_t)g.K * g.Cg * g.T * g.R * g.S;
  GRID_STRIDE_LOOP(i, total) {
    index_t r = i;
    const int s = r % g.S; r /= g.S;
    const int rr = r % g.R; r /= g.R;
    const int t = r % g.T; r /= g.T;
    const int c = r % g.Cg;
    const int k = r / g.Cg;
    const int ci = (k / g.Kg) * g.Cg + c;
    A acc = 0;
    for (int n = 0; n < g.N; ++n)
      for (int z = 0; z < g.Z; ++z)
        for (int p = 0; p < g.P; ++p) {
          const index_t row = (((index_t)n * g.K + k) * g.Z + z) * g.P * (index_t)g.Q + (index_t)p * g.Q;
          for (int q = 0; q < g.Q; ++q) {
            const index_t off = input_offset(g, n, ci, z * g.sd - g.pd + t * g.dd, p * g.sh - g.ph + rr * g.dh,
                                             q * g.sw - g.pw + s * g.dw);
            acc += load(dy, row + q) * (off >= 0 ? load(x, off) : A(0));
          }
        }
    store(dw, i, acc);
  }
}
