#!/usr/bin/env bash
# What checking cached bytes costs: the warm-cache imports (bench-local.sh row c, "warm chunk
# cache, fresh mount") with two builds of envmount side by side in one run, alternating, page
# cache dropped before every timed run. Both mount the same store with the same filled cache.
#
#   OLD_BIN=/path/to/old/release NEW_BIN=.build/release REPS=7 Tools/bench/bench-cache-verify.sh
#
# OLD_BIN / NEW_BIN: directories holding envmount (and envpublish in NEW_BIN). The store and
# cache are written by NEW_BIN; the cache layout must be one both read. Prints one line per run
# and a summary (median, and new/old ratio); also the native import for scale.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "bench-cache-verify.sh: must run as root (drop_caches, FUSE)" >&2; exit 1; }
: "${OLD_BIN:?directory of the old envmount}" "${NEW_BIN:?directory of the new envmount}"
OLD_BIN=$(cd "$OLD_BIN" && pwd); NEW_BIN=$(cd "$NEW_BIN" && pwd)
REPS=${REPS:-7}
BENCH_DIR=${BENCH_DIR:-/var/tmp/envmount-bench}
[ -f "$BENCH_DIR/.venv-small.complete" ] || BENCH_DIR="$BENCH_DIR" "$HERE/make-venvs.sh"
SRC="$BENCH_DIR/venv-small"
IMPORT="import numpy, pandas, scipy.linalg, sklearn.linear_model"
W=$(mktemp -d "$BENCH_DIR/verify.XXXXXX")
MNT="$W/mnt"; CACHE="$W/cache"; STORE="$W/store"
mkdir -p "$MNT"
cleanup() {
  if awk -v m="$MNT" '$2 == m {f = 1} END {exit !f}' /proc/self/mounts; then "$NEW_BIN/envmount" unmount "$MNT" >/dev/null 2>&1 || fusermount3 -u -z "$MNT"; fi
  rm -rf "$W"
}
trap cleanup EXIT
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

"$NEW_BIN/envpublish" "$SRC" "$STORE" --env small --quiet
# Fill the cache: one cold import, then read every file so every chunk is cached.
"$NEW_BIN/envmount" mount "$STORE" "$MNT" --env small --cache-dir "$CACHE" --log-file "$W/fill.log" >/dev/null
"$MNT/bin/python" -c "$IMPORT"
find "$MNT" -type f -exec cat {} + > /dev/null
"$NEW_BIN/envmount" unmount "$MNT" >/dev/null

run_one() { # BIN -> seconds of the import on a fresh mount, page cache dropped
  local bin=$1 t0 t1
  drop
  "$bin/envmount" mount "$STORE" "$MNT" --env small --cache-dir "$CACHE" --log-file "$W/run.log" >/dev/null
  t0=$(now); "$MNT/bin/python" -c "$IMPORT"; t1=$(now)
  "$bin/envmount" unmount "$MNT" >/dev/null
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}'
}
old=(); new=(); nat=()
for r in $(seq "$REPS"); do
  # Alternate which goes first so drift on a shared machine falls on both.
  if [ $((r % 2)) = 1 ]; then o=$(run_one "$OLD_BIN"); n=$(run_one "$NEW_BIN"); else n=$(run_one "$NEW_BIN"); o=$(run_one "$OLD_BIN"); fi
  drop; t0=$(now); "$SRC/bin/python" -c "$IMPORT"; t1=$(now)
  v=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
  old+=("$o"); new+=("$n"); nat+=("$v")
  echo "run $r: old $o s, new $n s, native $v s"
done
mo=$(printf '%s\n' "${old[@]}" | median); mn=$(printf '%s\n' "${new[@]}" | median); mv=$(printf '%s\n' "${nat[@]}" | median)
echo "warm-cache import, fresh mount, page cache dropped, median of $REPS:"
echo "  old ($OLD_BIN): $mo s ($(IFS=/; echo "${old[*]}"))"
echo "  new ($NEW_BIN): $mn s ($(IFS=/; echo "${new[*]}"))"
echo "  native: $mv s ($(IFS=/; echo "${nat[*]}"))"
awk -v a="$mn" -v b="$mo" 'BEGIN{printf "  new/old = %.3f\n", a/b}'
grep -h "verified\|damaged" "$W/run.log" | tail -n 2 || true
