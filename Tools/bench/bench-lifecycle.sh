#!/bin/bash
# Lifecycle figures, side by side in one run:
#  1. what excluding *.pyc costs imports on a read-only mount: the same venv published whole
#     and with --exclude '*.pyc' --exclude __pycache__, each mounted fresh with a warm chunk
#     cache, the workload timed alternately;
#  2. envmount ls / diff and envpublish gc on a store with REVISIONS revisions of that venv
#     (one small file changed per revision).
# Usage: Tools/bench/bench-lifecycle.sh VENV [WORKDIR]   (BIN=dir of envmount/envpublish)
set -euo pipefail
VENV=$(realpath "$1"); WORK=${2:-/tmp/envmount-bench-lifecycle}
BIN=${BIN:-$(dirname "$0")/../../.build/release}
REVISIONS=${REVISIONS:-20}; RUNS=${RUNS:-3}
WORKLOAD=${WORKLOAD:-import numpy, pandas, scipy.linalg, sklearn.linear_model}
rm -rf "$WORK"; mkdir -p "$WORK"
cleanup() { for m in "$WORK"/mnt-*; do mountpoint -q "$m" && "$BIN/envmount" unmount "$m" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

echo "== pyc: publish"
"$BIN/envpublish" "$VENV" "$WORK/store-full" --env v -q
"$BIN/envpublish" "$VENV" "$WORK/store-nopyc" --env v --exclude '*.pyc' --exclude __pycache__ | grep -E 'excluded|revision'
du -sb "$WORK/store-full" "$WORK/store-nopyc"
"$VENV/bin/python" -m pip freeze > "$WORK/pip-freeze.txt" 2>/dev/null && {
  "$BIN/envmount" freeze "$WORK/store-full" --env v > "$WORK/envmount-freeze.txt"
  if cmp -s "$WORK/pip-freeze.txt" "$WORK/envmount-freeze.txt"; then echo "freeze == pip freeze ($(wc -l < "$WORK/pip-freeze.txt") lines)"
  else echo "freeze differs from pip freeze:"; diff "$WORK/pip-freeze.txt" "$WORK/envmount-freeze.txt" || true; fi
}
for kind in full nopyc; do   # fill each chunk cache once
  mkdir -p "$WORK/mnt-$kind"
  "$BIN/envmount" mount "$WORK/store-$kind" "$WORK/mnt-$kind" --env v --cache-dir "$WORK/cache-$kind" >/dev/null
  "$WORK/mnt-$kind/bin/python" -c "$WORKLOAD"
  "$BIN/envmount" unmount "$WORK/mnt-$kind" >/dev/null
done
for run in $(seq "$RUNS"); do
  for kind in full nopyc; do
    "$BIN/envmount" mount "$WORK/store-$kind" "$WORK/mnt-$kind" --env v --cache-dir "$WORK/cache-$kind" >/dev/null
    t0=$(now); "$WORK/mnt-$kind/bin/python" -c "$WORKLOAD"; t1=$(now)
    "$WORK/mnt-$kind/bin/python" -c "$WORKLOAD"; t2=$(now)
    echo "run $run $kind: fresh mount $(secs "$t0" "$t1") s, second run $(secs "$t1" "$t2") s"
    "$BIN/envmount" unmount "$WORK/mnt-$kind" >/dev/null
  done
done

echo "== $REVISIONS revisions"
cp -a "$VENV" "$WORK/src"
S="$WORK/store-revs"
t0=$(now)
for i in $(seq "$REVISIONS"); do
  echo "revision $i" > "$WORK/src/lib/REVISION_MARKER_$((i % 3))"
  head -c $((i * 300000)) /dev/urandom > "$WORK/src/lib/blob.bin"
  "$BIN/envpublish" "$WORK/src" "$S" --env v -q >/dev/null
done
echo "published $REVISIONS revisions in $(secs "$t0" "$(now)") s"
t0=$(now); "$BIN/envmount" ls "$S" > "$WORK/ls.txt"; echo "envmount ls: $(secs "$t0" "$(now)") s"; tail -1 "$WORK/ls.txt"
t0=$(now); "$BIN/envmount" ls "$S" --json > /dev/null; echo "envmount ls --json: $(secs "$t0" "$(now)") s"
t0=$(now); "$BIN/envmount" diff "$S" --env v > "$WORK/diff.txt"; echo "envmount diff (two latest): $(secs "$t0" "$(now)") s"; tail -1 "$WORK/diff.txt"
t0=$(now); "$BIN/envmount" diff "$S" --env v 1 "$REVISIONS" > /dev/null; echo "envmount diff 1 $REVISIONS: $(secs "$t0" "$(now)") s"
t0=$(now); "$BIN/envpublish" gc "$S" --keep-last 5 --dry-run | tail -2; echo "gc --dry-run: $(secs "$t0" "$(now)") s"
t0=$(now); "$BIN/envpublish" gc "$S" --keep-last 5 --grace 0s | tail -2; echo "gc --keep-last 5: $(secs "$t0" "$(now)") s"
