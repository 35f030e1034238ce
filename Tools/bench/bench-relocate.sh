#!/usr/bin/env bash
# What relocation costs, side by side in one run: the same store mounted at a path other than
# the source path, once relocated (the default) and once with --no-relocate, alternating.
# Prints a markdown table and writes it to $BENCH_DIR/results-relocate.md.
#
#   sudo Tools/bench/bench-relocate.sh       # REPS=5 BENCH_DIR=/var/tmp/envmount-bench
#   env: REPO, SKIP_BUILD=1, REPS=N, BENCH_DIR, PREFIX_ENV (a Python installation published
#        directly as the large tree, default ~/.pyenv/versions/3.11.7)
#
# a. python -c "import numpy, pandas, scipy.linalg, sklearn.linear_model" from venv-small:
#    cold (fresh mount, empty chunk cache) and warm (remount, filled cache), page cache
#    dropped before every run, relocated vs --no-relocate
# b. `envmount mount` until the mount answers, for venv-small and for PREFIX_ENV published
#    directly (a prefix environment: 50k files), relocated vs --no-relocate; and that
#    PREFIX_ENV's python runs from the relocated mount with sys.prefix = the mount, with
#    PREFIX_ENV itself hidden under a tmpfs in a private mount namespace
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=${REPO:-$(cd "$HERE/../.." && pwd)}
export BENCH_DIR=${BENCH_DIR:-/var/tmp/envmount-bench}
REPS=${REPS:-5}
PREFIX_ENV=${PREFIX_ENV:-$HOME/.pyenv/versions/3.11.7}
IMPORT='import numpy, pandas, scipy.linalg, sklearn.linear_model'
W="$BENCH_DIR/relocate"
RESULTS="$BENCH_DIR/results-relocate.md"
LOG="$W/bench.log"
[ "$(id -u)" = 0 ] || { echo "bench-relocate.sh: must run as root (drop_caches, FUSE)" >&2; exit 1; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  (cd "$REPO" && swift build -c release 2>&1 | tail -n 2)
fi
BIN="$REPO/.build/release"
[ -f "$BENCH_DIR/.venv-small.complete" ] || "$HERE/make-venvs.sh"
SRC="$BENCH_DIR/venv-small"

rm -rf "$W"; mkdir -p "$W"
MOUNTS=()
cleanup() {
  local m
  for m in "${MOUNTS[@]}"; do "$BIN/envmount" unmount "$m" >/dev/null 2>&1 || fusermount3 -u -z "$m" 2>/dev/null || true; done
}
trap cleanup EXIT

now() { date +%s.%N; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
summ() { local m; m=$(printf '%s\n' "$@" | median); printf '%.3f (%s)' "$m" "$(printf '%s\n' "$@" | xargs -n1 printf '%.3f\n' | paste -sd/)"; }
med() { printf '%s\n' "$@" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ printf "%.3f", a/b }'; }
secs() { local t0 t1; t0=$(now); "$@" >> "$LOG" 2>&1; t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}'; }

# mount STORE ENV MNT CACHE [--no-relocate]: prints the seconds `envmount mount` took
mount_env() {
  local store=$1 env=$2 mnt=$3 cache=$4; shift 4
  mkdir -p "$mnt" "$cache"
  MOUNTS+=("$mnt")
  secs "$BIN/envmount" mount "$store" "$mnt" --env "$env" --cache-dir "$cache" "$@"
}
umount_env() { "$BIN/envmount" unmount "$1" >> "$LOG" 2>&1; }

echo "== publish $SRC and $PREFIX_ENV"
STORE="$W/store"
"$BIN/envpublish" "$SRC" "$STORE" --env small -q >> "$LOG"
"$BIN/envpublish" "$PREFIX_ENV" "$STORE" --env prefix -q >> "$LOG"

MR="$W/mnt-relocated/venv-small-elsewhere" MP="$W/mnt-as-published/venv-small-elsewhere"
declare -a cr cp wr wp mr mp
for r in $(seq 1 "$REPS"); do
  for side in r p; do
    if [ $side = r ]; then mnt=$MR flag=(); else mnt=$MP flag=(--no-relocate); fi
    cache="$W/cache-$side-$r"
    drop
    t=$(mount_env "$STORE" small "$mnt" "$cache" "${flag[@]}")
    c=$(secs "$mnt/bin/python" -c "$IMPORT")
    umount_env "$mnt"; drop
    t2=$(mount_env "$STORE" small "$mnt" "$cache" "${flag[@]}")
    w=$(secs "$mnt/bin/python" -c "$IMPORT")
    umount_env "$mnt"
    if [ $side = r ]; then cr+=("$c"); wr+=("$w"); mr+=("$t" "$t2"); else cp+=("$c"); wp+=("$w"); mp+=("$t" "$t2"); fi
  done
done

PR="$W/mnt-prefix-relocated/python-elsewhere" PP="$W/mnt-prefix-as-published/python-elsewhere"
declare -a lr lp
for r in $(seq 1 "$REPS"); do
  lr+=("$(mount_env "$STORE" prefix "$PR" "$W/cache-prefix")"); [ $r = 1 ] && PYOUT=$(unshare -m --propagation private sh -c "mount -t tmpfs none '$PREFIX_ENV' && '$PR/bin/python3' -c 'import sys, json, ssl; print(sys.prefix)'" 2>&1); umount_env "$PR"
  lp+=("$(mount_env "$STORE" prefix "$PP" "$W/cache-prefix" --no-relocate)"); umount_env "$PP"
done
ENTRIES=$("$BIN/envmount" mount "$STORE" "$PR" --env prefix --cache-dir "$W/cache-prefix" 2>&1 | tee -a "$LOG" | grep -oE '[0-9]+ entries' | head -1); umount_env "$PR"

{
  echo "# relocation cost ($(date -u +%F), $(nproc) cores, REPS=$REPS)"
  echo
  echo "| | relocated | --no-relocate | ratio |"
  echo "| --- | --- | --- | --- |"
  echo "| import, cold (fresh mount, empty cache), s | $(summ "${cr[@]}") | $(summ "${cp[@]}") | $(ratio "$(med "${cr[@]}")" "$(med "${cp[@]}")") |"
  echo "| import, warm chunk cache (remount), s | $(summ "${wr[@]}") | $(summ "${wp[@]}") | $(ratio "$(med "${wr[@]}")" "$(med "${wp[@]}")") |"
  echo "| \`envmount mount\` until it answers, venv-small, s | $(summ "${mr[@]}") | $(summ "${mp[@]}") | $(ratio "$(med "${mr[@]}")" "$(med "${mp[@]}")") |"
  echo "| \`envmount mount\` until it answers, $PREFIX_ENV ($ENTRIES), s | $(summ "${lr[@]}") | $(summ "${lp[@]}") | $(ratio "$(med "${lr[@]}")" "$(med "${lp[@]}")") |"
  echo
  echo "prefix environment's python at $PR: sys.prefix = $PYOUT"
  grep -E '^(envmount: )?relocated from' "$LOG" | sort | uniq -c | sed 's/^/    /'
} | tee "$RESULTS"
