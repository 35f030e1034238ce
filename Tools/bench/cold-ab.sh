#!/usr/bin/env bash
# Two envmount builds side by side on the WAN link: cold plain mounts (which prefetch the
# publish-time profile `default`) + the small workload, alternating A, B, A, B, … in one run.
#
#   sudo A=/path/to/old/bin B=.build/release Tools/bench/cold-ab.sh [mount options…]
#   sudo A=.build/release B=.build/release B_OPTS='--prefetch bench' Tools/bench/cold-ab.sh
#   sudo A=.build/release B=.build/release B_OPTS=--no-front-overlay WARM=1 Tools/bench/cold-ab.sh --no-native
#   env: A_OPTS, B_OPTS (more mount options for one side), BENCH_DIR (default /var/tmp/envmount-bench; needs $BENCH_DIR/wan/www/small/store as
#        bench-wan.sh prepares it), REPS=3, DELAY_MS=20, RATE=1gbit, NGINX_PORT=18280, PROXY_PORT=18281,
#        WARM=1: the warm-cache row instead: each side's cache is filled once (`envmount warm --all`)
#        and kept, every run a fresh mount with the page cache dropped (pass --no-native, or the
#        second mount is served from a materialized tree)
#
# One line per run, from `envmount status --json` right after the workload: total and mount
# command seconds, when the prefetch job finished (s after the mount command started; older
# builds without `finishedAt`: job seconds + mount time), reads that waited for chunk bytes
# (count, seconds in all), store requests and MB, daemon CPU seconds, the workload's CPU seconds
# (user+system, /usr/bin/time), FUSE requests (all, then by operation), load.
# The counts are the evidence on a loaded machine; the times move with the load.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/envmount-bench}
REPS=${REPS:-3}; DELAY_MS=${DELAY_MS:-20}; RATE=${RATE:-1gbit}
NGINX_PORT=${NGINX_PORT:-18280}; PROXY_PORT=${PROXY_PORT:-18281}
: "${A:?A=bin dir of build A}" "${B:?B=bin dir of build B}"
W="import numpy, pandas, scipy.linalg, sklearn.linear_model"
D="$BENCH_DIR/cold-ab"; WWW="$BENCH_DIR/wan/www"
[ "$(id -u)" = 0 ] || { echo "cold-ab.sh: must run as root (drop_caches, FUSE, tc)" >&2; exit 1; }
[ -d "$WWW/small/store" ] || { echo "cold-ab.sh: no $WWW/small/store (run bench-wan.sh once)" >&2; exit 1; }
[ -x /usr/bin/time ] && command -v jq bc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q time jq bc >/dev/null
mkdir -p "$D"
PROXY_PID=; WAN_UP=0; MNT=
cleanup() {
  set +e
  # a plain root mount is an overlay in front of FUSE: unmount both through envmount
  [ -n "$MNT" ] && awk -v m="$MNT" '$2 == m {f = 1} END {exit !f}' /proc/self/mounts \
    && { "$B/envmount" unmount "$MNT" || umount -l "$MNT"; }
  [ "$WAN_UP" = 1 ] && "$HERE/wan.sh" down >/dev/null
  [ -n "$PROXY_PID" ] && kill -TERM "$PROXY_PID" 2>/dev/null
  "$REPO/Tools/servers/nginx.sh" stop "$D/nginx" >/dev/null 2>&1
  rm -rf "$D"/c-*
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$REPO/Tools/servers/nginx.sh" start "$WWW" "$NGINX_PORT" "$D/nginx" > "$D/nginx.out"
python3 "$HERE/delayproxy.py" "$PROXY_PORT" "$NGINX_PORT" --delay-ms "$DELAY_MS" > "$D/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && break; sleep 0.1; done
"$HERE/wan.sh" up "$PROXY_PORT" "$RATE" >/dev/null; WAN_UP=1
URL="http://127.0.0.1:$PROXY_PORT/small/store"

one() { # LABEL BINDIR [mount options]
  local label=$1 bin=$2 t0 t1 t2 j jf pd; shift 2
  MNT="$D/m-$label"; local cache="$D/c-$label"
  mkdir -p "$MNT"; [ "${WARM:-0}" = 1 ] || rm -rf "$cache"; mkdir -p "$cache"
  sync; echo 3 > /proc/sys/vm/drop_caches
  t0=$(date +%s.%N)
  "$bin/envmount" mount "$URL" "$MNT" --env bench --cache-dir "$cache" "$@" > "$D/mount.out" 2>&1 \
    || { cat "$D/mount.out" >&2; return 1; }
  t1=$(date +%s.%N)
  # the workload's own CPU (user+system: its share of the kernel's FUSE and overlay work)
  /usr/bin/time -f '%U %S' -o "$D/w.time" "$MNT/bin/python" -c "$W"
  t2=$(date +%s.%N)
  j=$("$bin/envmount" status "$MNT" --json); jf=$j
  for _ in $(seq 150); do
    [ "$(jq '[.[0].jobs[] | select(.finished != true)] | length' <<<"$jf")" = 0 ] && break
    sleep 0.2; jf=$("$bin/envmount" status "$MNT" --json)
  done
  "$bin/envmount" unmount "$MNT" > /dev/null
  pd=$(jq -r --arg t0 "$t0" --arg tm "$(echo "$t1 - $t0" | bc)" '.[0].jobs | map(select(.label|startswith("profile"))) | first
        | if . == null then "-" elif .finishedAt then ((.finishedAt - ($t0|tonumber)) * 100 | round / 100)
          else ((.seconds + ($tm|tonumber)) * 100 | round / 100) end' <<<"$jf")
  jq -r --arg L "$label" --arg tot "$(echo "$t2 - $t0" | bc)" --arg tm "$(echo "$t1 - $t0" | bc)" --arg pd "$pd" \
        --arg load "$(cut -d' ' -f1 /proc/loadavg)" --arg wcpu "$(awk '{printf "%.2f", $1 + $2}' "$D/w.time")" '.[0] | "\($L): total \($tot|tonumber*100|round/100) s, mount \($tm|tonumber*100|round/100) s, prefetch done \($pd) s, waits \(.demandWaits // "?") / \((.demandWaitSeconds // 0)*100|round/100) s, \(.requests) requests \(.bytesFetched/1e6|round) MB, daemon CPU \(((.cpuUserSeconds // 0)+(.cpuSystemSeconds // 0))*100|round/100) s, workload CPU \($wcpu) s, FUSE requests \(.fuseOps // {} | add) (\(.fuseOps // {} | to_entries | sort_by(-.value) | map("\(.key) \(.value)") | join(" "))), load \($load)"' <<<"$j"
}

fill() { # LABEL BINDIR [mount options]: WARM=1, the side's cache holds every chunk
  local label=$1 bin=$2; shift 2
  MNT="$D/m-$label"; mkdir -p "$MNT"; rm -rf "$D/c-$label"; mkdir -p "$D/c-$label"
  "$bin/envmount" mount "$URL" "$MNT" --env bench --cache-dir "$D/c-$label" "$@" > "$D/mount.out" 2>&1 \
    || { cat "$D/mount.out" >&2; return 1; }
  "$bin/envmount" warm "$MNT" --all > /dev/null
  "$bin/envmount" unmount "$MNT" > /dev/null
}

echo "cold-ab: A=$A ${A_OPTS:-} B=$B ${B_OPTS:-}, $REPS reps, options: $*${WARM:+, WARM=$WARM}; load $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086
if [ "${WARM:-0}" = 1 ]; then fill A "$A" ${A_OPTS:-} "$@"; fill B "$B" ${B_OPTS:-} "$@"; fi
# shellcheck disable=SC2086
for r in $(seq "$REPS"); do one A "$A" ${A_OPTS:-} "$@"; one B "$B" ${B_OPTS:-} "$@"; done
