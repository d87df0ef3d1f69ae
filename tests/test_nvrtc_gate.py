"""The offline NVRTC gate (ci/nvrtc_gate.py): every kernel instantiation the
launchers can request compiles for sm_75/80/90 with no register spill, and
its resources match the committed table (ci/nvrtc_resources.txt)."""

from pathlib import Path

import pytest

from convops.cuda.common import SOURCES, kernel_instantiations

from helpers import nvrtc_gate

ROOT = Path(__file__).resolve().parent.parent


def test_every_source_is_declared_with_every_dtype():
    # every dtype its algorithm registers (a source named after no algorithm serves them all)
    from convops import registry
    from convops.cuda.common import CTYPE
    sources = {Path(p).name for p, _, _ in kernel_instantiations()}
    assert sources == {p.name for p in (ROOT / "kernels").glob("*.cu")}
    for filename, names in SOURCES.items():
        impls = [i for i in registry.implementations(backend="cuda-sim") if i.algorithm == Path(filename).stem]
        dtypes = set().union(*(i.dtypes for i in impls)) if impls else set(CTYPE)
        for dtype in dtypes:
            assert any(n.endswith(f"<{CTYPE[dtype]}>") for n in names), (filename, dtype)


def test_nvrtc_gate_matches_the_committed_table():
    pytest.importorskip("cuda.bindings.nvrtc", reason="the gate needs cuda-bindings (pip install 'convops[nvrtc]')")
    gate = nvrtc_gate()
    rows = gate.run_gate()
    spills = [(r[0], r[1]) for r in rows if r[5] or r[6]]
    assert not spills, f"register spills: {spills}"
    assert gate.format_table(rows) == gate.TABLE.read_text(), (
        "kernel resources changed: regenerate ci/nvrtc_resources.txt with `python ci/nvrtc_gate.py --write` "
        "and review the difference")


def test_gate_parses_ptxas_spills():
    log = """ptxas info    : Compiling entry function '_Z1fv' for 'sm_90'
ptxas info    : Function properties for _Z1fv
ptxas         .     8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem"""
    info = nvrtc_gate().parse_ptxas(log, {"_Z1fv": "f<float>"})
    assert info == {"f<float>": dict(regs=40, smem=2048, stack=8, spill_st=4, spill_ld=12)}


def test_tensor_core_probes_compile_for_sm80_and_sm90():
    """Every mma.cuh instruction form the simulator tests exercise (ldmatrix
    x1/x2/x4 with and without .trans, both mma shapes, cp.async with its
    commit and waits, cvt.rna.tf32) also assembles under NVRTC, where the
    kernels use only some of them."""
    pytest.importorskip("cuda.bindings.nvrtc", reason="the gate needs cuda-bindings (pip install 'convops[nvrtc]')")
    import sys
    sys.path.insert(0, str(ROOT / "tests"))
    from test_tensor_core import NAMES, OPTIONS, PROBES
    names = NAMES + ("probe_f16", "probe_tf32", "round_tf32")
    for arch in ("sm_80", "sm_90"):
        info = nvrtc_gate().compile_text(PROBES, "tensor_core_probes.cu", names, OPTIONS, arch)
        assert set(info) == set(names)
