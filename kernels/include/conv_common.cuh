// convops CUDA kernels: what every kernel shares.
//
// Compiled two ways: by NVRTC (through CuPy RawModule) for a GPU, and by the
// host C++ compiler against convops.sim's cuda_sim.h (CONVOPS_SIM defined).
// Everything here must mean the same under both.
//
// Problems reach the kernels in 3 spatial dims (1-D and 2-D problems get
// leading singleton dims; convops/cuda/common.py builds the ConvGeom), as
// (N, C, D, H, W) input, (K, C/groups, T, R, S) weight and (N, K, Z, P, Q)
// output, all C-contiguous.  Flat element offsets are 64-bit (index_t):
// a tensor may hold more than 2^31 elements; per-dimension coordinates and
// extents are 32-bit.
#pragma once

typedef long long index_t;

// Every kernel is declared __launch_bounds__(256, 1): launched with 256
// threads, and at least one block per SM -- without the second argument
// CUDA 13's ptxas caps registers for occupancy on its own and spills (the
// NVRTC gate, ci/nvrtc_gate.py, fails on any spill).

// ---- element types -------------------------------------------------------------------------
// float16 storage, float32 arithmetic.  Under NVRTC a 2-byte struct converted
// with PTX's cvt (no cuda_fp16.h: NVRTC has no headers of its own, and the
// kernels need only the two conversions); under the simulator its __half.
#ifdef CONVOPS_SIM
#include <cuda_fp16.h>  // the simulator's
typedef __half half_t;
__device__ __forceinline__ float half_to_float(half_t h) { return __half2float(h); }
__device__ __forceinline__ half_t float_to_half(float f) { return __float2half_rn(f); }
#else
struct __align__(2) half_t { unsigned short bits; };
__device__ __forceinline__ float half_to_float(half_t h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits));
  return f;
}
__device__ __forceinline__ half_t float_to_half(float f) {
  half_t h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f));
  return h;
}
#endif

// Acc<T>::type: the accumulation type (never narrower than float32).
template <class T> struct Acc { typedef T type; };
template <> struct Acc<half_t> { typedef float type; };

template <class T> __device__ __forceinline__ typename Acc<T>::type load(const T* p, index_t i) { return p[i]; }
template <> __device__ __forceinline__ float load<half_t>(const half_t* p, index_t i) { return half_to_float(p[i]); }

template <class T> __device__ __forceinline__ void store(T* p, index_t i, typename Acc<T>::type v) { p[i] = v; }
template <> __device__ __forceinline__ void store<half_t>(half_t* p, index_t i, float v) { p[i] = float_to_half(v); }

// ---- geometry -------------------------------------------------------------------------------
// One convolution in 3 spatial dims (built by convops/cuda/common.py: geometry(),
// field for field; every field is a 32-bit int so the struct has no padding).
struct ConvGeom {
  int N, C, K, groups, Cg, Kg;  // batch, channels in/out, groups, channels per group
  int D, H, W;                  // input
  int Z, P, Q;                  // output
  int T, R, S;                  // kernel
  int sd, sh, sw;               // stride
  int dd, dh, dw;               // dilation
  int pd, ph, pw;               // padding before each dim (after: implied by the sizes)
  int mode;                     // padding mode of input reads: PAD_ZEROS, ... (see source_index)
  int has_bias;                 // 1: add bias[channel] to every output
};

enum { PAD_ZEROS = 0, PAD_REFLECT = 1, PAD_REPLICATE = 2, PAD_CIRCULAR = 3, PAD_SYMMETRIC = 4 };

// The input element a padded position i (in [-pad_lo, n + pad_hi)) reads: i itself
// inside [0, n); outside, -1 (a zero) in zeros mode, else numpy.pad's mapping
// (validation keeps reflect/symmetric padding below n and circular at most n,
// so one reflection or wrap suffices).
__device__ __forceinline__ int source_index(int i, int n, int mode) {
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case PAD_REFLECT: return i < 0 ? -i : 2 * (n - 1) - i;
    case PAD_REPLICATE: return i < 0 ? 0 : n - 1;
    case PAD_CIRCULAR: return i < 0 ? i + n : i - n;
    case PAD_SYMMETRIC: return i < 0 ? -i - 1 : 2 * n - 1 - i;
    default: return -1;
  }
}

// The adjoint's index map, shared by every dgrad gather: the output position
// o whose tap reads input position i, where num = i + pad_lo - tap*dilation
// = o*stride; -1 when no output does (num negative, not a multiple of the
// stride, or past the output).  Only these terms are the reference's.
__device__ __forceinline__ int output_index(int num, int stride, int size) {
  if (num < 0 || num % stride) return -1;
  num /= stride;
  return num < size ? num : -1;
}

// The input element (n, c, z, y, x) reads through the padding mode, as an
// offset into x of (N, C, D, H, W); -1 for a padded zero.
__device__ __forceinline__ index_t input_offset(const ConvGeom& g, int n, int c, int z, int y, int x) {
  z = source_index(z, g.D, g.mode);
  y = source_index(y, g.H, g.mode);
  x = source_index(x, g.W, g.mode);
  if ((z | y | x) < 0) return -1;
  return (((index_t)n * g.C + c) * g.D + z) * g.H * (index_t)g.W + (index_t)y * g.W + x;
}

// Grid-stride loop over [0, total) with 64-bit indices: any problem size runs
// on a grid the launcher caps (grid.x only; y and z stay far below 65535).
#define GRID_STRIDE_LOOP(i, total) \
  for (index_t i = (index_t)blockIdx.x * blockDim.x + threadIdx.x; i < (total); i += (index_t)gridDim.x * blockDim.x)
