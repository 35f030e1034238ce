#!/usr/bin/env bash
# Build the benchmark venvs, idempotently, under ${BENCH_DIR:-/var/tmp/envmount-bench}.
#   venv-small : numpy pandas scipy scikit-learn   (~370 MB, ~11k files)
#   venv-torch : torch, default PyPI wheel with the nvidia CUDA wheels (~6 GB)   [--large]
# A venv is (re)built only if its completion stamp ($BENCH_DIR/.NAME.complete, kept outside
# the venv so it is not published) is missing, so a run that was
# interrupted half-way is redone from scratch instead of being trusted.
set -euo pipefail

usage() { echo "usage: $0 [--large] [--force]" >&2; exit 2; }
LARGE=0 FORCE=0
for a in "$@"; do
  case "$a" in
    --large) LARGE=1 ;;
    --force) FORCE=1 ;;
    -h|--help) usage ;;
    *) usage ;;
  esac
done

BENCH_DIR=${BENCH_DIR:-/var/tmp/envmount-bench}
mkdir -p "$BENCH_DIR"
export PIP_CACHE_DIR="$BENCH_DIR/pip-cache"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Pick an interpreter that can create a venv with pip in it (venv + ensurepip).
# Debian's python3 lacks ensurepip unless python3-venv is installed; pyenv's has it.
pick_python() {
  local c
  for c in "$(command -v python3 || true)" /usr/bin/python3; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    if "$c" -c 'import venv, ensurepip' >/dev/null 2>&1; then
      # resolve pyenv shims to the real interpreter so the venv's `home` is stable
      "$c" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  return 1
}
PY=$(pick_python) || { echo "no python3 with venv+ensurepip found (apt-get install python3-venv)" >&2; exit 1; }
echo "python: $PY ($("$PY" --version 2>&1))"

report() {
  local d=$1
  local bytes files
  bytes=$(du -sb "$d" | cut -f1)
  files=$(find "$d" -type f | wc -l)
  printf '%-12s %12s bytes (%s MB)  %7s files  %7s entries\n' \
    "$(basename "$d")" "$bytes" "$((bytes / 1000000))" "$files" "$(find "$d" | wc -l)"
}

build() {
  local name=$1; shift
  local dir="$BENCH_DIR/$name" stamp="$BENCH_DIR/.$name.complete"
  if [ "$FORCE" = 0 ] && [ -f "$stamp" ]; then
    echo "$name: already built ($dir)"
    return 0
  fi
  echo "$name: building in $dir (pip install $*)"
  rm -rf "$dir" "$stamp"
  # Build at the final path: a venv hard-codes its own path in bin/ scripts and pyvenv.cfg,
  # so it cannot be built elsewhere and renamed. The stamp marks completion.
  "$PY" -m venv "$dir"
  "$dir/bin/python" -m pip install --upgrade --quiet pip
  if [ "${PYPI_ONLY:-0}" = 1 ]; then
    # Ignore find-links from pip.conf / PIP_FIND_LINKS (this machine's /opt/wheels holds a
    # +cpu torch that pip would otherwise pick): the default PyPI wheel is what users get.
    env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null \
      "$dir/bin/python" -m pip install --quiet --index-url https://pypi.org/simple "$@"
  else
    "$dir/bin/python" -m pip install --quiet "$@"
  fi
  # Sanity: the packages import.
  "$dir/bin/python" -c "$IMPORT_CHECK"
  "$dir/bin/python" -m pip freeze > "$BENCH_DIR/$name.freeze.txt"
  date -u +%FT%TZ > "$stamp"
  echo "$name: done"
}

IMPORT_CHECK='import numpy, pandas, scipy.linalg, sklearn.linear_model' \
  build venv-small numpy pandas scipy scikit-learn
if [ "$LARGE" = 1 ]; then
  IMPORT_CHECK='import torch' PYPI_ONLY=1 build venv-torch torch
  if grep -q '+cpu' "$BENCH_DIR/venv-torch.freeze.txt" || ! grep -qi '^nvidia-' "$BENCH_DIR/venv-torch.freeze.txt"; then
    echo "WARNING: venv-torch has a CPU-only torch or no nvidia-* wheels:" >&2
    grep -iE '^(torch|nvidia-)' "$BENCH_DIR/venv-torch.freeze.txt" >&2 || true
  fi
fi

echo
echo "== sizes (du -sb, files) =="
report "$BENCH_DIR/venv-small"
if [ "$LARGE" = 1 ]; then report "$BENCH_DIR/venv-torch"; fi
echo "pip cache ($PIP_CACHE_DIR): $(du -sh "$PIP_CACHE_DIR" 2>/dev/null | cut -f1 || echo none)"
