"""The benchmark layers and the CPU goals: defined in the package
(``convops.benchmark``, so an installed wheel's ``convops bench`` has them)
and re-exported here for the scripts in bench/."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convops.benchmark import LAYERS, TARGETS  # noqa: E402,F401
