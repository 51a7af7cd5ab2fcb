#!/usr/bin/env bash
# Set up the environment if needed, then run the main job (tools/reproduce.py, default: toy).
#   bash tools/run_all.sh [args of the main job...]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$REPO/tools/setup_env.sh"
cd "$REPO"
exec "${BENCH_VENV:-$REPO/.venv}/bin/python" tools/reproduce.py "$@"
