#!/usr/bin/env bash
# Multi-GPU / multi-node training through torchrun (tools/dist_run.sh).
#   tools/dist_train.sh CONFIG GPUS [train.py args...]
# Several nodes: run on each with NNODES, NODE_RANK, MASTER_ADDR (and PORT) set.
# Without CUDA, GPUS processes run on CPU with the gloo backend (used by the tests).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG GPUS [train.py args...]" >&2; exit 2
fi
exec bash "$(dirname "$0")/dist_run.sh" "$2" train.py "$1" "${@:3}"
