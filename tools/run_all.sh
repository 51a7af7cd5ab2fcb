#!/usr/bin/env bash
# Set up the environment if needed, then run the suite's main job on its default.
#   bash tools/run_all.sh [args of the main job...]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$REPO/tools/setup_env.sh"
cd "$REPO"
exec "${BENCH_VENV:-$REPO/.venv}/bin/python" tools/check_configs.py "$@"
