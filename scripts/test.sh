#!/usr/bin/env bash
# Runs the test suite: creates .venv if needed, installs -e .[test], runs pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow" -x).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/_venv.sh" test
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
