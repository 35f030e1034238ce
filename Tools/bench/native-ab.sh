#!/usr/bin/env bash
# Two sets of mount options (or two builds) side by side on a materialized tree: mount + the
# workload, alternating A, B, A, B, … in one run, on the tree bench-native.sh left behind.
#
#   sudo B_OPTS=--no-prefetch Tools/bench/native-ab.sh                # the profile read-ahead, page cache dropped
#   sudo DROP=0 B_OPTS=--no-prefetch Tools/bench/native-ab.sh         # the same, page cache kept (a second job)
#   sudo VENV=large B_OPTS=--no-prefetch Tools/bench/native-ab.sh
#   sudo A=source DROP=0 Tools/bench/native-ab.sh                     # the source venv (no mount) against a native mount
#   env: A, B (bin dirs, or `source`; default the release build bench-native.sh measures), A_OPTS, B_OPTS,
#        PAIRS=8, DROP=1 (drop the page cache before every run), VENV=small|large, BENCH_DIR
#        (as bench-native.sh: small in /var/tmp/native-bench, large in /var/tmp/envmount-bench)
#
# Prints each pair (ms), both medians, how many pairs A was faster in, and the median of the pairs' B ÷ A. This VM's disk and
# CPU move by ±20 % between minutes; pairs taken seconds apart are what compares.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VENV=${VENV:-small}
case "$VENV" in
  small) W='import numpy, pandas, scipy.linalg, sklearn.linear_model'; BENCH_DIR=${BENCH_DIR:-/var/tmp/native-bench}; DIR=native
         SRC=$BENCH_DIR/bench-src/venv-small ;;
  large) W='import torch'; BENCH_DIR=${BENCH_DIR:-/var/tmp/envmount-bench}; DIR=native-large; SRC=$BENCH_DIR/venv-torch ;;
  *) echo "native-ab.sh: VENV must be small or large" >&2; exit 2 ;;
esac
A=${A:-$REPO/.build-release/release}; B=${B:-$REPO/.build-release/release}
PAIRS=${PAIRS:-8}; DROP=${DROP:-1}
D="$BENCH_DIR/$DIR"; MNT="$D/mnt"
[ "$(id -u)" = 0 ] || { echo "native-ab.sh: must run as root (drop_caches, overlayfs)" >&2; exit 1; }
[ -d "$D/store" ] && [ -d "$D/cache/v1/trees" ] || { echo "native-ab.sh: no materialized tree in $D (run bench-native.sh with VENV=$VENV once)" >&2; exit 1; }
cleanup() { mountpoint -q "$MNT" && "$A/envmount" unmount "$MNT" >/dev/null 2>&1 || true; }
trap cleanup EXIT
run() { # bin (or `source`: the source venv's python, no mount), options…
  local bin=$1; shift
  [ "$DROP" = 1 ] && { sync; echo 3 > /proc/sys/vm/drop_caches; }
  local t0 t1; t0=$(date +%s%N)
  if [ "$bin" = source ]; then
    "$SRC/bin/python" -c "$W" >/dev/null 2>&1
    t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); return
  fi
  # shellcheck disable=SC2068
  "$bin/envmount" mount "$D/store" "$MNT" --env bench --cache-dir "$D/cache" $@ >/dev/null 2>&1
  "$MNT/bin/python" -c "$W" >/dev/null 2>&1
  t1=$(date +%s%N)
  "$bin/envmount" unmount "$MNT" >/dev/null 2>&1; sleep 0.3
  echo $(( (t1 - t0) / 1000000 ))
}
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
as=(); bs=(); wins=0
for p in $(seq "$PAIRS"); do
  # Each pair in turn starts with A, then with B.
  if [ $((p % 2)) = 1 ]; then a=$(run "$A" ${A_OPTS:-}); b=$(run "$B" ${B_OPTS:-}); else b=$(run "$B" ${B_OPTS:-}); a=$(run "$A" ${A_OPTS:-}); fi
  as+=("$a"); bs+=("$b"); [ "$a" -lt "$b" ] && wins=$((wins + 1))
  echo "pair $p: A $a ms, B $b ms"
done
# The median of the pairs' own ratios follows the VM's drift less than the ratio of medians.
ratios=(); for k in "${!as[@]}"; do ratios+=("$(awk -v b="${bs[$k]}" -v a="${as[$k]}" 'BEGIN{printf "%.4f", b/a}')"); done
echo "VENV=$VENV DROP=$DROP A_OPTS='${A_OPTS:-}' B_OPTS='${B_OPTS:-}': median A $(med "${as[@]}") ms, B $(med "${bs[@]}") ms; A faster in $wins of $PAIRS pairs; B ÷ A: median of the pairs' ratios $(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
