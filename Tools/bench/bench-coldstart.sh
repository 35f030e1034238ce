#!/usr/bin/env bash
# Cold start of envmount binaries side by side, page cache dropped before every run, alternating:
#   `BIN --version` (/usr/bin/time -f %e, wall ms, pgpgin delta of /proc/vmstat), then
#   `BIN mount` of a small directory store with the chunk cache warm (wall ms, ms from exec to
#   READY from the ENVMOUNT_TIMING phase marks, pgpgin). Each binary's envpublish is taken from
#   its own directory when there is one (else the first binary's directory).
#   Tools/bench/bench-coldstart.sh OLD_DIR/envmount NEW_DIR/envmount      (REPS, default 5)
# Root (drop_caches, FUSE). Works in ${BENCH_DIR:-/var/tmp/envmount-bench}/coldstart; unmounts
# what it mounted. pgpgin counts the whole machine's reads: run it on a quiet machine.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "bench-coldstart.sh: must run as root (drop_caches, FUSE)" >&2; exit 1; }
[ $# -ge 1 ] || { sed -n '2,9p' "$0"; exit 2; }
[ -x /usr/bin/time ] && command -v bc >/dev/null \
  || DEBIAN_FRONTEND=noninteractive apt-get install -y -q time bc >/dev/null
REPS=${REPS:-5}
W="${BENCH_DIR:-/var/tmp/envmount-bench}/coldstart"
rm -rf "$W"; mkdir -p "$W"
MOUNTED=()
cleanup() { for m in "${MOUNTED[@]}"; do fusermount3 -u -z "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
pgpgin() { awk '$1 == "pgpgin" { print $2 }' /proc/vmstat; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
ms() { echo "($2 - $1) / 1000000" | bc -l; }

echo "== BIN --version, page cache dropped"
for r in $(seq "$REPS"); do
    for bin in "$@"; do
        drop; a=$(pgpgin); s=$(date +%s%N)
        t=$( { /usr/bin/time -f %e "$bin" --version >/dev/null; } 2>&1 )
        e=$(date +%s%N); b=$(pgpgin)
        printf "%s %-44s %%e %ss  wall %6.1f ms  pgpgin %6d KiB\n" "$r" "$bin" "$t" "$(ms "$s" "$e")" "$((b - a))"
    done
done

echo "== BIN mount of a small directory store, chunk cache warm, page cache dropped"
python3 -m venv --without-pip "$W/venv"
SITE=$("$W/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$SITE/probe_pkg"; echo 'ANSWER = 42' > "$SITE/probe_pkg/__init__.py"
PUB="$(dirname "$1")/envpublish"
"$PUB" "$W/venv" "$W/store" --env probe --quiet
i=0
for bin in "$@"; do
    i=$((i + 1)); mkdir -p "$W/mnt$i"
    # Fill this binary's chunk cache once, untimed.
    "$bin" mount "$W/store" "$W/mnt$i" --env probe --cache-dir "$W/cache$i" >/dev/null 2>&1
    MOUNTED+=("$W/mnt$i")
    "$W/mnt$i/bin/python" -c 'import probe_pkg'
    "$bin" unmount "$W/mnt$i"
done
for r in $(seq "$REPS"); do
    i=0
    for bin in "$@"; do
        i=$((i + 1)); rm -f "$W/timing"
        drop; a=$(pgpgin); s=$(date +%s%N)
        ENVMOUNT_TIMING="$W/timing" "$bin" mount "$W/store" "$W/mnt$i" --env probe --cache-dir "$W/cache$i" >/dev/null 2>&1
        e=$(date +%s%N); b=$(pgpgin)
        ready=$(awk '/READY seen/ { print $2; exit }' "$W/timing")
        printf "%s %-44s mount %6.1f ms  exec->READY %6.1f ms  pgpgin %6d KiB\n" "$r" "$bin" "$(ms "$s" "$e")" \
            "$(echo "$ready - $s / 1000000" | bc -l)" "$((b - a))"
        "$bin" unmount "$W/mnt$i"
    done
done
