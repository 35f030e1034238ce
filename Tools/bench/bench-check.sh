#!/usr/bin/env bash
# The damage check a native mount runs before it serves a materialized tree, old against new,
# side by side in one run, on trees that bench-native.sh left (nothing in them is written: the
# checks find nothing moved, and the mounts use the tree and relocation layer already there):
#   1. envmount-checkbench: the check alone, alternating the path-per-file pass it replaced and
#      MaterializedTree.check() as built here; inode cache warm, then dropped before every check
#   2. mounts with ENVMOUNT_TIMING: "daemon: fs ready" -> "daemon: tree checked" (the tree's and
#      the relocation layer's check) and the whole `envmount mount`, OLD_BIN against this
#      checkout's release build, alternating; warm, then caches dropped before every mount
#
#   sudo OLD_BIN=/path/to/old/envmount Tools/bench/bench-check.sh
#   env: REPS (5), TREES ("small large"), SKIP_BUILD=1, OUT (results file, default
#   /var/tmp/check-bench/results-check.md)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
REPS=${REPS:-5}
TREES=${TREES:-small large}
WORK=/var/tmp/check-bench
OUT=${OUT:-$WORK/results-check.md}
[ "$(id -u)" = 0 ] || { echo "bench-check.sh: must run as root (drop_caches, FUSE, overlayfs)" >&2; exit 1; }
[ -n "${OLD_BIN:-}" ] && [ -x "$OLD_BIN" ] || { echo "bench-check.sh: OLD_BIN must name an envmount built before the walk" >&2; exit 2; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  (cd "$REPO" && swift build -c release --product envmount | tail -n 1 && swift build -c release --product envmount-checkbench | tail -n 1)
fi
NEW_BIN="$REPO/.build/release/envmount"
mkdir -p "$WORK"
MOUNTED=""
cleanup() { [ -n "$MOUNTED" ] && mountpoint -q "$MOUNTED" && "$NEW_BIN" unmount "$MOUNTED" >/dev/null 2>&1 || true; }
trap cleanup EXIT
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
all() { printf '%s\n' "$@" | xargs -n1 printf '%.0f\n' | paste -sd/; }
# ms between two labels of the last mount's marks; TIMING holds them
between() { awk -v a="$1" -v b="$2" '$0 ~ a {t0=$2} $0 ~ b {t1=$2} END {printf "%.1f", t1-t0}' "$TIMING"; }

{
echo "# tree check, old vs new ($(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "OLD_BIN=$OLD_BIN; new: $NEW_BIN ($(cd "$REPO" && git rev-parse --short HEAD))"
for t in $TREES; do
  case "$t" in
    small) W=/var/tmp/native-bench/native ;;
    large) W=/var/tmp/envmount-bench/native-large ;;
    *) echo "unknown tree $t" >&2; exit 2 ;;
  esac
  [ -d "$W/cache/v1/trees" ] || { echo "no tree in $W (run VENV=$t Tools/bench/bench-native.sh)"; continue; }
  echo
  echo "## $t ($W)"
  echo
  echo '```'
  "$REPO/.build/release/envmount-checkbench" "$W/cache" "$REPS" --reloc "$W/mnt"
  "$REPO/.build/release/envmount-checkbench" "$W/cache" "$REPS" --cold --reloc "$W/mnt"
  echo '```'
  echo
  # The mount point bench-native.sh used: its relocation layer is there already.
  MNT="$W/mnt"
  mountpoint -q "$MNT" && { echo "$MNT is mounted: skipped"; continue; }
  echo "| mount ($REPS each, alternating) | old: tree checked (ms) | new: tree checked (ms) | old: whole mount (ms) | new: whole mount (ms) |"
  echo "| --- | --- | --- | --- | --- |"
  for state in warm cold; do
    declare -a oc=() nc=() ot=() nt=()
    for _ in $(seq "$REPS"); do
      for side in old new; do
        bin=$OLD_BIN; [ $side = new ] && bin=$NEW_BIN
        TIMING=$WORK/timing.$$; : > "$TIMING"
        [ $state = cold ] && drop
        MOUNTED=$MNT
        ENVMOUNT_TIMING=$TIMING "$bin" mount "$W/store" "$MNT" --env bench --cache-dir "$W/cache" >> "$WORK/bench.log" 2>&1
        "$NEW_BIN" status "$MNT" --json 2>/dev/null | grep -q '"nativeTree"' || echo "warning: $side mount of $t not native" >&2
        "$bin" unmount "$MNT" >> "$WORK/bench.log" 2>&1; MOUNTED=""
        sleep 0.3
        c=$(between 'daemon: fs ready' 'daemon: tree checked'); w=$(between 'mount: start' 'mount: READY seen')
        if [ $side = old ]; then oc+=("$c"); ot+=("$w"); else nc+=("$c"); nt+=("$w"); fi
      done
    done
    echo "| $state | $(med "${oc[@]}") ($(all "${oc[@]}")) | $(med "${nc[@]}") ($(all "${nc[@]}")) | $(med "${ot[@]}") ($(all "${ot[@]}")) | $(med "${nt[@]}") ($(all "${nt[@]}")) |"
  done
done
} | tee "$OUT"
