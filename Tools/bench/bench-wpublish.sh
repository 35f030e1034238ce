#!/usr/bin/env bash
# The "update packages on the GPU box, then publish" loop (issue 11), side by side in one run,
# directory store, no network (a wheel built here):
#   1. envpublish SRC STORE: revision 1
#   2. envmount mount --writable; pip install of the local wheel; the import works
#   3. publishing the change, page cache dropped before each, alternating REPS times:
#        layer:  envpublish MNT           (the writable mount; unchanged files reused unread)
#        copy:   envpublish COPY STORE    (the way without a layer: a local copy of the venv with
#                                          the same wheel pip-installed, published whole)
#      each into a copy of the store as revision 1 left it, so every run uploads the same chunks
#   4. revision 2 (from the layer) mounted fresh, empty cache, at another path: the import works;
#      the writable mount unmounted and mounted again: the import still works
#
#   sudo Tools/bench/bench-wpublish.sh      # VENV=small|large REPS=3 BENCH_DIR=/var/tmp/envmount-bench
#   env: REPO, SKIP_BUILD=1 (use .build/release as it is)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=${REPO:-$(cd "$HERE/../.." && pwd)}
BENCH_DIR=${BENCH_DIR:-/var/tmp/envmount-bench}
REPS=${REPS:-3}
VENV=${VENV:-small}
case "$VENV" in
  small) SRC="$BENCH_DIR/venv-small"; STAMP=.venv-small.complete; MAKE=() ;;
  large) SRC="$BENCH_DIR/venv-torch"; STAMP=.venv-torch.complete; MAKE=(--large) ;;
  *) echo "bench-wpublish.sh: VENV must be small or large, not $VENV" >&2; exit 2 ;;
esac
W="$BENCH_DIR/wpublish-$VENV"
LOG="$W/bench.log"
RESULTS="$BENCH_DIR/results-wpublish-$VENV.md"
[ "$(id -u)" = 0 ] || { echo "bench-wpublish.sh: must run as root (drop_caches, FUSE, overlayfs)" >&2; exit 1; }
[ -f "$BENCH_DIR/$STAMP" ] || "$HERE/make-venvs.sh" "${MAKE[@]}"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  (cd "$REPO" && swift build -c release --product envmount | tail -n 1 && swift build -c release --product envpublish | tail -n 1)
fi
BIN="$REPO/.build/release"

MNT="$W/mnt" OTHER="$W/other" LAYER="$W/layer" STORE="$W/store" COPY="$W/copy/venv"
cleanup() {
  for m in "$OTHER" "$MNT"; do mountpoint -q "$m" && "$BIN/envmount" unmount "$m" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
rm -rf "$W"; mkdir -p "$W" "$MNT" "$OTHER" "$W/copy"
: > "$LOG"
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
all() { printf '%s\n' "$@" | paste -sd/; }
mnt() { "$BIN/envmount" mount "$STORE" "$@" >> "$LOG" 2>&1; }
umnt() { "$BIN/envmount" unmount "$1" >> "$LOG" 2>&1; sleep 0.3; }
counter() { "$BIN/envmount" status "$MNT" --json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['$1'])"; }

"$REPO/Tools/make-wheel.py" "$W/wheels" >/dev/null
WHEEL="$W/wheels/tinypkg-1.0-py3-none-any.whl"
PIP=(-m pip install -q --no-index --no-cache-dir --disable-pip-version-check "$WHEEL")

echo "== 1. revision 1 of $SRC" | tee -a "$LOG"
"$BIN/envpublish" "$SRC" "$STORE" --env bench --no-record >> "$LOG" 2>&1
cp -a "$STORE" "$W/store.rev1"

echo "== 2. pip install into a --writable mount; the same into a local copy" | tee -a "$LOG"
mnt "$MNT" --env bench --cache-dir "$W/cache" --writable "$LAYER" --no-prefetch
t0=$(now); "$MNT/bin/python" "${PIP[@]}" >> "$LOG" 2>&1; PIP_S=$(since "$t0")
IMPORT_1=$("$MNT/bin/python" -c 'import tinypkg; print(tinypkg.VALUE)')
cp -a "$SRC" "$COPY"
"$COPY/bin/python" "${PIP[@]}" >> "$LOG" 2>&1

echo "== 3. publish the change: layer vs copy, $REPS reps" | tee -a "$LOG"
declare -a tl tc
for r in $(seq "$REPS"); do
  rm -rf "$STORE"; cp -a "$W/store.rev1" "$STORE"
  HITS0=$(counter cacheHits); FETCH0=$(counter rawBytesFetched)
  drop; t0=$(now); "$BIN/envpublish" "$MNT" --no-record > "$W/layer-publish.out" 2>> "$LOG"; tl+=("$(since "$t0")")
  HITS1=$(counter cacheHits); FETCH1=$(counter rawBytesFetched)
  rm -rf "$STORE"; cp -a "$W/store.rev1" "$STORE"
  drop; t0=$(now); "$BIN/envpublish" "$COPY" "$STORE" --env bench --no-record > "$W/copy-publish.out" 2>> "$LOG"; tc+=("$(since "$t0")")
done
cat "$W/layer-publish.out" "$W/copy-publish.out" >> "$LOG"
LAYER_LINE=$(grep 'reused unread' "$W/layer-publish.out")
LAYER_CHUNKS=$(grep ' chunks: ' "$W/layer-publish.out")
COPY_FILES=$(grep ' files (' "$W/copy-publish.out" | head -n1)
COPY_CHUNKS=$(grep ' chunks: ' "$W/copy-publish.out")

echo "== 4. revision 2 fresh; the layer after a remount" | tee -a "$LOG"
rm -rf "$STORE"; cp -a "$W/store.rev1" "$STORE"
"$BIN/envpublish" "$MNT" --no-record >> "$LOG" 2>&1
mnt "$OTHER" --env bench --cache-dir "$W/cache-fresh" --no-prefetch
IMPORT_2=$("$OTHER/bin/python" -c 'import tinypkg, sys; print(tinypkg.VALUE, sys.prefix)')
REV_2=$("$BIN/envmount" status "$OTHER" | grep -o 'revision [0-9]*' | head -n1)
umnt "$OTHER"
umnt "$MNT"
mnt "$MNT" --env bench --cache-dir "$W/cache" --writable "$LAYER" --no-prefetch
IMPORT_3=$("$MNT/bin/python" -c 'import tinypkg; print(tinypkg.VALUE)')
umnt "$MNT"

{
  echo "# bench-wpublish.sh — $(date -u +%Y-%m-%dT%H:%MZ), VENV=$VENV ($SRC), $REPS reps, median (each rep); load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| publish of a pip install of one local wheel, page cache dropped | seconds |"
  echo "| --- | --- |"
  echo "| \`envpublish MNT\` (writable mount) | $(med "${tl[@]}") ($(all "${tl[@]}")) |"
  echo "| \`envpublish COPY STORE\` (local copy, published whole) | $(med "${tc[@]}") ($(all "${tc[@]}")) |"
  echo
  echo "- layer: $LAYER_LINE; $LAYER_CHUNKS; the source mount's daemon during the last one: cache hits $HITS0 → $HITS1, bytes fetched $FETCH0 → $FETCH1"
  echo "- copy: $COPY_FILES; $COPY_CHUNKS"
  echo "- pip install into the --writable mount: $PIP_S s; import: $IMPORT_1; revision 2 mounted fresh at another path: $REV_2, import: $IMPORT_2; the layer after a remount: import: $IMPORT_3"
} | tee "$RESULTS"
