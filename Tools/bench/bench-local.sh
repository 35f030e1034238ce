#!/usr/bin/env bash
# envmount vs native, side by side in one run, on one machine, from a directory store.
# Prints a markdown table with ratios and writes it to $BENCH_DIR/results-local.md.
#
#   sudo Tools/bench/bench-local.sh          # REPS=3 BENCH_DIR=/var/tmp/envmount-bench
#   env: REPO (default: the repo this script lives in), SKIP_BUILD=1, REPS=N,
#        KEEP=1 (keep stores/caches of this run), BENCH_DIR,
#        ENVPUBLISH / ENVMOUNT (commands replacing the built binaries, e.g. mock-cli.sh).
#
# a. publish time: envpublish vs tar | zstd -T0 -3, page cache dropped first
# b. store size vs .tar.zst size
# c. python -c "import numpy, pandas, scipy.linalg, sklearn.linear_model" with the mounted
#    venv's python: cold (fresh mount, empty cache) and warm cache (remount, same cache),
#    each vs the source venv's python, page cache dropped before every run
# d. sequential read (dd bs=1M) of a 48 MiB random file and of the venv's largest .so,
#    from the mount with the chunks cached vs from the source, page cache dropped; 2nd reads
# e. find -printf '%s\n' over the venv: fresh mount vs source, caches dropped
# f. daemon VmHWM/VmRSS after the imports, and after a find over a 100k-entry tree
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=${REPO:-$(cd "$HERE/../.." && pwd)}
BENCH_DIR=${BENCH_DIR:-/var/tmp/envmount-bench}
REPS=${REPS:-3}
ENV_NAME=bench
IMPORT='import numpy, pandas, scipy.linalg, sklearn.linear_model'
RESULTS="$BENCH_DIR/results-local.md"
W="$BENCH_DIR/local"            # this run's stores, caches, mount points
LOG="$W/bench.log"              # every command's output

[ "$(id -u)" = 0 ] || { echo "bench-local.sh: must run as root (drop_caches, FUSE)" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites
ensure_pkgs() { # pkg:probe-command ...
  local missing=() spec
  for spec in "$@"; do command -v "${spec#*:}" >/dev/null 2>&1 || missing+=("${spec%%:*}"); done
  [ ${#missing[@]} = 0 ] && return 0
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
}
ensure_pkgs zstd:zstd fuse3:fusermount3 time:/usr/bin/time findutils:find coreutils:stat \
  procps:pgrep python3:python3
# build dependencies of the CLIs (a fresh machine lacks the -dev packages)
for p in libfuse3-dev libcurl4-openssl-dev libzstd-dev pkg-config; do
  dpkg -s "$p" >/dev/null 2>&1 || ensure_pkgs "$p:/nonexistent-$p"
done

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "== swift build -c release ($REPO)"
  (cd "$REPO" && swift build -c release 2>&1 | tail -n 3)
fi
BIN="$REPO/.build/release"
# ENVPUBLISH / ENVMOUNT override the binaries (e.g. mock-cli.sh, to test this script);
# they may be a command with arguments, hence unquoted arrays.
read -r -a EP <<<"${ENVPUBLISH:-$BIN/envpublish}"
read -r -a EM <<<"${ENVMOUNT:-$BIN/envmount}"
[ -x "${EP[0]}" ] && [ -x "${EM[0]}" ] || { echo "missing ${EP[0]} or ${EM[0]}" >&2; exit 1; }

# ---------------------------------------------------------------- inputs
[ -f "$BENCH_DIR/.venv-small.complete" ] || "$HERE/make-venvs.sh"
# The source of every comparison is a copy of venv-small with a 48 MiB random file added,
# so (d) has a file of a known size. A venv runs from a copy: bin/python is a symlink to
# the base interpreter and pyvenv.cfg sits next to bin/.
SRC_PARENT="$BENCH_DIR/bench-src"; SRC="$SRC_PARENT/venv-small"
if [ ! -f "$SRC_PARENT/.complete" ] || [ "$BENCH_DIR/.venv-small.complete" -nt "$SRC_PARENT/.complete" ]; then
  echo "== preparing $SRC (copy of venv-small + big.bin)"
  rm -rf "$SRC_PARENT"; mkdir -p "$SRC_PARENT"
  cp -a "$BENCH_DIR/venv-small" "$SRC"
  head -c 48M /dev/urandom > "$SRC/big.bin"
  touch "$SRC_PARENT/.complete"
fi
# 100k-entry synthetic tree: 1000 dirs x 100 files of 200-700 bytes
TREE="$BENCH_DIR/tree100k"
if [ ! -f "$BENCH_DIR/.tree100k.complete" ]; then
  echo "== generating $TREE"
  rm -rf "$TREE"
  python3 - "$TREE" <<'PY'
import os, random, sys
root = sys.argv[1]; rnd = random.Random(42)
for d in range(1000):
    p = os.path.join(root, f"pkg{d:04d}")
    os.makedirs(p)
    for f in range(100):
        with open(os.path.join(p, f"mod{f:03d}.py"), "w") as fh:
            fh.write(f"# {d}/{f}\n" + "x = %r\n" % ("".join(rnd.choice("abcdefgh ") for _ in range(rnd.randint(180, 680)))))
PY
  touch "$BENCH_DIR/.tree100k.complete"
fi
BIGSO=$(find "$SRC" -type f -name '*.so*' -printf '%s %P\n' | sort -n | tail -n1 | cut -d' ' -f2-)

# ---------------------------------------------------------------- helpers
now() { date +%s.%N; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fmt() { awk -v x="$1" 'BEGIN{printf "%.3f", x}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }
# "median (r1/r2/r3)" of a list of numbers
summ() { local m; m=$(printf '%s\n' "$@" | median); printf '%s (%s)' "$(fmt "$m")" "$(printf '%s\n' "$@" | xargs -n1 printf '%.3f\n' | paste -sd/)"; }
med() { printf '%s\n' "$@" | median; }
# timed CMD...: runs CMD, output to the log, prints elapsed seconds; fails if CMD fails.
# timedq: the same with stdout to /dev/null (find), so the log's writes are not timed.
timed() { _timed "$LOG" "$@"; }
timedq() { _timed /dev/null "$@"; }
_timed() {
  local out=$1 t0 t1; shift
  echo "+ $*" >> "$LOG"
  t0=$(now)
  if ! "$@" >> "$out" 2>> "$LOG"; then echo "FAILED: $* (see $LOG)" >&2; tail -n 20 "$LOG" >&2; return 1; fi
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.6f", b-a}'
}
# dd_mbps FILE: sequential read with dd bs=1M, prints MB/s (10^6 bytes/s)
dd_mbps() {
  local out secs bytes
  out=$(LC_ALL=C dd if="$1" of=/dev/null bs=1M 2>&1) || { echo "$out" >&2; return 1; }
  echo "dd $1: $out" >> "$LOG"
  bytes=$(sed -n 's/^\([0-9]*\) bytes.*/\1/p' <<<"$out")
  secs=$(sed -n 's/.* copied, \([0-9.e+-]*\) s,.*/\1/p' <<<"$out")
  awk -v b="$bytes" -v s="$secs" 'BEGIN{printf "%.0f", b/1e6/s}'
}
mem_mb() { # PID FIELD -> MB
  awk -v f="$2:" '$1==f {printf "%.1f", $2/1024}' "/proc/$1/status"
}

# ---------------------------------------------------------------- mounts we own
MOUNTS=(); DAEMONS=()
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
is_fuse() { [ "$(stat -f -c %t "$1" 2>/dev/null)" = 65735546 ]; }
is_ours() { tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q envmount; }
MPID= MT=
# do_mount STORE MNT CACHE: mounts; sets MPID (daemon pid) and MT (the mount command's
# seconds). Not to be called in $(...): it records the mount and daemon for cleanup.
do_mount() {
  local store=$1 mnt=$2 cache=$3 out t0 t1 pid
  mkdir -p "$mnt" "$cache"
  echo "+ envmount mount $store $mnt --env $ENV_NAME --cache-dir $cache" >> "$LOG"
  t0=$(now)
  if ! out=$("${EM[@]}" mount "$store" "$mnt" --env "$ENV_NAME" --cache-dir "$cache" 2>&1); then
    echo "$out" >> "$LOG"; echo "envmount mount failed: $out" >&2; return 1
  fi
  t1=$(now)
  echo "$out" >> "$LOG"
  MOUNTS+=("$mnt")
  pid=$(grep -oE 'pid [0-9]+' <<<"$out" | tail -n1 | grep -oE '[0-9]+' || true)
  [ -n "$pid" ] || pid=$(pgrep -n -f "envmount mount.*${mnt}" || true)
  [ -n "$pid" ] || { echo "cannot find the daemon of $mnt" >&2; return 1; }
  { is_fuse "$mnt" || mountpoint -q "$mnt"; } || { echo "$mnt is not mounted after envmount mount returned" >&2; return 1; }
  DAEMONS+=("$pid"); MPID=$pid
  MT=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.6f", b-a}')
}
# do_unmount MNT PID: unmount, wait for the daemon to exit, SIGTERM it if it lingers
do_unmount() {
  local mnt=$1 pid=${2:-} i
  if is_fuse "$mnt" || mountpoint -q "$mnt" 2>/dev/null; then
    "${EM[@]}" unmount "$mnt" >> "$LOG" 2>&1 || fusermount3 -u "$mnt" >> "$LOG" 2>&1 \
      || umount -l "$mnt" >> "$LOG" 2>&1 || echo "could not unmount $mnt" >&2
  fi
  if [ -n "$pid" ]; then
    for i in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid" && is_ours "$pid"; then
      echo "daemon $pid still alive after unmount; SIGTERM" >&2; kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 50); do alive "$pid" || break; sleep 0.1; done
      alive "$pid" && is_ours "$pid" && kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
}
cleanup() {
  local rc=$? m p
  set +e
  for m in "${MOUNTS[@]}"; do do_unmount "$m" ""; done
  for p in "${DAEMONS[@]}"; do
    if alive "$p" && is_ours "$p"; then kill -TERM "$p" 2>/dev/null; fi
  done
  if [ "$rc" != 0 ]; then echo "bench-local.sh: aborted (rc $rc); partial results in $RESULTS, log $LOG" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- results table
row() { # metric envmount baseline ratio target
  printf '| %s | %s | %s | %s | %s |\n' "$@" | tee -a "$RESULTS"
}
note() { printf '%s\n' "$*" | tee -a "$RESULTS"; }

# leftovers of an aborted earlier run (only our own mount points)
for m in "$W"/mnt*; do [ -d "$m" ] && { is_fuse "$m" || mountpoint -q "$m"; } && { fusermount3 -u "$m" 2>/dev/null || umount -l "$m"; }; done 2>/dev/null || true
rm -rf "$W"; mkdir -p "$W"; : > "$LOG"

FACTS="$(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)), \
$(awk '/MemTotal/{printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r), \
disk $(df -h --output=source,fstype,size,avail "$BENCH_DIR" | tail -n1 | tr -s ' '), \
$(swift --version 2>&1 | head -n1 | sed 's/ (.*//'), $(zstd --version | grep -oE 'v[0-9.]+' | head -n1 | sed 's/^/zstd /'), \
$(fusermount3 -V 2>&1 | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n1 | sed 's/^/fuse /'), load $(cut -d' ' -f1-3 /proc/loadavg)"
SRC_BYTES=$(du -sb "$SRC" | cut -f1); SRC_FILES=$(find "$SRC" -type f | wc -l)
{
  echo "# envmount local benchmark — $(date -u +%F\ %TZ)"
  echo
  echo "machine: $FACTS"
  echo "commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "source: $SRC — $SRC_BYTES bytes, $SRC_FILES files; store: directory; $REPS reps, median (each rep)"
  echo
  echo "| metric | envmount | native / baseline | ratio | target |"
  echo "|---|---|---|---|---|"
} | tee "$RESULTS"

# ---------------------------------------------------------------- a, b: publish
pub=(); tarz=()
for r in $(seq "$REPS"); do
  rm -rf "$W/store" "$W/venv.tar.zst"; mkdir -p "$W/store"
  drop; pub+=("$(timed "${EP[@]}" "$SRC" "$W/store" --env "$ENV_NAME" --no-record)")
  drop; tarz+=("$(timed bash -c "set -o pipefail; tar -cf - -C '$SRC_PARENT' venv-small | zstd -q -T0 -3 -f -o '$W/venv.tar.zst'")")
done
STORE="$W/store"
row "a. publish time, s (envpublish vs tar\|zstd -T0 -3)" "$(summ "${pub[@]}")" "$(summ "${tarz[@]}")" \
  "$(ratio "$(med "${pub[@]}")" "$(med "${tarz[@]}")")" "—"
SB=$(du -sb "$STORE" | cut -f1); TB=$(stat -c %s "$W/venv.tar.zst")
row "b. size, MB (store dir du -sb vs .tar.zst)" "$(fmt "$(awk -v x="$SB" 'BEGIN{print x/1e6}')")" \
  "$(fmt "$(awk -v x="$TB" 'BEGIN{print x/1e6}')")" "$(ratio "$SB" "$TB")" "≤ 1.05"

# ---------------------------------------------------------------- c: imports
nat=()
for r in $(seq "$REPS"); do drop; nat+=("$(timed "$SRC/bin/python" -c "$IMPORT")"); done
hot=()
for r in $(seq "$REPS"); do hot+=("$(timed "$SRC/bin/python" -c "$IMPORT")"); done

MNT="$W/mnt"; CACHE="$W/cache"
cold=(); mt=()
for r in $(seq "$REPS"); do
  rm -rf "$CACHE"; mkdir -p "$CACHE"
  drop
  do_mount "$STORE" "$MNT" "$CACHE"; mt+=("$MT"); pid=$MPID
  cold+=("$(timed "$MNT/bin/python" -c "$IMPORT")")
  if [ "$r" -lt "$REPS" ]; then do_unmount "$MNT" "$pid"; fi
done
HWM_COLD=$(mem_mb "$pid" VmHWM); RSS_COLD=$(mem_mb "$pid" VmRSS)
CACHE_MB=$(du -sb "$CACHE" | awk '{printf "%.1f", $1/1e6}')
warm=()
for r in $(seq "$REPS"); do
  do_unmount "$MNT" "$pid"
  drop
  do_mount "$STORE" "$MNT" "$CACHE"; mt+=("$MT"); pid=$MPID
  warm+=("$(timed "$MNT/bin/python" -c "$IMPORT")")
done
HWM_WARM=$(mem_mb "$pid" VmHWM); RSS_WARM=$(mem_mb "$pid" VmRSS)
NATM=$(med "${nat[@]}")
row "c. import, s: cold mount + empty cache vs source, caches dropped" "$(summ "${cold[@]}")" "$(summ "${nat[@]}")" "$(ratio "$(med "${cold[@]}")" "$NATM")" "—"
row "c. import, s: warm chunk cache (remount) vs source, caches dropped" "$(summ "${warm[@]}")" "$(summ "${nat[@]}")" "$(ratio "$(med "${warm[@]}")" "$NATM")" "—"
row "c. (info) native import, page cache hot, s" "" "$(summ "${hot[@]}")" "" ""
row "c. (info) envmount mount command, s" "$(summ "${mt[@]}")" "" "" ""
row "c. (info) chunk cache after the cold import, MB" "$CACHE_MB" "" "" ""
row "f. daemon VmHWM / VmRSS after cold import, MB" "$HWM_COLD / $RSS_COLD" "" "" "—"
row "f. daemon VmHWM / VmRSS after warm import, MB" "$HWM_WARM / $RSS_WARM" "" "" "—"

# ---------------------------------------------------------------- d: sequential read
# on the current (warm-cache) mount: read once to get the chunks cached, then measure
for f in big.bin "$BIGSO"; do
  sz=$(stat -c %s "$SRC/$f")
  first=$(dd_mbps "$MNT/$f")   # chunks fetched from the store into the cache (if not yet)
  cmp -s "$MNT/$f" "$SRC/$f" || { echo "CONTENT MISMATCH: $MNT/$f" >&2; exit 1; }
  m=(); n=(); m2=(); n2=()
  for r in $(seq "$REPS"); do
    drop; m+=("$(dd_mbps "$MNT/$f")"); m2+=("$(dd_mbps "$MNT/$f")")
    drop; n+=("$(dd_mbps "$SRC/$f")"); n2+=("$(dd_mbps "$SRC/$f")")
  done
  label="$(basename "$f") ($(awk -v s="$sz" 'BEGIN{printf "%.1f MiB", s/1048576}'))"
  row "d. seq read MB/s, chunks cached, page cache dropped: $label" "$(med "${m[@]}") ($(printf '%s\n' "${m[@]}" | paste -sd/))" \
    "$(med "${n[@]}") ($(printf '%s\n' "${n[@]}" | paste -sd/))" "$(ratio "$(med "${m[@]}")" "$(med "${n[@]}")")" "≥ 0.9"
  row "d. seq read MB/s, 2nd read (page cache warm): $label" "$(med "${m2[@]}")" "$(med "${n2[@]}")" \
    "$(ratio "$(med "${m2[@]}")" "$(med "${n2[@]}")")" "—"
  row "d. (info) first read through the mount (fetch into cache), MB/s: $label" "$first" "" "" ""
done

# ---------------------------------------------------------------- e: find
fm=(); fn=(); fm2=(); fn2=()
for r in $(seq "$REPS"); do
  do_unmount "$MNT" "$pid"
  drop
  do_mount "$STORE" "$MNT" "$CACHE"; pid=$MPID
  drop
  fm+=("$(timedq find "$MNT" -printf '%s\n')"); fm2+=("$(timedq find "$MNT" -printf '%s\n')")
  drop
  fn+=("$(timedq find "$SRC" -printf '%s\n')"); fn2+=("$(timedq find "$SRC" -printf '%s\n')")
done
[ "$(find "$MNT" | wc -l)" = "$(find "$SRC" | wc -l)" ] || echo "WARNING: entry count differs between mount and source" | tee -a "$RESULTS" >&2
row "e. find -printf %s, s, fresh mount, caches dropped ($(find "$SRC" | wc -l) entries); ratio = native/mount" \
  "$(summ "${fm[@]}")" "$(summ "${fn[@]}")" "$(ratio "$(med "${fn[@]}")" "$(med "${fm[@]}")")" "≥ 0.5"
row "e. find -printf %s, s, 2nd run (dentries cached); ratio = native/mount" \
  "$(summ "${fm2[@]}")" "$(summ "${fn2[@]}")" "$(ratio "$(med "${fn2[@]}")" "$(med "${fm2[@]}")")" "—"
do_unmount "$MNT" "$pid"

# ---------------------------------------------------------------- f: 100k-entry tree
TSTORE="$W/store-tree"; mkdir -p "$TSTORE"
drop; tp=$(timed "${EP[@]}" "$TREE" "$TSTORE" --env "$ENV_NAME" --no-record)
TMNT="$W/mnt-tree"; TCACHE="$W/cache-tree"
drop
do_mount "$TSTORE" "$TMNT" "$TCACHE"; tpid=$MPID
H0=$(mem_mb "$tpid" VmHWM)
drop
tf=$(timedq find "$TMNT" -printf '%s\n'); tf2=$(timedq find "$TMNT" -printf '%s\n')
drop
tn=$(timedq find "$TREE" -printf '%s\n')
TENT=$(find "$TREE" | wc -l)
HWM_T=$(mem_mb "$tpid" VmHWM); RSS_T=$(mem_mb "$tpid" VmRSS)
row "f. daemon VmHWM after mount / after find, MB ($TENT-entry tree)" "$H0 / $HWM_T (RSS $RSS_T)" "" "" "< 150"
row "f. (info) find -printf %s over the $TENT-entry tree, s (2nd run); ratio = native/mount" \
  "$(fmt "$tf") ($(fmt "$tf2"))" "$(fmt "$tn")" "$(ratio "$tn" "$tf")" ""
row "f. (info) envpublish of the $TENT-entry tree, s" "$(fmt "$tp")" "" "" ""
do_unmount "$TMNT" "$tpid"

note ""
note "ratios: a, c = envmount/native (lower is better); b = store/tar.zst; d = mount/native MB/s; e = native time/mount time (higher is better)."
[ "${KEEP:-0}" = 1 ] || rm -rf "$W/store" "$W/store-tree" "$W/cache" "$W/cache-tree" "$W/venv.tar.zst"
echo "written: $RESULTS (log: $LOG)"
