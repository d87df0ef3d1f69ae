// convops: depthwise convolution (groups == C, Cg = 1, channel multiplier
// Kg = K / C, output channel k reads input channel k / Kg).
#include "conv_common.cuh"

#define DW_TP 8   // thread rows per fwd block (one warp per row)
#define DW_TQ 32  // output columns per fwd tile (one warp per row)
#define DW_RPT 4  // fwd: at most this many output rows per thread (DW_TP * rpt rows per tile)
#define DW_MIN_BLOCKS 4
#define DW_WG_TAPS 16  // wgrad: taps (r, s) per block, one accumulator register each  // fwd blocks per SM the registers must allow: a memory-bound kernel hides latency with warps

// The input patch fwd and wgrad tiles read: rows x cols of x[n, c, zi] from
// (y0, x0), through the padding mode (zi < 0: a padded depth, zeros), rows by
// warp and columns by lane (no divisions).  A patch of a partial tile reaches
// past what any output reads (past row ylim or column xlim, beyond the padding,
// where the padding mode's index map does not hold): zeros there.
template <class A, class T>
__device__ __forceinline__ void stage_patch(A* patch, const T* __restrict__ x, const ConvGeom& g, int n, int c, int zi,
                                            int y0, int x0, int rows, int cols, int ylim, int xlim) {
  const int tq = threadIdx.x % DW_TQ, tp = threadIdx.x / DW_TQ;
  for (int ry = tp; ry < rows; ry += DW_TP) {
    const int yy = y0 + ry;
    const int sy = yy <= ylim ? source_index(yy, g.H, g.mode) : -1;
    const index_t row = (zi | sy) >= 0 ? ((((index_t)n * g.C + c) * g.D + zi) * g.H + sy) * g.W : -1;
    for (int cx = tq; cx < cols; cx += DW_TQ) {
      const int xx = x0 + cx;
      const int sx = xx <= xlim ? source_index(xx, g.W, g.mode) : -1;
      patch[ry * cols + cx] = row >= 0 && sx >= 0 ? load(x, row + sx) : A(0);
    }
  }
}

// depthwise_fwd: y = depthwise conv(x, w) + bias.
// Block -> tile: one block per (n, k, z, 8*rpt x 32 output tile), blocks
// looped grid-stride (the loop bound is uniform, so barriers are too); thread
// (tq, tp) = (tid % 32, tid / 32) computes outputs (p0 + tp + 8i, q0 + tq) for
// i < rpt (rows per thread, 1..DW_RPT, the launcher's choice: the most whose
// patch fits), each weight loaded once for its rpt products.  For each depth
// tap t the tile's input patch with its halo -- rows (8*rpt-1)*sh + (R-1)*dh
// + 1, columns (DW_TQ-1)*sw + (S-1)*dw + 1 -- is staged in dynamic shared
// memory (read through the padding mode; padded zeros are real zeros that
// multiply), rows by warp and columns by lane.  Limits: the patch must fit
// the dynamic shared memory the launcher requests (supports() checks 48 KiB
// at rpt = 1).  flip = 1 reads the weight flipped in every spatial dim: a
// stride-1 dgrad with one output per channel (Kg = 1) is this kernel on dy,
// padded by dilation*(k-1) - pad (the launcher's dgrad_as_fwd).
template <class T>
__global__ void __launch_bounds__(256, DW_MIN_BLOCKS) depthwise_fwd(const T* __restrict__ x, const T* __restrict__ w,
                                                                    const T* __restrict__ bias, T* __restrict__ y,
                                                                    ConvGeom g, int rpt, int flip) {
  typedef typename Acc<T>::type A;
  extern __shared__ __align__(16) unsigned char dw_smem[];
  A* patch = reinterpret_cast<A*>(dw_smem);
  const int tile_p = DW_TP * rpt;
  const int rows = (tile_p - 1) * g.sh + (g.R - 1) * g.dh + 1;
  const int cols = (DW_TQ - 1) * g.sw + (g.S - 1) * g.dw + 1;
  const int tiles_p = (g.P + tile_p - 1) / tile_p, tiles_q = (g.Q + DW_TQ - 1) / DW_TQ;
  const int nblocks = g.N * g.K * g.Z * tiles_p * tiles_q;  // < 2^31: supports()
  const int tq = threadIdx.x % DW_TQ, tp = threadIdx.x / DW_TQ;
  const int ylim = (g.P - 1) * g.sh - g.ph + (g.R - 1) * g.dh;  // the last row and column any output reads
  const int xlim = (g.Q - 1) * g.sw - g.pw + (g.S - 1) * g.dw;
  for (index_t bb = blockIdx.x; bb < nblocks; bb += gridDim.x) {
    int rest = (int)bb;
    const int bq = rest % tiles_q; rest /= tiles_q;
    const int bp = rest % tiles_p; rest /= tiles_p;
    const int z = rest % g.Z; rest /= g.Z;
    const int k = rest % g.K;
    const int n = rest / g.K;
    const int c = k / g.Kg;
    const int p0 = bp * tile_p, q = bq * DW_TQ + tq;
    const int y0 = p0 * g.sh - g.ph, x0 = bq * DW_TQ * g.sw - g.pw;
    A acc[DW_RPT];
#pragma unroll
    for (int i = 0; i < DW_RPT; ++i) acc[i] = A(0);
    for (int t = 0; t < g.T; ++t) {
      __syncthreads();  // the previous patch is no longer read
      stage_patch(patch, x, g, n, c, source_index(z * g.sd - g.pd + t * g.dd, g.D, g.mode), y0, x0, rows, cols,
                  ylim, xlim);
      __syncthreads();
      if (q < g.Q) {
        // flip: w[k, 0, T-1-t, R-1-r, S-1-s] (dgrad run as this kernel), at wbase - (r*S + s)
        const int taps = g.R * g.S;
        const index_t wbase = flip ? ((index_t)k * g.T + g.T - 1 - t) * taps + taps - 1 : ((index_t)k * g.T + t) * taps;
        const int wstep = flip ? -1 : 1;
        for (int r = 0; r < g.R; ++r)
          for (int s = 0; s < g.S; ++s) {
            const A wv = load(w, wbase + wstep * (r * g.S + s));
            const A* in = patch + (tp * g.sh + r * g.dh) * cols + tq * g.sw + s * g.dw;
#pragma unroll
            for (int i = 0; i < DW_RPT; ++i)  // rows past P multiply the patch's zeros: not stored
              if (i < rpt) acc[i] += in[DW_TP * i * g.sh * cols] * wv;
          }
      }
    }
    if (q < g.Q) {
#pragma unroll
      for (int i = 0; i < DW_RPT; ++i) {
        const int p = p0 + tp + DW_TP * i;
        if (i >= rpt || p >= g.P) continue;
        A v = acc[i];
        if (g.has_bias) v += load(bias, k);
        store(y, (((index_t)n * g.K + k) * g.Z + z) * g.P * (index_t)g.Q + (index_t)p * g.Q + q, v);
      }
    }
  }
}

// depthwise_dgrad: dx[n, c, i] = sum over multipliers j and taps of
// dy[n, c*Kg + j, o] * w[c*Kg + j, 0, tap] where o*stride - pad + tap*dilation
// = i exactly and o lies in the output (the reference's terms only), + bias.
// Thread -> element: one per dx element, w fastest, grid-stride; a gather
// from global memory (cached: neighbouring threads read neighbouring dy).
template <class T>
__global__ void __launch_bounds__(256, 1) depthwise_dgrad(const T* __restrict__ dy, const T* __restrict__ w,
                                                        const T* __restrict__ bias, T* __restrict__ dx, ConvGeom g) {
  typedef typename Acc<T>::type A;
  const index_t total = (index_t)g.N * g.C * g.D * g.H * g.W;  // < 2^31: supports()
  GRID_STRIDE_LOOP(i, total) {
    int rest = (int)i;  // the decomposition in 32 bits (a 64-bit division is a called subroutine)
    const int ix = rest % g.W; rest /= g.W;
    const int iy = rest % g.H; rest /= g.H;
    const int iz = rest % g.D; rest /= g.D;
    const int c = rest % g.C;
    const int n = rest / g.C;
    A acc = 0;
    for (int j = 0; j < g.Kg; ++j) {
      const int k = c * g.Kg + j;
      for (int t = 0; t < g.T; ++t) {
        const int z = output_index(iz + g.pd - t * g.dd, g.sd, g.Z);
        if (z < 0) continue;
        for (int r = 0; r < g.R; ++r) {
          const int p = output_index(iy + g.ph - r * g.dh, g.sh, g.P);
          if (p < 0) continue;
          const index_t row = (((index_t)n * g.K + k) * g.Z + z) * g.P * (index_t)g.Q + (index_t)p * g.Q;
          for (int s = 0; s < g.S; ++s) {
            const int q = output_index(ix + g.pw - s * g.dw, g.sw, g.Q);
            if (q < 0) continue;
            acc += load(dy, row + q) * load(w, (((index_t)k * g.T + t) * g.R + r) * g.S + s);
          }
        }
      }
    }
    if (g.has_bias) acc += load(bias, c);
    store(dx, i, acc);
  }
}

// depthwise_wgrad: partial[split, k, t, r, s] = the sum over the output tiles
// of slice `split` of dy[n, k, z, p, q] * xpad[n, c, z*sd + t*dd, p*sh + r*dh, q*sw + s*dw]
// (sum_splits in implicit_gemm.cu adds the slices in order: dw).
// Block -> (k, t, group of DW_WG_TAPS taps (r, s) in r*S + s order), blocks
// looped grid-stride over K*T*groups; grid y = split, its tiles a contiguous
// range of the (n, z, 8 x 32 output tile) list.  Per tile the block stages the
// input patch at depth tap t as fwd does (rows by warp, columns by lane, through
// the padding mode); thread (tq, tp) then adds dy(p0 + tp, q0 + tq) times the
// patch under each of its group's taps to one accumulator per tap (offsets in
// registers), so x and dy are read once per tap group, not once per weight
// element.  Then one shared-memory tree reduction (fixed pairing) per tap:
// deterministic, no atomics.  Limits: the patch fits 48 KiB (supports()).
template <class T>
__global__ void __launch_bounds__(256, 2) depthwise_wgrad(const T* __restrict__ x, const T* __restrict__ dy,
                                                        typename Acc<T>::type* __restrict__ partial, ConvGeom g,
                                                        int chunk) {
  typedef typename Acc<T>::type A;
  extern __shared__ __align__(16) unsigned char dw_smem[];
  A* patch = reinterpret_cast<A*>(dw_smem);
  __shared__ A red[256];
  const int rows = (DW_TP - 1) * g.sh + (g.R - 1) * g.dh + 1;
  const int cols = (DW_TQ - 1) * g.sw + (g.S - 1) * g.dw + 1;
  const int tiles_p = (g.P + DW_TP - 1) / DW_TP, tiles_q = (g.Q + DW_TQ - 1) / DW_TQ;
  const int ntiles = g.N * g.Z * tiles_p * tiles_q;  // < 2^31: supports()
  const int tile_lo = blockIdx.y * chunk, tile_hi = min(ntiles, tile_lo + chunk);
  const int taps = g.R * g.S, groups = (taps + DW_WG_TAPS - 1) / DW_WG_TAPS;
  const int count = g.K * g.T * groups;
  const int tq = threadIdx.x % DW_TQ, tp = threadIdx.x / DW_TQ;
  const int ylim = (g.P - 1) * g.sh - g.ph + (g.R - 1) * g.dh;  // the last row and column any output reads
  const int xlim = (g.Q - 1) * g.sw - g.pw + (g.S - 1) * g.dw;
  const int plane = g.Z * g.P * g.Q;
  for (int e = blockIdx.x; e < count; e += gridDim.x) {
    const int group = e % groups, t = (e / groups) % g.T, k = e / (groups * g.T);
    const int c = k / g.Kg;
    const int first = group * DW_WG_TAPS, ntaps = min(DW_WG_TAPS, taps - first);
    int off[DW_WG_TAPS];  // patch offset of each tap of the group
#pragma unroll
    for (int j = 0; j < DW_WG_TAPS; ++j) {
      const int tap = min(first + j, taps - 1);
      off[j] = (tap / g.S) * g.dh * cols + (tap % g.S) * g.dw;
    }
    A acc[DW_WG_TAPS];
#pragma unroll
    for (int j = 0; j < DW_WG_TAPS; ++j) acc[j] = A(0);
    for (int tile = tile_lo; tile < tile_hi; ++tile) {
      int rest = tile;
      const int bq = rest % tiles_q; rest /= tiles_q;
      const int bp = rest % tiles_p; rest /= tiles_p;
      const int z = rest % g.Z;
      const int n = rest / g.Z;
      const int y0 = bp * DW_TP * g.sh - g.ph, x0 = bq * DW_TQ * g.sw - g.pw;
      __syncthreads();  // the previous patch is no longer read
      stage_patch(patch, x, g, n, c, source_index(z * g.sd - g.pd + t * g.dd, g.D, g.mode), y0, x0, rows, cols,
                  ylim, xlim);
      __syncthreads();
      const int p = bp * DW_TP + tp, q = bq * DW_TQ + tq;
      if (p < g.P && q < g.Q) {
        const A d = load(dy, ((index_t)n * g.K + k) * plane + ((index_t)z * g.P + p) * g.Q + q);
        const A* in = patch + tp * g.sh * cols + tq * g.sw;
#pragma unroll
        for (int j = 0; j < DW_WG_TAPS; ++j)
          if (j < ntaps) acc[j] += d * in[off[j]];
      }
    }
    // one tree reduction per tap (the same pairing every time)
#pragma unroll
    for (int j = 0; j < DW_WG_TAPS; ++j) {
      if (j >= ntaps) break;  // uniform across the block
      red[threadIdx.x] = acc[j];
      __syncthreads();
      for (int half = 128; half > 0; half >>= 1) {
        if ((int)threadIdx.x < half) red[threadIdx.x] += red[threadIdx.x + half];
        __syncthreads();
      }
      if (threadIdx.x == 0)
        partial[(index_t)blockIdx.y * g.K * g.T * taps + ((index_t)k * g.T + t) * taps + first + j] = red[0];
      __syncthreads();  // red[0] is read before the next tap overwrites it
    }
  }
}
