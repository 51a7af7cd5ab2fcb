#!/usr/bin/env bash
# srun launcher shared by slurm_train.sh and slurm_test.sh (one task per GPU).
#   [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=...] \
#     tools/slurm_run.sh PARTITION JOB_NAME SCRIPT [script args...]
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
SCRIPT=$3
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2086  # SRUN_ARGS is a list of flags
exec srun -p "$PARTITION" \
  --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="${GPUS:-8}" \
  --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="${CPUS_PER_TASK:-5}" --kill-on-bad-exit=1 \
  ${SRUN_ARGS:-} "${PYTHON:-python}" -u "$HERE/$SCRIPT" "${@:4}" --launcher=slurm
