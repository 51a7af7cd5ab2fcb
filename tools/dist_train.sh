#!/usr/bin/env bash
# Multi-GPU / multi-node training through torchrun.
#   tools/dist_train.sh CONFIG GPUS [train.py args...]
# Several nodes: run on each with NNODES, NODE_RANK, MASTER_ADDR (and PORT) set.
# Without CUDA, GPUS processes run on CPU with the gloo backend (used by the tests).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 CONFIG GPUS [train.py args...]" >&2; exit 2
fi
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHON=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")" && pwd)

PYTHONPATH="$HERE/..${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
  --nproc_per_node="$GPUS" --master_port="$PORT" \
  "$HERE/train.py" "$CONFIG" --launcher pytorch "${@:3}"
