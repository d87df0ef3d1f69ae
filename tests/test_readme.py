"""Every Python example in the README runs as written (from the repository's
root, as the README says)."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_has_examples():
    assert len(_blocks()) >= 5


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_example_runs(index, monkeypatch):
    source = _blocks()[index]
    if "import torch" in source:
        pytest.importorskip("torch")
    if "import cupy" in source:
        pytest.importorskip("cupy")
    monkeypatch.chdir(ROOT)
    exec(compile(source, f"README.md python block {index + 1}", "exec"), {"__name__": "readme_example"})
