"""Progress bars for long commands: tqdm on stderr, or nothing where tqdm is
not installed (a machine that runs from a checkout without installing)."""

from __future__ import annotations

import sys


class _Silent:
    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass

    def set_description_str(self, text):
        pass


def bar(total: int, unit: str, enabled: bool = True):
    """A progress bar over ``total`` items (a context manager with
    ``update()`` and ``set_description_str()``)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _Silent()
    return tqdm(total=total, unit=unit, file=sys.stderr, disable=not enabled, mininterval=0.5,
                bar_format="{l_bar}{bar:24}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")
