#!/usr/bin/env bash
# Set up the environment if needed, lint, then run the whole test suite.
#   bash tools/run_tests.sh [pytest args...]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$REPO/tools/setup_env.sh"
cd "$REPO"
PY="${BENCH_VENV:-$REPO/.venv}/bin/python"
echo "[tests] ruff check (pyproject.toml [tool.ruff])"
"$PY" -m ruff check .
exec "$PY" -m pytest "$@"
