#!/usr/bin/env bash
# Multi-GPU / multi-node evaluation through torchrun (tools/dist_run.sh).
#   tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py args...]" >&2; exit 2
fi
exec bash "$(dirname "$0")/dist_run.sh" "$3" test.py "$1" "$2" "${@:4}"
