#!/usr/bin/env bash
# Set up a virtual environment in .venv (or $CONVOPS_VENV) with the test
# extras, then run the test suite.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${CONVOPS_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e ".[test]"
exec "$venv/bin/python" -m pytest "$@"
