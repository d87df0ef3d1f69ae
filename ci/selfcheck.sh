#!/usr/bin/env bash
# Set up a virtual environment in .venv (or $CONVOPS_VENV) and run the
# package's main job on the CPU: every registered implementation against the
# NumPy reference (convops check --quick), then convops against PyTorch on
# common layers (convops bench --quick).  Extra arguments go to the check.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${CONVOPS_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e ".[bench]"
"$venv/bin/convops" check --quick "$@"
exec "$venv/bin/convops" bench --quick
