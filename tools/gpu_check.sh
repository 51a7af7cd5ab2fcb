#!/usr/bin/env bash
# Every GPU check of the suite in one run, all results in one folder.
#
#   bash tools/gpu_check.sh [--out DIR] [--wheels DIR] [--with-mmcv [--parallel-mmcv]]
#       [--part all|stage1|core|train] [--budget SECONDS] [--archive FILE.tgz] [--dry-run]
#   bash tools/gpu_check.sh --download-wheels DIR      # beforehand, on a machine with network
#
# Meant for a bare GPU machine: torch, triton and timm, no network, no rich, cv2, pytest,
# ninja or setuptools < 81; everything else travels with the source tree (64 MiB at most).
#
# Stage 1 (step stage1, at most 4 minutes on the GPU) needs nothing but torch, triton, timm
# and this tree: tools/gpu_stage1.py checks every scan backend on CUDA against the float64
# reference, times every backend and variant at VMamba-T stage 1 with the floor, the ratios
# and the proxy's estimate (results/benchmarks/sass.json) beside each time, and times the
# backbones (fp16 fwd+bwd) against MambaOut-T                              -> stage1.json
#
# Later stages need the suite's pure-Python wheels (--wheels DIR installs them offline and
# without their dependencies: pip install --no-index --no-deps --find-links DIR NAME ...).
# Fill DIR beforehand, on a networked machine, with --download-wheels DIR, which runs
#
#   python -m pip download -d DIR --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 ... NAME ...   # every wheel
#   python -m pip download -d DIR --no-deps --no-build-isolation --no-binary :all: \
#       mmcv==2.1.0          # the sdist (its metadata needs setuptools<81 and torch here)
#
# (GPU_PYTHON_VERSION=3.X for another Python on the GPU machine; about 13 MB in all).
#
# Steps, each under a time limit; a failed step is recorded and the next one runs:
#   stage1    tools/gpu_stage1.py (above)                                      -> stage1.json
#   wheels    offline install of the wheels (with --wheels)
#   env       the environment report (incl. whether Triton kernels compile) -> env.json
#   tests     pytest tests/test_selective_scan.py tests/test_scan_triton.py on CUDA: compiled
#             kernels, every backend, full shapes                            -> tests.xml
#   scan-*    tools/benchmark.py scan --device cuda, VMamba V0-T (N=16) and V2-T (N=1), every
#             stage at 800x1344 batch 2 (Mask R-CNN) and 512x512 batch 2 (UperNet): fwd and
#             fwd+bwd time, peak memory, GB/s and fraction of peak per backend, the fused
#             cross2d route vs unfused, the issue's scan targets               -> benchmarks/
#   backbone  tools/benchmark.py backbone --device cuda: MambaOut-T (ours, timm), VMamba-T and
#             V2-T per scan backend, timm ConvNeXt-T and Swin-T, fp16 autocast, 800x1344x2 and
#             512x512x2, the issue's backbone targets                          -> benchmarks/
#   with --with-mmcv:
#   mmcv      tools/build_mmcv.sh with FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 (H100 / H200;
#             set TORCH_CUDA_ARCH_LIST for another GPU); measured 271 s with 16 jobs on an H200
#   toy       tools/make_toy_data.py (a few images)
#   train-*   tools/benchmark.py train --device cuda on toy data resized to 1333x800 (det) /
#             512 (seg), FP16: fixed-size synthetic batches vs the real loader (image sizes
#             vary), with the per-iteration diagnostics and step profiles: Mask R-CNN
#             MambaOut-T (cuDNN default / benchmark / off) and VMamba-V2-T (default), UperNet
#             VMamba-V2-T (default / benchmark)                                -> benchmarks/
# Estimated on one H200 (NOT yet timed there): stage 1 2-4 minutes, the rest of core 4-8
# minutes, train part (wheels, mmcv, toy, train-*) 7-9 minutes. A device command may run 10
# minutes at most: run --part stage1 first, then --part core / --part train --with-mmcv, or
# give --budget (seconds; steps that would start past it are skipped, a running one is cut
# at it).
#
# --part stage1: stage 1 only; --part core: stage1, wheels, env, tests, scan-*, backbone;
# --part train: wheels, then (with --with-mmcv) mmcv, toy, train-*; --part all (default):
# both. --parallel-mmcv (with --part all) builds mmcv in the background while the core
# steps run (MAX_JOBS=12 unless set: the GPU benchmarks keep 4 of the 16 cores; their
# records note nothing of it, summary.json does), so that everything may fit one 10-minute
# command (estimated 9-12 minutes instead of 11-17: give --budget).
#
# Output (DIR, default gpu_check_out/): summary.json (every step: command, status ok | failed
# | timeout | dry-run | skipped, seconds; and carry: the bytes of the tree the checks travel
# with, which must stay under 64 MiB), logs/<step>.log, stage1.json, env.json, tests.xml,
# benchmarks/*_cuda.json (named apart from the committed CPU records of results/benchmarks/,
# beside which they can be copied); --archive FILE.tgz also packs DIR into one file. Exit
# status 1 when a step failed.
#
# --dry-run (CPU machines, tested in CI): parses the arguments, makes the folder, prints and
# records every step's command and runs only the cheap ones (env, toy; with --part stage1,
# stage 1 on CPU at tiny sizes).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# the GPU image has python3 only; a CPU checkout usually runs python from its venv
PY=${PYTHON:-$(command -v python3 || echo python)}
# what the GPU image lacks, dependencies included (installed with --no-deps)
# rich (and its pygments, markdown-it-py, mdurl) because mmengine imports it; pytest for
# the tests step
BASE_REQS=(mmengine==0.10.7 addict yapf platformdirs termcolor rich pygments markdown-it-py
           mdurl pytest pluggy iniconfig)
MMCV_REQS=(mmdet==3.3.0 mmsegmentation==1.2.2 pycocotools 'faster-coco-eval>=1.6,<2' shapely
           terminaltables prettytable wcwidth ftfy)
GPU_PYTHON_VERSION=${GPU_PYTHON_VERSION:-3.12}
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)
DET_MAMBAOUT=det_configs/mask-rcnn_mambaout-t_fpn_8xb2-amp-1x_coco.py
DET_VMAMBA=det_configs/mask-rcnn_vmamba-v2-t_fpn_8xb2-amp-1x_coco.py
SEG_VMAMBA=seg_configs/upernet_vmamba-v2-t_8xb2-amp-160k_ade20k-512x512.py

usage() { sed -n '4,6p' "${BASH_SOURCE[0]}" | sed 's/^# *//'; }
CARRY_LIMIT=$((64 * 1024 * 1024))
die() { echo "gpu_check: $*" >&2; usage >&2; exit 2; }

OUT=gpu_check_out WHEELS='' WITH_MMCV=0 DRY=0 DOWNLOAD='' PART=all BUDGET=0 ARCHIVE=''
PARALLEL_MMCV=0
while (($#)); do
  case $1 in
    --out) [[ $# -ge 2 ]] || die "--out needs a folder"; OUT=$2; shift 2 ;;
    --wheels) [[ $# -ge 2 ]] || die "--wheels needs a folder"; WHEELS=$2; shift 2 ;;
    --download-wheels)
      [[ $# -ge 2 ]] || die "--download-wheels needs a folder"; DOWNLOAD=$2; shift 2 ;;
    --with-mmcv) WITH_MMCV=1; shift ;;
    --parallel-mmcv) PARALLEL_MMCV=1; shift ;;
    --part)
      [[ $# -ge 2 && $2 =~ ^(all|stage1|core|train)$ ]] ||
        die "--part needs all, stage1, core or train"
      PART=$2; shift 2 ;;
    --budget)
      [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || die "--budget needs a number of seconds"
      BUDGET=$2; shift 2 ;;
    --archive) [[ $# -ge 2 ]] || die "--archive needs a file name"; ARCHIVE=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
done

if [[ -n $DOWNLOAD ]]; then
  plats=()
  for p in "${PLATFORMS[@]}"; do plats+=(--platform "$p"); done
  "$PY" -m pip download -d "$DOWNLOAD" --no-deps --only-binary=:all: \
    --python-version "$GPU_PYTHON_VERSION" --implementation cp "${plats[@]}" \
    "${BASE_REQS[@]}" "${MMCV_REQS[@]}" &&
    exec "$PY" -m pip download -d "$DOWNLOAD" --no-deps --no-build-isolation \
      --no-binary :all: mmcv==2.1.0
fi
[[ -z $WHEELS || -d $WHEELS ]] || die "no wheel folder $WHEELS"
if ((PARALLEL_MMCV)) && [[ $WITH_MMCV == 0 || $PART != all ]]; then
  die "--parallel-mmcv needs --with-mmcv and --part all"
fi

mkdir -p "$OUT/logs" "$OUT/benchmarks" || exit 2
OUT=$(cd "$OUT" && pwd)
[[ -n $WHEELS ]] && WHEELS=$(cd "$WHEELS" && pwd)
cd "$REPO" || exit 2
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ((!DRY)); then
  unset TRITON_INTERPRET  # the compiled kernels, not the interpreter
  "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' ||
    die "no CUDA device visible to $PY (on a CPU machine use --dry-run)"
fi
# build_mmcv.sh fetches the mmcv sdist with pip: from the wheel folder, offline
[[ -n $WHEELS ]] && export PIP_NO_INDEX=1 PIP_FIND_LINKS=$WHEELS

STEPS="$OUT/steps.tsv"
: > "$STEPS"
# step NAME LIMIT_S CHEAP CMD...: run CMD (unless a dry run and not CHEAP), log, record;
# with --budget, the limit is cut to what is left and a step with under 10 s left is skipped
step() {
  local name=$1 limit=$2 cheap=$3 status start=$SECONDS rc
  shift 3
  if ((BUDGET)); then
    local left=$((BUDGET - SECONDS))
    if ((left < 10)); then skip "$name" "over the --budget of $BUDGET s"; return; fi
    ((limit > left)) && limit=$left
  fi
  echo "[gpu_check] $name: $*"
  if ((DRY && !cheap)); then
    status=dry-run
  else
    timeout "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
    rc=$?
    status=$([[ $rc == 0 ]] && echo ok || { [[ $rc == 124 ]] && echo timeout || echo failed; })
    echo "[gpu_check] $name: $status ($((SECONDS - start)) s)"
  fi
  local cmd="$*"
  cmd=${cmd//[$'\t\n']/ }  # one line per step in the table
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" "$cmd" >> "$STEPS"
}
skip() { printf '%s\tskipped\t0\t%s\n' "$1" "$2" >> "$STEPS"; echo "[gpu_check] $1: skipped ($2)"; }

# bg_start NAME LIMIT_S CMD...: start CMD in the background (not in a dry run), logged like
# a step; bg_wait NAME: wait for it and record it as a step (its seconds: start to end)
bg_start() {
  local name=$1 limit=$2
  shift 2
  BG_CMD="$*" BG_START=$SECONDS
  ((BUDGET && limit > BUDGET - SECONDS)) && limit=$((BUDGET - SECONDS))
  echo "[gpu_check] $name (background): $*"
  ((DRY)) && return
  ( timeout "$limit" "$@" > "$OUT/logs/$name.log" 2>&1; echo $? > "$OUT/logs/$name.rc" ) &
  BG_PID=$!
}
bg_wait() {
  local name=$1 status=dry-run rc
  if ((!DRY)); then
    wait "$BG_PID"
    rc=$(cat "$OUT/logs/$name.rc" 2>/dev/null || echo 1)
    status=$([[ $rc == 0 ]] && echo ok || { [[ $rc == 124 ]] && echo timeout || echo failed; })
    echo "[gpu_check] $name: $status ($((SECONDS - BG_START)) s, in the background)"
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - BG_START))" \
    "background: ${BG_CMD//[$'\t\n']/ }" >> "$STEPS"
}

BENCH=("$PY" tools/benchmark.py)
stage1_step() {
  # a dry run runs stage 1 (on CPU, tiny sizes) when it is the only part asked for
  local dry=() cheap=0
  ((DRY)) && dry=(--dry-run)
  [[ $PART == stage1 ]] && cheap=1
  step stage1 240 "$cheap" "$PY" tools/gpu_stage1.py --out "$OUT/stage1.json" "${dry[@]}"
}

core_steps() {
  local ENV_PY='import json, sys; from backbones.engine.env import collect_env; '\
'json.dump(collect_env(), open(sys.argv[1], "w"), indent=2, default=str)'
  step env 120 1 "$PY" -c "$ENV_PY" "$OUT/env.json"
  step tests 420 0 "$PY" -m pytest tests/test_selective_scan.py tests/test_scan_triton.py -q \
    -rs -p no:cacheprovider --junitxml="$OUT/tests.xml"
  # no step loop at these lengths (minutes per call): the backends are checked against it
  # by the tests above, and against the torch backend here
  local arch
  for arch in v0-tiny v2-tiny; do
    step "scan-$arch" 240 0 "${BENCH[@]}" scan --device cuda --arch "$arch" \
      --input 800x1344x2 512x512x2 --stages 1 2 3 4 --no-reference --fused --profile 0 \
      --repeats 5 --out "$OUT/benchmarks" --name "scan_${arch}_cuda"
  done
  step backbone 300 0 "${BENCH[@]}" backbone --device cuda --precision fp16 \
    --shapes 800x1344x2 512x512x2 --repeats 5 --out "$OUT/benchmarks" --name backbone_cuda
}

# train_step CONFIG TOY_SCALE SYNTHETIC_HxW CUDNN_MODES...: synthetic vs loader runs
train_step() {
  local cfg=$1 scale=$2 hw=$3 stem
  shift 3
  stem=$(basename "$cfg" .py)
  step "train-$stem" 240 0 "${BENCH[@]}" train "$cfg" --device cuda \
    --toy-data "$OUT/toy" --toy-scale "$scale" --synthetic "$hw" --cudnn "$@" \
    --iters 4 --warmup 1 --profile-steps --out "$OUT/benchmarks" --name "train_${stem}_cuda"
}

MMCV_CMD=(env FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" PYTHON="$PY")
((PARALLEL_MMCV)) && MMCV_CMD+=(MAX_JOBS="${MAX_JOBS:-12}")
MMCV_CMD+=(bash tools/build_mmcv.sh)

train_steps() {
  if ((PARALLEL_MMCV)); then
    bg_wait mmcv
  else
    step mmcv 900 0 "${MMCV_CMD[@]}"
  fi
  step toy 120 1 "$PY" tools/make_toy_data.py --out "$OUT/toy" --num-train 8 --num-val 4
  # toy images have random aspect ratios: resized to 1333x800 (keep_ratio) every batch is a
  # new shape, as on COCO; the synthetic batches are all 800x1333 (padded to 800x1344)
  train_step "$DET_MAMBAOUT" 800 800x1333 default benchmark off
  # the cuDNN question is settled on MambaOut-T (no scan); VMamba-V2-T adds the Triton scan
  train_step "$DET_VMAMBA" 800 800x1333 default
  train_step "$SEG_VMAMBA" 512 512x512 default benchmark
}

# what the checks travel with: the tracked tree (and the wheel folder), 64 MiB at most
carry_bytes() {
  local tree
  tree=$(git -C "$REPO" ls-files -z 2>/dev/null | (cd "$REPO" && xargs -0 -r stat -c %s 2>/dev/null) |
    awk '{s += $1} END {print s + 0}')
  ((tree > 0)) || tree=$(du -sb --exclude=.git --exclude=.venv "$REPO" | cut -f1)
  [[ -n $WHEELS ]] && tree=$((tree + $(du -sb "$WHEELS" | cut -f1)))
  echo "$tree"
}
CARRY=$(carry_bytes)
((CARRY <= CARRY_LIMIT)) ||
  echo "[gpu_check] warning: the tree and wheels are $CARRY bytes, over 64 MiB" >&2

reqs=("${BASE_REQS[@]}")
((WITH_MMCV)) && reqs+=("${MMCV_REQS[@]}")
[[ $PART == train ]] || stage1_step
if [[ $PART != stage1 ]]; then
  if [[ -n $WHEELS ]]; then
    step wheels 300 0 "$PY" -m pip install --no-index --no-deps --find-links "$WHEELS" \
      "${reqs[@]}"
  else
    skip wheels 'no --wheels: using the packages installed'
  fi
fi
((PARALLEL_MMCV)) && bg_start mmcv 900 "${MMCV_CMD[@]}"
[[ $PART == train || $PART == stage1 ]] || core_steps
if [[ $PART == all || $PART == train ]]; then
  if ((WITH_MMCV)); then
    train_steps
  else
    skip mmcv 'no --with-mmcv'
  fi
fi

"$PY" - "$STEPS" "$OUT/summary.json" "$DRY" "$PART" "$CARRY" "$CARRY_LIMIT" <<'PY'
import json, sys
rows = [line.rstrip('\n').split('\t', 3) for line in open(sys.argv[1])]
steps = [dict(name=n, status=s, seconds=int(t), command=c) for n, s, t, c in rows]
json.dump(dict(dry_run=sys.argv[3] == '1', part=sys.argv[4], steps=steps,
               carry=dict(bytes=int(sys.argv[5]), limit_bytes=int(sys.argv[6]))),
          open(sys.argv[2], 'w'), indent=2)
PY
rm -f "$STEPS"
if [[ -n $ARCHIVE ]]; then
  tar czf "$ARCHIVE" -C "$(dirname "$OUT")" "$(basename "$OUT")" &&
    echo "[gpu_check] archive $ARCHIVE"
fi
echo "[gpu_check] results in $OUT"
! grep -q '"status": "\(failed\|timeout\)"' "$OUT/summary.json"
