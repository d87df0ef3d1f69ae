#!/usr/bin/env python3
"""The offline NVRTC gate: compile every CUDA kernel instantiation the
launchers can request (``convops.cuda.kernel_instantiations()``), with the
options they pass, for sm_75, sm_80 and sm_90 (CUDA 13 has no sm_70), through ``cuda-bindings``'
NVRTC with ``-Xptxas=-v``; no GPU needed.

Fails (exit 1) on any compile error and on any register spill.  Writes the
registers, shared memory and stack per entry point and architecture to a
table; ``--check`` compares with the committed table instead
(``ci/nvrtc_resources.txt``), so a change that moves the register budget
shows in review: regenerate it with ``python ci/nvrtc_gate.py --write``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# sm_70 (Volta) is gone from CUDA 13: NVRTC 13 (what cupy-cuda13x compiles with) rejects
# -arch=sm_70, and CUDA 13 does not run on Volta.  sm_75 is the oldest target it has.
ARCHS = ("sm_75", "sm_80", "sm_90")
TABLE = ROOT / "ci" / "nvrtc_resources.txt"
HEADER = f"{'kernel':<34} {'arch':<6} {'regs':>5} {'smem':>6} {'stack':>6} {'spill_st':>8} {'spill_ld':>8}"


def _check(result, what):
    err = result[0]
    from cuda.bindings import nvrtc
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"{what}: {err}")
    return result[1:] if len(result) > 2 else (result[1] if len(result) == 2 else None)


def compile_source(path: str, names, options, arch: str):
    """{name expression: {regs, smem, stack, spill_st, spill_ld}} of one source for one arch."""
    from convops.cuda.common import source_text
    return compile_text(source_text(Path(path).name), path, names, options, arch)


def compile_text(source: str, path: str, names, options, arch: str):
    """compile_source for source text (``path`` names it in messages)."""
    from cuda.bindings import nvrtc
    text = source.encode()
    prog = _check(nvrtc.nvrtcCreateProgram(text, Path(path).name.encode(), 0, [], []), "nvrtcCreateProgram")
    for name in names:
        _check(nvrtc.nvrtcAddNameExpression(prog, name.encode()), f"nvrtcAddNameExpression({name})")
    opts = [o.encode() for o in (*options, f"-arch={arch}", "-Xptxas=-v")]
    err, = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    size = _check(nvrtc.nvrtcGetProgramLogSize(prog), "log size")
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, log)
    log = log.decode(errors="replace").rstrip("\x00 ")
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"{path} for {arch} does not compile:\n{log}")
    lowered = {}
    for name in names:
        lowered[_check(nvrtc.nvrtcGetLoweredName(prog, name.encode()), "lowered name").decode()] = name
    nvrtc.nvrtcDestroyProgram(prog)
    return parse_ptxas(log, lowered)


def parse_ptxas(log: str, lowered: dict) -> dict:
    out, current = {}, None
    for line in log.splitlines():
        m = re.search(r"(?:Compiling entry function|Function properties for) '?([\w$]+)'?", line)
        if m:
            current = lowered.get(m.group(1))
            if current is not None:
                out.setdefault(current, dict(regs=0, smem=0, stack=0, spill_st=0, spill_ld=0))
            continue
        if current is None:
            continue
        rec = out[current]
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            rec["stack"], rec["spill_st"], rec["spill_ld"] = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            rec["regs"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            rec["smem"] = int(s.group(1)) if s else 0
    return out


def run_gate() -> list[tuple]:
    from convops.cuda.common import kernel_instantiations, source_min_arch
    rows = []
    for path, names, options in kernel_instantiations():
        for arch in ARCHS:
            if int(arch[3:]) < source_min_arch(path):  # (tensor-core sources: sm_80 and sm_90)
                continue
            info = compile_source(path, names, options, arch)
            missing = [n for n in names if n not in info]
            if missing:
                raise RuntimeError(f"ptxas reported nothing for {missing} ({path}, {arch})")
            for name in names:
                r = info[name]
                rows.append((name, arch, r["regs"], r["smem"], r["stack"], r["spill_st"], r["spill_ld"]))
    return rows


def format_table(rows) -> str:
    lines = [HEADER] + [f"{n:<34} {a:<6} {r:>5} {s:>6} {st:>6} {ss:>8} {sl:>8}" for n, a, r, s, st, ss, sl in rows]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help=f"write the table to {TABLE.relative_to(ROOT)}")
    ap.add_argument("--check", action="store_true", help="compare with the committed table")
    args = ap.parse_args(argv)
    rows = run_gate()
    table = format_table(rows)
    spills = [r for r in rows if r[5] or r[6]]
    print(table, end="")
    status = 0
    if spills:
        print(f"FAIL: register spills in {len(spills)} instantiations: {[(r[0], r[1]) for r in spills]}")
        status = 1
    if args.write:
        TABLE.write_text(table)
    if args.check and TABLE.read_text() != table:
        print(f"FAIL: resources differ from {TABLE.relative_to(ROOT)} (regenerate with --write and review)")
        status = 1
    if status == 0:
        print(f"nvrtc gate ok: {len(rows)} instantiation x architecture compiles, no spills")
    return status


if __name__ == "__main__":
    sys.exit(main())
