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
