"""Occupancy estimate per CUDA kernel from the NVRTC gate's resource table
(ci/nvrtc_resources.txt): blocks of 256 threads per SM as limited by
registers (allocated per warp in units of 256), threads and shared memory
(+1 KiB reserved per block), on an H100 (sm_90: 64 K registers, 2048
threads, 228 KiB shared memory per SM).  An estimate from compiled
resources, not a measurement; dynamic shared memory (depthwise fwd's patch)
is not in the table."""

from __future__ import annotations

from pathlib import Path

TABLE = Path(__file__).resolve().parent.parent / "ci" / "nvrtc_resources.txt"
REGS, THREADS, SMEM, MAX_BLOCKS, BLOCK = 65536, 2048, 233472, 32, 256


def estimate(arch: str = "sm_90"):
    for line in TABLE.read_text().splitlines()[1:]:
        name, a, regs, smem, *_ = line.split()
        if a != arch:
            continue
        regs, smem = int(regs), int(smem)
        per_warp = -(-(-(-regs // 8) * 8 * 32) // 256) * 256
        blocks = min(REGS // (per_warp * BLOCK // 32), THREADS // BLOCK, MAX_BLOCKS,
                     SMEM // (smem + 1024) if smem else MAX_BLOCKS)
        yield name, regs, smem, blocks, blocks * BLOCK // 32 / (THREADS // 32)


if __name__ == "__main__":
    print(f"{'kernel':<28} {'regs':>4} {'smem':>6} {'blocks/SM':>9} {'occupancy':>9}   (sm_90 estimate)")
    for name, regs, smem, blocks, occ in estimate():
        print(f"{name:<28} {regs:>4} {smem:>6} {blocks:>9} {occ:>9.0%}")
