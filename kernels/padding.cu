// convops: the adjoint of a padding mode.  dgrad of a reflect / replicate /
// circular / symmetric convolution is computed on the padded input's
// geometry (zeros, no padding) and folded back here.
#include "conv_common.cuh"

// fold_padding: dx (N, C, D, H, W) from gp (N, C, D+pd+pd_hi, H+..., W+...),
// the gradient of the padded input in the accumulation type (float32 for
// float16: the launcher computes it so, and nothing is rounded before the sum): each input element sums every padded
// position numpy.pad copies from it (its own interior position plus the
// padded ones that map to it), plus bias[c] if given.
// Thread -> output: one thread per dx element, w fastest; it gathers (no
// atomics) in a fixed order.  Per dim it scans the pad positions only
// (lo + hi of them), so the cost is O((lo+hi+1)^3) per element.
// g: the user problem's geometry (D/H/W the input, pd/ph/pw and the *_hi
// below the padding, mode the padding mode).
template <class T>
__global__ void __launch_bounds__(256, 1) fold_padding(const typename Acc<T>::type* __restrict__ gp,
                                                        const T* __restrict__ bias,
                                                     T* __restrict__ dx, ConvGeom g, int hd, int hh, int hw) {
  typedef typename Acc<T>::type A;
  const int Dp = g.D + g.pd + hd, Hp = g.H + g.ph + hh, Wp = g.W + g.pw + hw;
  const index_t total = (index_t)g.N * g.C * g.D * g.H * g.W;
  GRID_STRIDE_LOOP(i, total) {
    index_t r = i;
    const int ix = r % g.W; r /= g.W;
    const int iy = r % g.H; r /= g.H;
    const int iz = r % g.D;
    const index_t nc = r / g.D;
    A acc = 0;
    // candidates along a dim: the interior position (index -1 here), then
    // every pad position; keep those whose source is this element
    for (int a = -1; a < g.pd + hd; ++a) {
      const int pz = a < 0 ? iz + g.pd : (a < g.pd ? a : g.pd + g.D + (a - g.pd));
      if (a >= 0 && source_index(pz - g.pd, g.D, g.mode) != iz) continue;
      for (int b = -1; b < g.ph + hh; ++b) {
        const int py = b < 0 ? iy + g.ph : (b < g.ph ? b : g.ph + g.H + (b - g.ph));
        if (b >= 0 && source_index(py - g.ph, g.H, g.mode) != iy) continue;
        const index_t row = ((nc * Dp + pz) * Hp + py) * (index_t)Wp;
        for (int c = -1; c < g.pw + hw; ++c) {
          const int px = c < 0 ? ix + g.pw : (c < g.pw ? c : g.pw + g.W + (c - g.pw));
          if (c >= 0 && source_index(px - g.pw, g.W, g.mode) != ix) continue;
          acc += gp[row + px];
        }
      }
    }
    if (g.has_bias) acc += load(bias, (int)(nc % g.C));
    store(dx, i, acc);
  }
}
