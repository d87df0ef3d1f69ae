// convops: implicit GEMM on tensor cores (sm_80+): mma.sync m16n8k16 for
// float16 (float32 accumulation) and m16n8k8 TF32 for float32: each operand
// split into three TF32 pieces and six products per tile (TcGeom.passes == 6,
// products exact to 2^-34: float32 accuracy), or 3xTF32 (3) or TF32 (1) when
// a user opts into less accuracy (split_tf32 in mma.cuh).
//
// The launcher (convops/cuda/implicit_gemm_tc.py) packs the operands into a
// workspace first (tc_pack_activation, tc_pack_weight): channels last with the
// channel count rounded up to VEC = 16 bytes of elements (8 halves, 4 floats;
// the extra channels are zeros) and the padding materialized (every padding
// mode), so each 16-byte cp.async moves VEC consecutive channels of one pixel
// and the mainloop has no bounds but the GEMM's own.
//
//   fwd    D[m = (n, z, p, q), kn] = sum_{kv = (t, r, s, c)} act[n, z*sd + t*dd, p*sh + r*dh, q*sw + s*dw, c]
//                                                            * wp[kn, t, r, s, c]
//          (dgrad of a stride-1 problem is this kernel on dy packed with
//          dilation*(k-1) - pad of padding and the flipped, transposed weight)
//   wgrad  D[kn, (t, r, s, c)]    = sum_{(n, z, p, q)} dyp[n, z, p, q, kn] * act[n, z*sd + t*dd, ..., c]
//
// Tiles: 128 x 128 per block, 64 bytes of the reduction per stage (32 halves /
// 16 floats: two mma k-steps), 3 stages of cp.async in flight (48 KiB of
// static shared memory); 256 threads = 8 warps in 2 (M) x 4 (N), each warp
// 64 x 32 = 4 x 4 mma tiles of 16 x 8 (64 float accumulators per thread).
// Shared tiles are XOR-swizzled in 16-byte chunks, so ldmatrix and the
// cp.async stores are free of bank conflicts without padding (float32 wgrad
// reads its fragments with scalar loads, 2-way conflicts: ldmatrix .trans
// moves 16-bit elements only).  A warp skips its mma tiles that hold no
// output (active_tiles; uniform across the warp).  GEMM rows and packed
// pixels below 2^31, checked by supports() (32-bit rows and pixels, 64-bit
// element offsets).  Deterministic: no atomics; wgrad's split-K partial sums
// are added in a fixed order by sum_splits (implicit_gemm.cu).
#include "mma.cuh"

#define TC_THREADS 256
#define TC_BM 128
#define TC_BN 128
#define TC_STAGES 3

struct TcGeom {
  int N, Cp, Dp, Hp, Wp;  // packed activation (N, Dp, Hp, Wp, Cp): padding materialized
  int Z, P, Q;            // output positions
  int T, R, S, sd, sh, sw, dd, dh, dw;
  int Kp;                 // fwd: rows of the packed weight (output channels); wgrad: packed channels of dyp
  int Kout;               // output channels written (fwd: Kp; wgrad: K)
  int Cout;               // wgrad: input channels written (dw's C); fwd: unused
  int has_bias;           // fwd: add bias[kn]
  int passes;             // float32: TF32 products per tile, 6 (exact), 3 (3xTF32) or 1 (TF32)
};

// MIN_BLOCKS: blocks per SM the register budget must allow (__launch_bounds__):
// float16 2 (<= 128 registers a thread, so one block's barrier stalls are hidden
// by the other's work); float32 1 (its TF32 pieces need more registers).
template <class T> struct TcTraits {  // float16 (half_t)
  enum { VEC = 8, BK = 32, MIN_BLOCKS = 2 };  // elements per 16-byte chunk; reduction elements per stage
};
template <> struct TcTraits<float> {
  enum { VEC = 4, BK = 16, MIN_BLOCKS = 1 };
};

// ---- pack kernels -----------------------------------------------------------------------------
// tc_pack_activation: dst[n, z, y, x, c] (N, Dp, Hp, Wp, Cp) =
//   src[n, c, source(z - lo_d), source(y - lo_h), source(x - lo_w)] (N, C, D, H, W)
// through the padding mode (zeros: outside the input reads 0; lo may be
// negative: a window inside the input); c >= C reads 0.
// A transpose through shared memory: one block per 32 (x) x 32 (c) tile of one
// destination row (n, z, y), tiles looped grid-stride (the loop bound is
// uniform, so the barriers are too); 256 threads = 32 x 8.  Thread (tx, ty)
// reads src at x0 + tx for channels c0 + ty + 8i (consecutive threads,
// consecutive x: coalesced) and writes dst at channel c0 + tx for pixels
// x0 + ty + 8i (consecutive channels: coalesced).  Tile indices are 32-bit
// (supports(): packed pixels below 2^31), element offsets 64-bit.
struct TcPack {
  int N, C, D, H, W;  // source
  int Dp, Hp, Wp, Cp;  // destination
  int lo_d, lo_h, lo_w, mode;
};

#define TC_PACK_TILE 32

template <class T>
__global__ void __launch_bounds__(256, 1) tc_pack_activation(const T* __restrict__ src, T* __restrict__ dst, TcPack g) {
  __shared__ T tile[TC_PACK_TILE][TC_PACK_TILE + 1];  // [c][x]; +1: the transposed reads hit 32 banks
  const int tx = threadIdx.x % TC_PACK_TILE, ty = threadIdx.x / TC_PACK_TILE;
  const int tiles_x = (g.Wp + TC_PACK_TILE - 1) / TC_PACK_TILE, tiles_c = (g.Cp + TC_PACK_TILE - 1) / TC_PACK_TILE;
  const int rows = g.N * g.Dp * g.Hp;  // destination rows (n, z, y): < 2^31, supports()
  const index_t tiles = (index_t)rows * tiles_x * tiles_c;
  for (index_t b = blockIdx.x; b < tiles; b += gridDim.x) {
    const int ct = (int)(b % tiles_c);
    index_t rest = b / tiles_c;
    const int xt = (int)(rest % tiles_x);
    int row = (int)(rest / tiles_x);
    const int y = row % g.Hp; row /= g.Hp;
    const int z = row % g.Dp;
    const int n = row / g.Dp;
    const int x0 = xt * TC_PACK_TILE, c0 = ct * TC_PACK_TILE;
    const int sz = source_index(z - g.lo_d, g.D, g.mode), sy = source_index(y - g.lo_h, g.H, g.mode);
    const int x = x0 + tx;
    const int sx = x < g.Wp ? source_index(x - g.lo_w, g.W, g.mode) : -1;
    const bool inside = (sz | sy | sx) >= 0;
    __syncthreads();  // the previous tile has been written out
#pragma unroll
    for (int i = 0; i < TC_PACK_TILE / 8; ++i) {
      const int c = c0 + ty + 8 * i;
      T v = T();  // zero (half_t: bits 0)
      if (inside && c < g.C) v = src[(((index_t)n * g.C + c) * g.D + sz) * g.H * (index_t)g.W + (index_t)sy * g.W + sx];
      tile[ty + 8 * i][tx] = v;
    }
    __syncthreads();
    const index_t row_base = (((index_t)n * g.Dp + z) * g.Hp + y) * g.Wp;
#pragma unroll
    for (int i = 0; i < TC_PACK_TILE / 8; ++i) {
      const int xx = x0 + ty + 8 * i, c = c0 + tx;
      if (xx < g.Wp && c < g.Cp) dst[(row_base + xx) * g.Cp + c] = tile[tx][ty + 8 * i];
    }
  }
}

// tc_pack_weight: dst[row, t, r, s, ci] (rows, T, R, S, inner_p) from w (K, C, T, R, S):
//   flip == 0: rows = K, inner = C: w[row, ci, t, r, s]                       (fwd)
//   flip == 1: rows = C, inner = K: w[ci, row, T-1-t, R-1-r, S-1-s]           (dgrad as fwd)
// ci >= inner reads 0.  Grid-stride, 64-bit.
template <class T>
__global__ void __launch_bounds__(256, 1) tc_pack_weight(const T* __restrict__ w, T* __restrict__ dst, int K, int C,
                                                          int T_, int R, int S, int inner_p, int flip) {
  const int rows = flip ? C : K, inner = flip ? K : C;
  const index_t total = (index_t)rows * T_ * R * S * inner_p;
  GRID_STRIDE_LOOP(i, total) {
    index_t rest = i;
    const int ci = (int)(rest % inner_p); rest /= inner_p;
    const int s = (int)(rest % S); rest /= S;
    const int r = (int)(rest % R); rest /= R;
    const int t = (int)(rest % T_);
    const int row = (int)(rest / T_);
    T v = T();  // zero (half_t: bits 0)
    if (ci < inner) {
      const int k = flip ? ci : row, c = flip ? row : ci;
      const int tt = flip ? T_ - 1 - t : t, rr = flip ? R - 1 - r : r, ss = flip ? S - 1 - s : s;
      v = w[((((index_t)k * C + c) * T_ + tt) * R + rr) * S + ss];
    }
    dst[i] = v;
  }
}

// ---- shared tiles ------------------------------------------------------------------------------
// Reduction-contiguous tile (fwd: A and B): ROWS rows of 4 chunks (64 bytes);
// chunk c of row r lives at chunk r*4 + (c ^ ((r >> 1) & 3)), so the 8 rows an
// ldmatrix reads at one chunk column fall in 8 different 16-byte bank groups.
__device__ __forceinline__ int kc_chunk(int row, int c) { return row * 4 + (c ^ ((row >> 1) & 3)); }
// Row-contiguous tile (wgrad: A and B): BK rows (reduction) of 128 elements;
// chunk c of row r lives at r*CPR + (c ^ (r & 7)) (CPR chunks per row).
template <int CPR> __device__ __forceinline__ int mn_chunk(int row, int c) { return row * CPR + (c ^ (row & 7)); }

struct TcShared {
  uint4 a[TC_STAGES][TC_BM * 4];  // 8 KiB per stage: 128 x 64 bytes, or BK x 256 bytes (float16) / 512 (float32)
  uint4 b[TC_STAGES][TC_BN * 4];
};

// Of a warp's 4 tiles of `size` rows (or columns), how many hold any of the
// `remaining` valid ones past the warp's first: the rest are skipped (whole
// mma tiles only, uniform across the warp, so no lane diverges).
__device__ __forceinline__ int active_tiles(int remaining, int size) {
  return remaining <= 0 ? 0 : min(4, (remaining + size - 1) / size);
}

// ---- the warp's math on one stage -------------------------------------------------------------
// Accumulators: acc[mt][nt][i] of the warp's 4 x 4 tiles of 16 x 8 (d layout in mma.cuh).
template <class T> struct TcMath;

// Fragments of k-step ks (2 chunks) from the reduction-contiguous tiles, for
// both element types: an 8 x 8 b16 matrix is 8 halves or 4 floats per row, and
// lane l receives its b16 pair (float16: A/B[row l/4][k 2(l%4)..+1]) or its
// float (float32: [row l/4][k l%4]) -- m16n8k16's and m16n8k8's fragments.
// A (rows m), ldmatrix.x4: matrices (rows 0-7, chunk 0), (rows 8-15, chunk 0),
// (rows 0-7, chunk 1), (rows 8-15, chunk 1) = a[0..3]; lane l gives row
// (l % 8) + 8 * ((l / 8) % 2) of chunk 2*ks + l / 16.
// B (rows n): (n 0-7, chunk 0), (n 0-7, chunk 1), (n 8-15, chunk 0), (n 8-15,
// chunk 1) = b[nt][0], b[nt][1], b[nt+1][0], b[nt+1][1].
__device__ __forceinline__ void kc_fragments(const uint4* As, const uint4* Bs, int wm, int wn, int ks,
                                             unsigned (&a)[4][4], unsigned (&b)[4][2], int mt_n, int nt_n) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt) {
    if (mt >= mt_n) break;
    const int row = wm * 64 + mt * 16 + lane % 8 + 8 * ((lane / 8) % 2);
    ldmatrix<4, false>(a[mt], As + kc_chunk(row, 2 * ks + lane / 16));
  }
#pragma unroll
  for (int np = 0; np < 2; ++np) {
    if (2 * np >= nt_n) break;
    unsigned r[4];
    const int row = wn * 32 + np * 16 + lane % 8 + 8 * (lane / 16);
    ldmatrix<4, false>(r, Bs + kc_chunk(row, 2 * ks + (lane / 8) % 2));
    b[2 * np][0] = r[0]; b[2 * np][1] = r[1]; b[2 * np + 1][0] = r[2]; b[2 * np + 1][1] = r[3];
  }
}

template <> struct TcMath<half_t> {
  static __device__ __forceinline__ void kc_step(const uint4* As, const uint4* Bs, int wm, int wn, int ks,
                                                  float (&acc)[4][4][4], int passes, int mt_n, int nt_n) {
    unsigned a[4][4], b[4][2];
    kc_fragments(As, Bs, wm, wn, ks, a, b, mt_n, nt_n);
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
        if (mt < mt_n && nt < nt_n) mma_f16_16816(acc[mt][nt], a[mt], b[nt]);
  }
  // Row-contiguous tiles (wgrad: As[k][m], Bs[k][n], 16 chunks per row), ldmatrix .trans:
  // A: matrices (k 0-7, m 0-7), (k 0-7, m 8-15), (k 8-15, m 0-7), (k 8-15, m 8-15) = a[0..3];
  // B: (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15).
  static __device__ __forceinline__ void mn_step(const uint4* As, const uint4* Bs, int wm, int wn, int ks,
                                                  float (&acc)[4][4][4], int passes, int mt_n, int nt_n) {
    const int lane = threadIdx.x % 32, j = lane % 8, mat = lane / 8;
    unsigned a[4][4], b[4][2];
#pragma unroll
    for (int mt = 0; mt < 4; ++mt) {
      if (mt >= mt_n) break;
      const int k = ks * 16 + j + 8 * (mat / 2), m = wm * 64 + mt * 16 + 8 * (mat % 2);
      ldmatrix<4, true>(a[mt], As + mn_chunk<16>(k, m / 8));
    }
#pragma unroll
    for (int np = 0; np < 2; ++np) {
      if (2 * np >= nt_n) break;
      unsigned r[4];
      const int k = ks * 16 + j + 8 * (mat % 2), n = wn * 32 + np * 16 + 8 * (mat / 2);
      ldmatrix<4, true>(r, Bs + mn_chunk<16>(k, n / 8));
      b[2 * np][0] = r[0]; b[2 * np][1] = r[1]; b[2 * np + 1][0] = r[2]; b[2 * np + 1][1] = r[3];
    }
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
        if (mt < mt_n && nt < nt_n) mma_f16_16816(acc[mt][nt], a[mt], b[nt]);
  }
};

template <> struct TcMath<float> {
  // Split the raw float32 fragments (split_tf32 in mma.cuh) and multiply with
  // `passes` TF32 products per tile: 6 (exact products, the default), 3 (3xTF32)
  // or 1 (TF32).  The small terms go first, hi*hi last (CUTLASS's order).
  // Each fragment element is split once per k-step: B's four n-tiles first (32
  // registers of pieces), then A one m-tile at a time.  The splits, not the
  // products, bound this kernel's speed (ALU-bound on an H100), so none is repeated.
  static __device__ __forceinline__ void multiply(const unsigned (&ra)[4][4], const unsigned (&rb)[4][2],
                                                   float (&acc)[4][4][4], int passes, int mt_n, int nt_n) {
    unsigned bh[4][2], bf[4][2], bm[4][2], bl[4][2];
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int i = 0; i < 2; ++i)
        if (nt < nt_n) split_tf32(__uint_as_float(rb[nt][i]), bh[nt][i], bf[nt][i], bm[nt][i], bl[nt][i]);
#pragma unroll
    for (int mt = 0; mt < 4; ++mt) {
      if (mt >= mt_n) break;
      unsigned ah[4], af[4], am[4], al[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) split_tf32(__uint_as_float(ra[mt][i]), ah[i], af[i], am[i], al[i]);
      // one product at a time across the n-tiles: four independent accumulators
      // between two dependent mma (the order of each tile's sum is unchanged)
      if (passes >= 6) {
        product(acc[mt], al, bf, nt_n);
        product(acc[mt], af, bl, nt_n);
        product(acc[mt], am, bm, nt_n);
      }
      if (passes >= 3) {
        product(acc[mt], am, bf, nt_n);
        product(acc[mt], af, bm, nt_n);
      }
      product(acc[mt], ah, bh, nt_n);
    }
  }
  static __device__ __forceinline__ void product(float (&acc)[4][4], const unsigned (&a)[4], const unsigned (&b)[4][2],
                                                  int nt_n) {
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
      if (nt < nt_n) mma_tf32_1688(acc[nt], a, b[nt]);
  }
  static __device__ __forceinline__ void kc_step(const uint4* As, const uint4* Bs, int wm, int wn, int ks,
                                                  float (&acc)[4][4][4], int passes, int mt_n, int nt_n) {
    unsigned a[4][4], b[4][2];
    kc_fragments(As, Bs, wm, wn, ks, a, b, mt_n, nt_n);
    multiply(a, b, acc, passes, mt_n, nt_n);
  }
  // Row-contiguous tiles (As[k][m], Bs[k][n], 32 chunks per row): 32-bit elements cannot use
  // ldmatrix's .trans (it transposes 16-bit elements), so each lane reads its fragment:
  // a[i] = A[g + 8*(i%2)][t + 4*(i/2)] = As[t + 4*(i/2)][m], b[i] = Bs[t + 4*i][g].
  static __device__ __forceinline__ void mn_step(const uint4* As, const uint4* Bs, int wm, int wn, int ks,
                                                  float (&acc)[4][4][4], int passes, int mt_n, int nt_n) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const float* Af = reinterpret_cast<const float*>(As);
    const float* Bf = reinterpret_cast<const float*>(Bs);
    unsigned a[4][4], b[4][2];
#pragma unroll
    for (int mt = 0; mt < 4; ++mt)
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (mt >= mt_n) { a[mt][i] = 0u; continue; }
        const int k = ks * 8 + t + 4 * (i / 2), m = wm * 64 + mt * 16 + g + 8 * (i % 2);
        a[mt][i] = __float_as_uint(Af[mn_chunk<32>(k, m / 4) * 4 + m % 4]);
      }
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        if (nt >= nt_n) { b[nt][i] = 0u; continue; }
        const int k = ks * 8 + t + 4 * i, n = wn * 32 + nt * 8 + g;
        b[nt][i] = __float_as_uint(Bf[mn_chunk<32>(k, n / 4) * 4 + n % 4]);
      }
    multiply(a, b, acc, passes, mt_n, nt_n);
  }
};

// ---- the pipeline both kernels run ----------------------------------------------------------
// acc = 0, then KT stages: load_stage(stage, kt) issues this thread's cp.async
// copies of stage kt into buffer `stage`; multiply(stage) runs the warp's math
// on a landed buffer.  TC_STAGES - 1 stages are in flight while one is multiplied.
template <class Load, class Multiply>
__device__ __forceinline__ void tc_pipeline(int KT, Load& load_stage, Multiply& multiply, float (&acc)[4][4][4]) {
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.f;
  // prologue: stages 0 .. STAGES-2 in flight
#pragma unroll
  for (int s = 0; s < TC_STAGES - 1; ++s) {
    if (s < KT) load_stage(s, s);
    cp_async_commit();
  }
  cp_async_wait<TC_STAGES - 2>();
  __syncthreads();
  for (int kt = 0; kt < KT; ++kt) {
    // refill the buffer every warp finished with at kt - 1 (the barrier below ordered it)
    const int next = kt + TC_STAGES - 1;
    if (next < KT) load_stage(next % TC_STAGES, next);
    cp_async_commit();  // (an empty group past the end keeps the wait count uniform)
    multiply(kt % TC_STAGES);
    cp_async_wait<TC_STAGES - 2>();  // stage kt + 1 has landed (this thread's part) ...
    __syncthreads();                 // ... everyone's, and every warp is done with stage kt
  }
}

// ---- fwd ------------------------------------------------------------------------------------
// igemm_tc_fwd: grid x = ceil(M / 128) tiles of m = (n, z, p, q) (M = N*Z*P*Q),
// grid y = ceil(Kp / 128) tiles of output channels.  Thread tid stages, per
// stage, chunk tid % 4 of rows tid / 4 and tid / 4 + 64 of both tiles (A from
// act, B from wp): one 16-byte cp.async each, zero-filled past M, Kp and the
// reduction KV = T*R*S*Cp/VEC chunks.  Epilogue: y[n, kn, z, p, q] (+ bias[kn])
// from the accumulators, converted to T.  Limits: M, Kp, the packed element
// count of act and wp below 2^31 pixels / 2^63 elements (supports()).
template <class T>
__global__ void __launch_bounds__(TC_THREADS, TcTraits<T>::MIN_BLOCKS) igemm_tc_fwd(const T* __restrict__ act, const T* __restrict__ wp,
                                                        const T* __restrict__ bias, T* __restrict__ y, TcGeom g) {
  typedef TcTraits<T> Tr;
  __shared__ TcShared smem;
  const int tid = threadIdx.x, warp = tid / 32, wm = warp % 2, wn = warp / 2;
  const int M = g.N * g.Z * g.P * g.Q;
  const int m0 = blockIdx.x * TC_BM, n0 = blockIdx.y * TC_BN;
  const int cv_count = g.Cp / Tr::VEC, KV = g.T * g.R * g.S * cv_count, KT = (KV + 3) / 4;
  const int c = tid % 4;
  // this thread's two A rows (output positions) and two B rows (output channels)
  int pix[2];  // -1: past M
  bool b_ok[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int m = m0 + tid / 4 + 64 * i;
    int rest = m < M ? m : 0;
    const int q = rest % g.Q; rest /= g.Q;
    const int p = rest % g.P; rest /= g.P;
    const int z = rest % g.Z;
    const int n = rest / g.Z;
    pix[i] = m < M ? ((n * g.Dp + z * g.sd) * g.Hp + p * g.sh) * g.Wp + q * g.sw : -1;
    b_ok[i] = n0 + tid / 4 + 64 * i < g.Kp;
  }
  // this thread's first B row (output channel n0 + tid / 4); the second is 64 rows on
  const T* const b_row = wp + (index_t)(n0 + tid / 4) * KV * Tr::VEC;
  auto load_stage = [&](int stage, int kt) {
    const int kv = kt * 4 + c;
    const bool k_ok = kv < KV;
    const int tap = k_ok ? kv / cv_count : 0, cv = k_ok ? kv % cv_count : 0;
    const int s = tap % g.S, r = (tap / g.S) % g.R, t = tap / (g.S * g.R);
    const int tap_pix = (t * g.dd * g.Hp + r * g.dh) * g.Wp + s * g.dw;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = tid / 4 + 64 * i;
      const bool ok = pix[i] >= 0 && k_ok;
      const T* src = ok ? act + ((index_t)(pix[i] + tap_pix) * g.Cp + cv * Tr::VEC) : act;
      cp_async_16(&smem.a[stage][kc_chunk(row, c)], src, ok ? 16 : 0);
      const bool okb = b_ok[i] && k_ok;
      const T* srcb = okb ? b_row + ((index_t)(64 * i) * KV + kv) * Tr::VEC : wp;
      cp_async_16(&smem.b[stage][kc_chunk(row, c)], srcb, okb ? 16 : 0);
    }
  };
  // the warp's tiles that hold any output (uniform per warp): the others are skipped
  const int mt_n = active_tiles(M - (m0 + wm * 64), 16), nt_n = active_tiles(g.Kout - (n0 + wn * 32), 8);
  float acc[4][4][4];
  auto multiply = [&](int stage) {
#pragma unroll 1  // one k-step's fragments live at a time (registers: two blocks per SM for float16)
    for (int ks = 0; ks < 2; ++ks)
      TcMath<T>::kc_step(smem.a[stage], smem.b[stage], wm, wn, ks, acc, g.passes, mt_n, nt_n);
  };
  tc_pipeline(KT, load_stage, multiply, acc);
  // epilogue
  const int lane = tid % 32, gq = lane / 4, tq = lane % 4;
  const int ZPQ = g.Z * g.P * g.Q;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int m = m0 + wm * 64 + mt * 16 + gq + 8 * h;
      if (m >= M) continue;
      const int n = m / ZPQ, zpq = m % ZPQ;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int kn = n0 + wn * 32 + nt * 8 + 2 * tq + e;
          if (kn >= g.Kout) continue;
          float v = acc[mt][nt][2 * h + e];
          if (g.has_bias) v += load(bias, kn);
          store(y, ((index_t)n * g.Kout + kn) * ZPQ + zpq, v);
        }
    }
}

// ---- wgrad ----------------------------------------------------------------------------------
// igemm_tc_wgrad: grid x = ceil(K / 128) tiles of output channels kn, grid y =
// ceil(T*R*S*Cp / 128) tiles of columns (t, r, s, c), grid z = split-K slices
// of the reduction over j = (n, z, p, q), each `chunk` long (a multiple of BK).
// Both tiles are row-contiguous [BK][128]: A[j][kn] = dyp[j, kn] (one 16-byte
// chunk = VEC channels), B[j][(tap, c)] = act[n, z*sd + t*dd, ..., c..c+VEC).
// Thread tid stages chunk tid % CPR of rows tid / CPR + (256 / CPR) * i.
// partial[split, kn, c, t, r, s] (float32) for kn < K, c < C; sum_splits adds
// the slices.  Limits: K, columns and the reduction below 2^31 (supports()).
template <class T>
__global__ void __launch_bounds__(TC_THREADS, TcTraits<T>::MIN_BLOCKS) igemm_tc_wgrad(const T* __restrict__ dyp, const T* __restrict__ act,
                                                          float* __restrict__ partial, TcGeom g, int splits, int chunk) {
  typedef TcTraits<T> Tr;
  enum { CPR = TC_BM / Tr::VEC, ROW_STEP = TC_THREADS / CPR, LOADS = Tr::BK / ROW_STEP };
  __shared__ TcShared smem;
  const int tid = threadIdx.x, warp = tid / 32, wm = warp % 2, wn = warp / 2;
  const int taps = g.T * g.R * g.S, cols = taps * g.Cp, J = g.N * g.Z * g.P * g.Q;
  const int m0 = blockIdx.x * TC_BM, n0 = blockIdx.y * TC_BN, split = blockIdx.z;
  const int j_begin = split * chunk, j_end = min(J, j_begin + chunk);
  const int KT = j_end > j_begin ? (j_end - j_begin + Tr::BK - 1) / Tr::BK : 0;
  const int c = tid % CPR;
  // A: channels m0 + c*VEC .. ; B: column n0 + c*VEC = (tap, channel chunk)
  const bool a_ok = m0 + c * Tr::VEC < g.Kp;
  const int col = n0 + c * Tr::VEC;
  const bool b_ok = col < cols;
  const int tap = b_ok ? col / g.Cp : 0, ch = b_ok ? col % g.Cp : 0;
  const int ts = tap % g.S, tr = (tap / g.S) % g.R, tt = tap / (g.S * g.R);
  const int tap_pix = (tt * g.dd * g.Hp + tr * g.dh) * g.Wp + ts * g.dw;
  auto load_stage = [&](int stage, int kt) {
#pragma unroll
    for (int i = 0; i < LOADS; ++i) {
      const int row = tid / CPR + ROW_STEP * i, j = j_begin + kt * Tr::BK + row;
      const bool j_ok = j < j_end;
      const bool oka = a_ok && j_ok;
      const T* src = oka ? dyp + ((index_t)j * g.Kp + m0 + c * Tr::VEC) : dyp;
      cp_async_16(&smem.a[stage][mn_chunk<CPR>(row, c)], src, oka ? 16 : 0);
      int rest = j_ok ? j : 0;
      const int q = rest % g.Q; rest /= g.Q;
      const int p = rest % g.P; rest /= g.P;
      const int z = rest % g.Z;
      const int n = rest / g.Z;
      const int pix = ((n * g.Dp + z * g.sd) * g.Hp + p * g.sh) * g.Wp + q * g.sw + tap_pix;
      const bool okb = b_ok && j_ok;
      const T* srcb = okb ? act + ((index_t)pix * g.Cp + ch) : act;
      cp_async_16(&smem.b[stage][mn_chunk<CPR>(row, c)], srcb, okb ? 16 : 0);
    }
  };
  const int mt_n = active_tiles(g.Kout - (m0 + wm * 64), 16), nt_n = active_tiles(cols - (n0 + wn * 32), 8);
  float acc[4][4][4];
  auto multiply = [&](int stage) {
#pragma unroll
    for (int ks = 0; ks < 2; ++ks)
      TcMath<T>::mn_step(smem.a[stage], smem.b[stage], wm, wn, ks, acc, g.passes, mt_n, nt_n);
  };
  tc_pipeline(KT, load_stage, multiply, acc);
  const int lane = tid % 32, gq = lane / 4, tq = lane % 4;
#pragma unroll
  for (int mt = 0; mt < 4; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int kn = m0 + wm * 64 + mt * 16 + gq + 8 * h;
      if (kn >= g.Kout) continue;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int cl = n0 + wn * 32 + nt * 8 + 2 * tq + e;
          if (cl >= cols) continue;
          const int ci = cl % g.Cp, tp = cl / g.Cp;
          if (ci >= g.Cout) continue;
          partial[(((index_t)split * g.Kout + kn) * g.Cout + ci) * taps + tp] = acc[mt][nt][2 * h + e];
        }
    }
}
