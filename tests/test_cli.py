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
    for command in ("info", "check", "shape", "explain", "bench"):
        assert f"    {command}" in out.stdout
    version = convops("--version")
    assert version.returncode == 0 and version.stdout.strip().startswith("convops 0.")
    for command in ("info", "check", "shape", "explain", "bench"):
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
    (("shape", "--input", "5,5", "--kernel", "3", "--stride", "1,2,3"), "--stride needs 1 or 2 values"),
    (("shape", "--input", "1,2,3,4", "--kernel", "3"), "convolutions have 1 to 3 spatial dims"),
    (("shape", "--input", "5", "--kernel", "3", "--padding", "1:"), "argument --padding: expected an int"),
    (("shape", "--input", "5", "--kernel", "3", "--strid", "2"), "unrecognized arguments: --strid 2"),
    (("shape", "--input", "5", "--kernel", "3", "--channels", "1,2,3"), "argument --channels: expected C_in or"),
    (("shape", "--input", "5", "--kernel", "3", "--draw", "/nonexistent/dir/x.png"),
     "--draw: the directory '/nonexistent/dir' does not exist"),
    (("explain", "--input", "1,4,8,8", "--weight", "4,4,3,3", "--output-padding", "1"),
     "--output-padding applies to --transposed only"),
    (("bench", "--csv", "/nonexistent/dir/b.csv"), "--csv: the directory '/nonexistent/dir' does not exist"),
    (("bench", "--reps", "1,2"), "convops bench: error: argument --reps: expected one int"),
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


def test_bench_quick_one_layer_table_csv_and_png(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    csv_path, png_path = tmp_path / "bench.csv", tmp_path / "bench.png"
    out = convops("bench", "--quick", "--layers", "resnet50-3x3-c256-14,mobilenetv2-dw-3x3-c144", "--threads", "1",
                  "--csv", str(csv_path), "--plot", str(png_path))
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith(("resnet50", "mobilenetv2"))]
    assert len(rows) == 4  # one fwd row, and the depthwise layer's three passes
    assert "100%|" in out.stderr  # the progress bar
    import csv
    with open(csv_path) as f:
        records = list(csv.DictReader(f))
    assert len(records) == 4
    for column in ("date", "machine", "threads", "sgemm_peak_gflops", "torch", "layer", "op", "algorithm", "ms",
                   "gflops", "peer_ms", "ratio", "target", "frac_peak", "gbytes_s", "copy_gbytes_s", "frac_copy"):
        assert column in records[0], column
    assert all(float(r["ms"]) > 0 and float(r["ratio"]) > 0 for r in records)
    assert all(float(r["gbytes_s"]) > 0 for r in records if r["layer"].startswith("mobilenetv2"))
    dw = [r for r in records if r["layer"].startswith("mobilenetv2")]
    for r in dw:  # %copy is GB/s over the copy bandwidth measured in the same run
        share = float(r["gbytes_s"]) / float(r["copy_gbytes_s"])
        assert abs(float(r["frac_copy"]) - share) <= 0.01 * share + 1e-3, r
    from matplotlib import image
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(png_path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 400


@pytest.mark.parametrize("args, message", [
    (("bench", "--layers", "nosuchlayer"), "--layers 'nosuchlayer' matches no layer"),
    (("bench", "--plot", "out.jpg"), "--plot must name a .png file"),
    (("bench", "--dtype", "float16"), "--dtype, --algorithm and --batch apply to --device cuda"),
    (("bench", "--threads", "1,2"), "argument --threads: expected one int"),
    (("bench", "--device", "tpu"), "argument --device: invalid choice"),
])
def test_bench_bad_arguments(args, message):
    out = convops(*args)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and message in out.stderr, out.stderr


def test_shape_draws_png_and_animated_gif(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image
    png, gif = tmp_path / "conv.png", tmp_path / "transposed.gif"
    out = convops("shape", "--input", "5,5", "--kernel", "3", "--stride", "2", "--padding", "1", "--draw", str(png))
    assert out.returncode == 0 and f"wrote {png}" in out.stdout
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 150
    out = convops("shape", "--input", "3,3", "--kernel", "3", "--stride", "2", "--padding", "1", "--transposed",
                  "--output-padding", "1", "--draw", str(gif))
    assert out.returncode == 0
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 36  # the kernel at each of the 6x6 outputs
    one_d = tmp_path / "one_d.png"
    assert convops("shape", "--input", "7", "--kernel", "3", "--dilation", "2", "--draw", str(one_d)).returncode == 0
    assert one_d.read_bytes()[:4] == b"\x89PNG"
    bad = convops("shape", "--input", "5", "--kernel", "3", "--draw", str(tmp_path / "x.svg"))
    assert bad.returncode == 2 and "--draw must name a .png or .gif file" in bad.stderr


def test_layout_is_the_guides_relation():
    """The picture's cells and kernel positions agree with the arithmetic for
    every small geometry: the last kernel position ends inside the cells."""
    from convops import arithmetic, pictures
    for i in range(1, 7):
        for k in range(1, 4):
            for s in range(1, 4):
                for d in (1, 2):
                    for p in range(0, 3):
                        try:
                            lay = pictures.layout(i, k, s, (p, p), d)
                        except ValueError:
                            continue
                        assert lay.outputs == arithmetic.conv_output_size(i, k, s, p, d)
                        assert max(lay.taps(lay.outputs - 1)) < len(lay.cells)
                        for a in range(0, max(s, d)):
                            try:
                                expect = arithmetic.conv_transpose_output_size(i, k, s, p, d, a)
                            except ValueError:  # no such transposed convolution (the CLI says so first)
                                continue
                            t = pictures.layout(i, k, s, (p, p), d, transposed=True, a=a)
                            assert t.outputs == expect
                            assert max(t.taps(t.outputs - 1)) < len(t.cells) and t.cells.count("x") <= i


def test_check_exits_1_and_says_failed_when_an_implementation_disagrees(monkeypatch, capsys):
    """In this process (--jobs 1), with the reference's own identity check made to fail."""
    from convops import cli
    monkeypatch.setattr(cli, "_adjoint_error", lambda problem, rng: 1.0)
    assert cli.main(["check", "--quick", "--backend", "numpy", "--jobs", "1", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out.splitlines()[-1]
    assert out.count(" FAIL ") == 3  # fwd, dgrad and wgrad rows of numpy/reference
