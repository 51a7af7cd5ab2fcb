#!/usr/bin/env bash
# torchrun launcher shared by dist_train.sh and dist_test.sh (one process per GPU).
#   tools/dist_run.sh GPUS SCRIPT [script args...]
# Several nodes: run on each with NNODES, NODE_RANK, MASTER_ADDR (and PORT) set.
# Without CUDA, GPUS processes run on CPU with the gloo backend (used by the tests).
set -euo pipefail
GPUS=$1
SCRIPT=$2
HERE=$(cd "$(dirname "$0")" && pwd)
exec "${PYTHON:-python}" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
  --nproc_per_node="$GPUS" "$HERE/$SCRIPT" "${@:3}" --launcher pytorch
