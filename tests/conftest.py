import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Seeded, reproducible fuzzing: the same examples on every run and machine.
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("CONVOPS_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_terminal_summary(terminalreporter):
    """How far the fuzz reached: cases, extreme classes, runs per implementation."""
    from helpers import FUZZ_COUNTS
    if FUZZ_COUNTS:
        terminalreporter.section("fuzz coverage")
        for key in sorted(FUZZ_COUNTS):
            terminalreporter.write_line(f"{FUZZ_COUNTS[key]:6d}  {key}")
