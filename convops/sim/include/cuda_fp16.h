// convops.sim's cuda_fp16.h: the subset of CUDA's half-precision header the
// simulator supports.  Like NVRTC, the simulator gives a kernel __half only
// when it includes <cuda_fp16.h> (this file, found first on its include path).
#pragma once
#include <cmath>

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
// one rounding, as on a GPU: the double fma is exact for half operands but in the far corners
inline __half __hfma(__half a, __half b, __half c) { return __half(std::fma((double)a, (double)b, (double)c)); }
inline __half __hmax(__half a, __half b) { return (float)a < (float)b ? b : a; }
inline __half __hmin(__half a, __half b) { return (float)b < (float)a ? b : a; }
inline __half __habs(__half a) { return __half(std::fabs((float)a)); }
inline __half __hneg(__half a) { return __half(-(float)a); }
inline __half operator+(__half a, __half b) { return __hadd(a, b); }
inline __half operator-(__half a, __half b) { return __hsub(a, b); }
inline __half operator*(__half a, __half b) { return __hmul(a, b); }
inline __half operator/(__half a, __half b) { return __half((float)a / (float)b); }
inline __half& operator+=(__half& a, __half b) { return a = a + b; }
inline bool operator<(__half a, __half b) { return (float)a < (float)b; }
inline bool operator>(__half a, __half b) { return (float)a > (float)b; }
using half = __half;

// what a launch's argument check reads for a __half scalar or pointer (cuda_sim.h's
// launcher glue, emitted after the kernel source, instantiates it)
namespace sim {
template <> struct scalar_info<__half> { static constexpr char kind = 'f'; static constexpr int elem = 2; };
}  // namespace sim
