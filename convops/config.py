"""Settings, in one place: every knob of every backend, and the selection order.

Environment variables are read once, at import; a bad value is a ValueError
that names the variable.  Sizes accept unit suffixes (``64MiB``, ``1GiB``,
``512k``, ``1e6``); durations are seconds.

``validation``: when true every call also runs the NumPy reference and raises
``convops.ValidationError`` if the result is outside tolerance (or if the
kernel changed an operand).  Defaults to ``CONVOPS_VALIDATE`` (``1``/``true``/``yes``).
"""

from __future__ import annotations

import os
import re

_TRUE = ("1", "true", "yes", "on")
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
          "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


def parse_bytes(text: str, name: str = "value") -> int:
    """``"64MiB"`` -> 67108864; ``"1e6"`` -> 1000000; ``"512k"`` -> 524288 (k/M/G
    without ``B`` are binary, ``kB``/``MB``/``GB`` decimal).  ValueError naming
    ``name`` for anything else, or a negative size."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = m and m.group(2).lower()
    if not m or unit not in _UNITS:
        raise ValueError(f"{name}={text!r} is not a size: use bytes with an optional unit, e.g. 67108864, "
                         f"64MiB, 512k, 1e6, 1GB")
    value = float(m.group(1)) * _UNITS[unit]
    if value != int(value):
        raise ValueError(f"{name}={text!r} is not a whole number of bytes")
    return int(value)


def _env(name: str, default, parse):
    """An environment variable parsed by ``parse(text)`` (which raises a
    ValueError that names the variable), or ``default`` when unset or empty."""
    text = os.environ.get(name)
    return default if text is None or not text.strip() else parse(text)


def _env_bytes(name: str, default: int) -> int:
    return _env(name, default, lambda text: parse_bytes(text, name))


def _number(name: str, text: str, kind, what: str, ok) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not {what}") from None
    if not ok(value):
        raise ValueError(f"{name}={text!r} is out of range: it must be {what}")
    return value


def _env_seconds(name: str, default: float) -> float:
    return _env(name, default, lambda text: _number(name, text, float, "a positive number of seconds",
                                                    lambda v: v > 0))


def _env_int(name: str, default: int) -> int:
    return _env(name, default, lambda text: _number(name, text, int, "an integer >= 0", lambda v: v >= 0))


validation: bool = os.environ.get("CONVOPS_VALIDATE", "").strip().lower() in _TRUE


def set_validation(enabled: bool) -> None:
    """Turn validation mode on or off for this process."""
    global validation
    if not isinstance(enabled, bool):
        raise TypeError(f"set_validation expects a bool, got enabled={enabled!r}")
    validation = enabled


def get_validation() -> bool:
    return validation


# ---- selection ------------------------------------------------------------------
# algorithm="auto" tries backends in this order for each array kind ...
auto_backends = {"numpy": ("numba", "numpy"), "cuda": ("cuda",)}
# ... and, within a backend, algorithms in this order; the first that can run
# the problem (and does not decline it heuristically) is chosen.  Every
# registered algorithm must appear here.
selection_order = {
    "numba": ("depthwise", "subpixel", "winograd", "im2col", "space_to_batch", "direct", "polyphase"),
    "numpy": ("reference",),
    "cuda": ("depthwise", "implicit_gemm_tc", "implicit_gemm", "im2col", "direct"),
    "cuda-sim": ("depthwise", "implicit_gemm_tc", "implicit_gemm", "im2col", "direct"),
}

# ---- CPU (Numba) backend ------------------------------------------------------
# Fast-math flags for the Numba kernels.  Reassociation lets LLVM vectorize the
# reductions; it is still deterministic (one compiled order per kernel, each
# output element computed by exactly one parallel iteration).  No nnan/ninf:
# NaN and infinity propagate as in IEEE arithmetic (and x*0 is not folded to 0).
cpu_fastmath = frozenset({"reassoc", "contract", "nsz", "arcp"})

# Output channels per register/L1 tile of the direct kernels.
cpu_channel_block = 4

# Upper bound on the scratch memory of one call (bytes, all threads together):
# im2col's column chunks and GEMM temporaries, wgrad's partial sums.  Chunks
# shrink (over output positions, output channels and the GEMM's reduction) to
# stay under it; an implementation that cannot says so in its reasons.
cpu_workspace_bytes = _env_bytes("CONVOPS_CPU_WORKSPACE_BYTES", 64 * 2**20)

# Preferred column chunk per thread (bytes, at most the cap's share): small
# enough that the columns are still in cache when the GEMM reads them.
cpu_chunk_bytes = _env_bytes("CONVOPS_CPU_CHUNK_BYTES", 4 * 2**20)

# Smallest chunk of output positions im2col's flat layout aims for before it
# splits channels into blocks (GEMMs narrower than this run poorly).
cpu_min_chunk_positions = 256

# Winograd F(2x2,3x3) runs 3x3 stride-1 layers with at least this many input
# and output channels (fewer: the transforms cost more than they save).
cpu_winograd_min_channels = 16
# ... and transform-domain filters (16 * T * C * K elements) of at most this
# many bytes: every chunk of tiles reads all of them (2026-11-23, 3x3 fwd
# against oneDNN, winograd / im2col: 128 channels 28x28 (1 MiB) 0.93 / 0.60,
# 256 channels 14x14 (4 MiB) 0.94 / 0.63, 512 channels 14x14 (16 MiB)
# 0.62 / 0.67, 512 channels 28x28 0.48 / 0.73).
cpu_winograd_max_filter_bytes = 4 * 2**20
# ... and output rows (of a dilation phase) of at least this many 2x2 tiles:
# each row carries one junk tile, and the edges cost more on short rows
# (2026-11-23, 8 images x 64 channels: 14x14 1.23x im2col's speed, 7x7 phases
# of a 14x14 dilation-2 layer 0.93x, 8x8 0.83x, 4x4 0.57x).
cpu_winograd_min_tile_columns = 6
# Auto uses Winograd for wgrad too (ResNet's c64 layer, 2026-11-23: 0.79x
# oneDNN against im2col's 0.64x); CONVOPS_CPU_WINOGRAD_WGRAD=0 leaves wgrad
# to im2col (algorithm="winograd" still runs it).
cpu_winograd_wgrad = os.environ.get("CONVOPS_CPU_WINOGRAD_WGRAD", "").strip().lower() not in ("0", "false", "no", "off")
# Bytes per thread of one Winograd chunk (its gathered input rows and 16
# transformed input and output planes): large enough for GEMMs over 100-200
# tiles (64x64 @ 64x29 ran at 61 GFLOP/s on one core, @ 64x203 at 99), small
# enough to stay near L2 between the transforms and the GEMMs.  Measured on
# 2026-11-23's Zen 4 (ResNet c64 56x56 and c128 28x28 fwd/dgrad, min of 11):
# 512 KiB 0.85-0.97x oneDNN, 1-2 MiB 0.96-1.18x, 3-4 MiB 0.68-0.95x.
cpu_winograd_chunk_bytes = _env_bytes("CONVOPS_CPU_WINOGRAD_CHUNK_BYTES", 1536 * 2**10)
# The same for Winograd wgrad, whose 16 GEMMs reduce over a chunk's tiles
# into (K x C) accumulators read and written once per chunk: it wants longer
# chunks, and at least max(C, K) tiles (up to 512) where the workspace cap
# allows (cpu/winograd.py _wgrad_plan).  Measured 2026-11-23 (same process,
# min of 7, 4 rounds), wgrad ms with session 8's plan (1.5 MiB) / this one:
# c64 56x56 13.0 / 12.9, c128 28x28 16.7 / 13.5, c256 14x14 50.2 / 12.8,
# DeepLab d2 17.9 / 16.2, conv3d c32 8.4 / 7.2.
cpu_winograd_wgrad_chunk_bytes = _env_bytes("CONVOPS_CPU_WINOGRAD_WGRAD_CHUNK_BYTES", 4 * 2**20)

# im2col dgrad splits input channels into blocks until there are at least this
# many parallel iterations (decided by the problem alone: deterministic).
cpu_dgrad_min_jobs = 8

# im2col wgrad sums per-chunk GEMMs into at most this many fixed partial-sum
# slots (assigned by chunk index, not by thread), then adds the slots in order.
cpu_wgrad_max_slots = 16

# OpenBLAS kernels for SciPy's BLAS (see convops.cpu.blas): "auto" picks the
# SkylakeX kernels on AVX-512 CPUs OpenBLAS mistakes for Haswell, unless the
# user set OPENBLAS_CORETYPE; "none" leaves OpenBLAS alone; any other value is
# an OpenBLAS core name.
openblas_coretype = os.environ.get("CONVOPS_OPENBLAS_CORETYPE", "auto").strip() or "auto"

# ---- CUDA backends (cuda, cuda-sim) -------------------------------------------------
# float32 on tensor cores (implicit_gemm_tc).  By default each operand is split
# into three TF32 pieces and six TF32 products per step are summed: products
# exact to 2^-34, float32 accuracy (tolerance 1e-5).  Two opt-ins trade
# accuracy for speed, as torch.backends.cudnn.allow_tf32 does:
# allow_tf32 (CONVOPS_ALLOW_TF32=1): one TF32 product, 10 mantissa bits per
# operand, relative error up to about 1e-3, held to float16's tolerance (1e-2);
# tf32x3 (CONVOPS_3XTF32=1): 3xTF32, two pieces and three products, each
# product to about 2^-22 (four times float32's rounding; a sum that cancels
# can miss 1e-5), held to 1e-4.  allow_tf32 wins when both are set.
allow_tf32 = os.environ.get("CONVOPS_ALLOW_TF32", "").strip().lower() in _TRUE
tf32x3 = os.environ.get("CONVOPS_3XTF32", "").strip().lower() in _TRUE

# Most blocks of a grid-stride launch (the kernels loop over the rest); far
# below grid.x's limit, and enough to fill any current GPU many times over.
cuda_max_grid_blocks = 65535

# Most scratch memory of one CUDA call's column buffer (im2col): images are
# processed in chunks that fit.
cuda_workspace_bytes = _env_bytes("CONVOPS_CUDA_WORKSPACE_BYTES", 256 * 2**20)

# Split-K of the GEMM-shaped wgrad kernels: slice the reduction (N*Z*P*Q) until
# the launch has about this many blocks (two waves on a 132-SM H100) ...
cuda_target_blocks = 264
# ... into at most this many slices (each a K x C/g*T*R*S float32 partial sum in
# the workspace (float64 for float64), added in a fixed order by a second kernel) ...
cuda_max_splits = 64
# ... none shorter than this many reduction steps.
cuda_min_split = 256
# depthwise wgrad: slices of the output tiles until the launch has about this
# many blocks (each block walks its slice's tiles one after another, so it is
# latency-bound; 8 per SM of a 132-SM H100).
cuda_depthwise_wgrad_blocks = 1056

# ---- SIMT simulator (convops.sim) ---------------------------------------------
# Stack of each simulated GPU thread (a fiber); a deeper thread is reported as
# a stack overflow.
sim_stack_bytes = _env_bytes("CONVOPS_SIM_STACK_BYTES", 64 * 2**10)
# A launch during which no thread reaches a barrier, a warp operation or its
# end for this long is stopped (a spin-wait never ends on the simulator's
# cooperative threads) and reported.
sim_watchdog_seconds = _env_seconds("CONVOPS_SIM_WATCHDOG", 60.0)
# Target whose launch limits the simulator enforces when a module's options
# name none (-arch=sm_XX): "sm_70", "sm_80" or "sm_90".
def _arch(text: str) -> str:
    if text.strip() not in ("sm_70", "sm_75", "sm_80", "sm_90"):
        raise ValueError(f"CONVOPS_SIM_ARCH={text!r} is not one of sm_70, sm_75, sm_80, sm_90")
    return text.strip()


sim_default_arch = _env("CONVOPS_SIM_ARCH", "sm_80", _arch)
# Most shadow memory the race detector may use for one launch (about 72 bytes
# per element of every argument and per byte of shared memory); a bigger launch
# is an error that says to use smaller arrays or check_races=False.
sim_race_shadow_bytes = _env_bytes("CONVOPS_SIM_RACE_SHADOW_BYTES", 4 * 2**30)
# Worker threads per launch (blocks run in parallel); 0: one per CPU.
sim_threads = _env_int("CONVOPS_SIM_THREADS", 0)


# ---- what selection may depend on ---------------------------------------------------
def fingerprint() -> tuple:
    """Every setting's current value (a dict as its items): the dispatcher
    memoizes plans under it, so changing any knob (``convops.config.x = ...``)
    is seen by the next call.  A setting that cannot be hashed (a list, say)
    makes the key unhashable, and the dispatcher then does not memoize."""
    g = globals()
    return tuple(tuple(g[n].items()) if type(g[n]) is dict else g[n] for n in _SETTINGS)


_SETTINGS = tuple(name for name, value in globals().items()
                  if not name.startswith("_") and not callable(value) and not isinstance(value, type(os))
                  and name not in ("annotations", "validation"))
