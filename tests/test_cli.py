"""The command line, driven as a user drives it: subprocesses, outputs,
exit statuses, one-line errors."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def convops(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "convops", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def test_help_and_version_exit_zero():
    out = convops("--help")
    assert out.returncode == 0
    for command in ("info", "check", "shape", "explain"):
        assert f"    {command}" in out.stdout
    version = convops("--version")
    assert version.returncode == 0 and version.stdout.strip().startswith("convops 0.")
    for command in ("info", "check", "shape", "explain"):
        sub = convops(command, "--help")
        assert sub.returncode == 0 and f"usage: convops {command}" in sub.stdout


@pytest.mark.parametrize("args, message", [
    (("shape", "--input", "5", "--kernel", "x"), "argument --kernel: expected an int or comma-separated ints, got 'x'"),
    (("shape", "--input", "5", "--kernel", "3", "--stride", "0"), "argument --stride: expected values >= 1, got '0'"),
    (("shape", "--input", "5,4,3", "--kernel", "3,3"), "--kernel needs 1 or 3 values"),
    (("shape", "--input", "5", "--kernel", "3", "--padding", "two"), "argument --padding: expected an int"),
    (("shape", "--input", "4", "--kernel", "3", "--stride", "2", "--transposed", "--output-padding", "2"),
     "output_padding"),
    (("shape", "--input", "5", "--kernel", "3", "--output-padding", "1"), "--output-padding applies to --transposed"),
    (("shape", "--kernel", "3"), "the following arguments are required: --input"),
    (("explain", "--input", "8,64,56,56", "--weight", "128,32,3,3"), "expected input with 32 channels"),
    (("explain", "--input", "1,4,8,8", "--weight", "4,4,3,3", "--padding-mode", "mirror"), "padding_mode must be one of"),
    (("check", "--backend", "tpu"), "--backend must be one of"),
    (("frobnicate",), "argument command: invalid choice: 'frobnicate'"),
])
def test_bad_arguments_are_one_line_and_status_2(args, message):
    out = convops(*args)
    assert out.returncode == 2, out
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_shape_prints_the_arithmetic_and_the_picture():
    out = convops("shape", "--input", "5", "--kernel", "3", "--stride", "2", "--padding", "1")
    assert out.returncode == 0
    assert "dim 0: output 3; each output sees 3 inputs" in out.stdout
    assert "input   0 x x x x x 0" in out.stdout
    assert "out 2           # # #" in out.stdout
    out = convops("shape", "--input", "3", "--kernel", "3", "--stride", "2", "--padding", "1", "--transposed",
                  "--output-padding", "1")
    assert out.returncode == 0
    assert "output 6 (valid output sizes 5..6)" in out.stdout
    assert "input   0 x . x . x 0 0" in out.stdout  # zeros inserted, padded by k-1-p (+ output_padding)
    out = convops("shape", "--input", "7,5", "--kernel", "3", "--dilation", "2,1", "--padding", "same")
    assert "padding ((2, 2), (1, 1))" in out.stdout and "out 0   #   #   #" in out.stdout
    out = convops("shape", "--input", "2", "--kernel", "3", "--stride", "3", "--padding", "0", "--transposed")
    assert out.returncode == 0 and "output 6" in out.stdout and "input   0 0 x . . x 0 0" in out.stdout


def test_explain_shows_the_decision():
    out = convops("explain", "--input", "8,64,56,56", "--weight", "128,64,3,3", "--stride", "2", "--padding", "same")
    assert out.returncode == 0
    assert "chosen:  numba/" in out.stdout and "numpy/reference" in out.stdout
    out = convops("explain", "--input", "1,4,9", "--weight", "4,3,3", "--transposed", "--stride", "2",
                  "--output-padding", "1")
    assert out.returncode == 0 and "problem: dgrad" in out.stdout
    forced = convops("explain", "--input", "1,4,8,8", "--weight", "4,1,3,3", "--groups", "4", "--backend", "numba",
                     "--algorithm", "polyphase")
    assert forced.returncode == 2 and "numba/polyphase: stride 1: nothing to decompose" in forced.stderr


def test_info_names_every_backend():
    out = convops("info")
    assert out.returncode == 0
    for backend in ("numpy", "numba", "cuda", "cuda-sim"):
        assert f"  {backend} " in out.stdout
    assert "BLAS:" in out.stdout and "caches:" in out.stdout


def test_check_quick_one_backend_table_and_progress():
    out = convops("check", "--quick", "--backend", "numba")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "all implementations agree with the reference" in out.stdout
    rows = [line for line in out.stdout.splitlines() if line.startswith(("fwd ", "dgrad ", "wgrad "))]
    assert len(rows) >= 9 and all(" ok " in row for row in rows)
    assert "100%|" in out.stderr  # the progress bar
    assert convops("selfcheck", "--quick", "--backend", "numpy", "--no-progress").returncode == 0  # the old name
