#!/usr/bin/env bash
# Build (or reuse) an mmcv 2.1.0 wheel with compiled ops for the torch in the active Python.
#
# mmcv 2.1.0 ships no wheel for torch 2.14, so we build its sdist. Two fixes are needed:
#   * torch 2.14 headers require C++20, mmcv's setup.py hard-codes -std=c++17 (c++14 for nvcc);
#   * the build must see the already-installed torch (--no-build-isolation), and setuptools<81
#     because mmcv's setup.py imports pkg_resources.
# The finished wheel is kept in a cache keyed by torch version, CUDA flavour and arch list, so a
# second set-up (or a fresh clone on the same machine) installs it in seconds.
#
# Environment: PYTHON (default: python), FORCE_CUDA=1 to build CUDA ops without a visible GPU,
# TORCH_CUDA_ARCH_LIST (honoured by torch's extension builder), MAX_JOBS,
# BENCH_WHEEL_CACHE (default: ${XDG_CACHE_HOME:-~/.cache}/mambaout-bench/wheels).
set -euo pipefail

MMCV_VERSION=2.1.0
PYTHON=${PYTHON:-python}

with_cuda=$("$PYTHON" -c "import os, torch; print(int(torch.cuda.is_available() or os.environ.get('FORCE_CUDA', '0') == '1'))")
key=$("$PYTHON" - <<'PY'
import os, sys, torch
cuda = torch.version.cuda if (torch.cuda.is_available() or os.environ.get('FORCE_CUDA') == '1') else 'cpu'
arch = os.environ.get('TORCH_CUDA_ARCH_LIST', 'auto').replace(' ', '_').replace(';', '_') if cuda != 'cpu' else ''
print(f"py{sys.version_info.major}{sys.version_info.minor}-torch{torch.__version__.split('+')[0]}-{'cu' + cuda if cuda != 'cpu' else 'cpu'}{('-' + arch) if arch else ''}")
PY
)
cache_root=${BENCH_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mambaout-bench/wheels}
cache_dir="$cache_root/mmcv-$MMCV_VERSION-$key"
mkdir -p "$cache_dir"

wheel=$(ls "$cache_dir"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [[ -z "$wheel" ]]; then
  echo "[build_mmcv] no cached wheel for $key: building mmcv $MMCV_VERSION from source (CUDA ops: $with_cuda)."
  echo "[build_mmcv] this takes ~15 min on 2 CPU cores; the wheel is cached in $cache_dir"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PYTHON" -m pip download --no-deps --no-build-isolation --no-binary mmcv "mmcv==$MMCV_VERSION" -d "$work" -q
  tar -xzf "$work"/mmcv-"$MMCV_VERSION".tar.gz -C "$work"
  src="$work/mmcv-$MMCV_VERSION"
  # Raise every C++ standard flag to C++20 (host compiler and nvcc alike).
  sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
  if grep -qE -- '-std=c\+\+1[47]' "$src/setup.py"; then
    echo "[build_mmcv] failed to patch the C++ standard in $src/setup.py" >&2; exit 1
  fi
  export MMCV_WITH_OPS=1
  export MAX_JOBS=${MAX_JOBS:-$(nproc)}
  "$PYTHON" -m pip wheel --no-build-isolation --no-deps -w "$work/dist" "$src"
  # Move into the cache only once complete, so an interrupted build never leaves a broken wheel.
  built=$(ls "$work"/dist/mmcv-"$MMCV_VERSION"-*.whl)
  cp "$built" "$cache_dir/.partial.whl"
  mv "$cache_dir/.partial.whl" "$cache_dir/$(basename "$built")"
  wheel="$cache_dir/$(basename "$built")"
fi
echo "[build_mmcv] installing $wheel"
"$PYTHON" -m pip install --no-deps --force-reinstall -q "$wheel"
