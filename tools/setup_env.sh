#!/usr/bin/env bash
# Set up (or check) the suite's Python environment. Idempotent: a finished set-up is
# recognised by a stamp and takes seconds; an interrupted one resumes at the missing step.
#
#   bash tools/setup_env.sh
#
# Environment:
#   BENCH_VENV      where the virtualenv lives (default: <repo>/.venv, git-ignored)
#   PYTHON          interpreter that creates it (default: python3.11, else python3)
#   FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST   build mmcv's CUDA ops (automatic when a GPU is visible)
#   PIP_INDEX_URL / PIP_EXTRA_INDEX_URL  e.g. to take CPU-only torch wheels from another index
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${BENCH_VENV:-$REPO/.venv}
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=$(command -v python3.11 || command -v python3)
fi
PY="$VENV/bin/python"

say() { echo "[setup] $*"; }

# The stamp names the inputs of the set-up: change one and the steps are checked again.
inputs_hash=$(cat "$REPO/pyproject.toml" "$REPO/tools/setup_env.sh" "$REPO/tools/build_mmcv.sh" \
  | sha256sum | cut -c1-16)
stamp="$VENV/.bench-setup-$inputs_hash"
if [[ -f "$stamp" ]] && "$PY" -c "import mmcv.ops, mmdet, mmseg, timm, backbones" 2>/dev/null; then
  say "environment up to date: $VENV"
  exit 0
fi

if [[ ! -x "$PY" ]]; then
  say "creating virtualenv $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi

say "build tools (pip, setuptools<81 for pkg_resources, wheel)"
"$PY" -m pip install -q -U pip "setuptools>=77,<81" wheel

if "$PY" -c "import torch, torchvision, sys; sys.exit(not (torch.__version__.startswith('2.14.1') and torchvision.__version__.startswith('0.29.1')))" 2>/dev/null; then
  say "torch 2.14.1 / torchvision 0.29.1 present"
else
  say "installing torch 2.14.1 + torchvision 0.29.1"
  "$PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
fi

if "$PY" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '2.1.0')" 2>/dev/null; then
  say "mmcv 2.1.0 with compiled ops present"
else
  PYTHON="$PY" bash "$REPO/tools/build_mmcv.sh"
fi

say "installing the suite (editable) with mmengine, mmdet, mmsegmentation, timm, pycocotools, pytest"
"$PY" -m pip install -q --no-build-isolation -e "$REPO[test]"

"$PY" -c "import mmcv.ops, mmdet, mmseg, timm, backbones"
rm -f "$VENV"/.bench-setup-*
touch "$stamp"
say "done: $VENV ($("$PY" -c 'import torch; print("CUDA" if torch.cuda.is_available() else "CPU")') torch)"
