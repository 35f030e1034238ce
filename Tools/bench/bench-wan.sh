#!/usr/bin/env bash
# envmount over an emulated WAN vs downloading the whole venv, side by side in one run.
#
#   sudo Tools/bench/bench-wan.sh                   # small venv, then large (torch)
#   env: VENVS="small large", REPS_SMALL=3, REPS_LARGE=1, SETTINGS=1 (try the envmount
#        settings in SETTING_LIST, ';'-separated, on the cold mount), SKIP_BUILD=1, BENCH_DIR (default /var/tmp/envmount-bench),
#        DELAY_MS=20 (one way), RATE=1gbit, NGINX_PORT=18180, PROXY_PORT=18181, KEEP=1
#
# One link for everything: nginx on 127.0.0.1:NGINX_PORT serves, per venv, a directory store
# (envpublish) and the venv's .tar.zst (tar | zstd -T0 -3); delayproxy.py on PROXY_PORT adds
# DELAY_MS each way; wan.sh shapes PROXY_PORT to RATE. All clients use the proxy's port.
#
# Each venv is published as a user would, with no options: envpublish records profile
# `default` (the imports of the venv's top-level packages) and every plain mount prefetches it.
#
# Per venv (workload W: small = import numpy, pandas, scipy.linalg, sklearn.linear_model;
# large = import torch), page cache dropped before every timed run:
#  1. envmount cold, no profile: empty cache, time(mount --no-prefetch http://proxy/… + W with
#     MNT/bin/python); bytesFetched/requests from `envmount status --json`, also counted in
#     nginx's access log
#  2. full download: time(curl | zstd -d | tar -x + W from the extracted venv)
#  3. publish-time profile: the plain mount (prefetches `default` as it comes up) + W
#  3b. for comparison, a profile of W itself: recorded on a mount of the directory store (no
#     WAN; profiles live next to the manifest, so the http store serves it), then cold mount
#     --prefetch bench + W
#  4. physical limit: compressed bytes W needs / link rate + W's time from the source venv
#     measured as every timed row runs: page cache dropped, then only the venv's files read
#     into it (they have "arrived"; Python's interpreter, libpython and stdlib outside the venv
#     stay as cold as in rows 1-3); bytes = the --prefetch bench mount's bytesFetched once its
#     job finished (the chunks W reads; nothing else is fetched). The ratios and target
#     verdicts use it. The old limit (W with everything warm) is printed as row 4 (old)
#  5. warm cache: `envmount warm MNT --all`, wait until materialized, unmount, drop caches, fresh (plain) mount + W vs W
#     from the source venv with the page cache dropped
#
# Where the time goes (second table, per mount row, from `envmount status --json` right after
# W): FUSE requests by operation, the bytes READ replies carried, how many reads waited for
# chunk bytes and for how long in all, the daemon's CPU seconds (user + system, whole life of
# the mount so far), and when the prefetch job finished, in seconds after the mount command
# started (job time + mount command time; W's end is the row's total).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=${REPO:-$(cd "$HERE/../.." && pwd)}
BENCH_DIR=${BENCH_DIR:-/var/tmp/envmount-bench}
VENVS=${VENVS:-small large}
REPS_SMALL=${REPS_SMALL:-3}
REPS_LARGE=${REPS_LARGE:-1}
SETTINGS=${SETTINGS:-1}
DELAY_MS=${DELAY_MS:-20}
RATE=${RATE:-1gbit}
NGINX_PORT=${NGINX_PORT:-18180}
PROXY_PORT=${PROXY_PORT:-18181}
ENV_NAME=bench
W="$BENCH_DIR/wan"
LOG="$W/bench.log"
RESULTS="$BENCH_DIR/results-wan.md"
NGINX_STATE="$W/nginx"
RATE_BPS=$(python3 - "$RATE" <<'PY'
import re, sys
m = re.fullmatch(r"([0-9.]+)([kmg]?)(bit|bps)?", sys.argv[1].lower())
n = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]
print(int(n / 8 if (m.group(3) or "bit") == "bit" else n))
PY
)

[ "$(id -u)" = 0 ] || { echo "bench-wan.sh: must run as root (drop_caches, FUSE, tc)" >&2; exit 1; }
for c in zstd curl jq fusermount3 python3; do
  command -v "$c" >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q zstd curl jq fuse3 >/dev/null; break; }
done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "== swift build -c release ($REPO)"
  (cd "$REPO" && swift build -c release 2>&1 | tail -n 2)
fi
EM="$REPO/.build/release/envmount"; EP="$REPO/.build/release/envpublish"
[ -x "$EM" ] && [ -x "$EP" ] || { echo "missing $EM or $EP" >&2; exit 1; }

# ---------------------------------------------------------------- helpers
now() { date +%s.%N; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.3f", b-a}'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
med() { printf '%s\n' "$@" | median; }
summ() { # "median (r1/r2/…)"
  if [ $# = 1 ]; then printf '%.2f' "$1"; return; fi
  printf '%.2f (%s)' "$(med "$@")" "$(printf '%s\n' "$@" | xargs -n1 printf '%.2f\n' | paste -sd/)"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b+0 == 0) print "n/a"; else printf "%.2f", a/b }'; }
mb() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1e6}'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN{ print (r+0 <= t+0) ? "met" : "MISSED" }'; }
log() { echo "$*" >> "$LOG"; }
run() { log "+ $*"; "$@" >> "$LOG" 2>&1; }

# nginx access log: requests and body bytes since mark
NGX_MARK=0
ngx_mark() { NGX_MARK=$(wc -l < "$NGINX_STATE/access.log"); }
ngx_since() { tail -n +"$((NGX_MARK + 1))" "$NGINX_STATE/access.log" | awk '{n++; b+=$10} END{printf "%d %.0f", n, b}'; }

# ---------------------------------------------------------------- what we started
MOUNTS=(); DAEMONS=(); PROXY_PID=; NGINX_STARTED=0; WAN_UP=0
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
is_fuse() { [ "$(stat -f -c %t "$1" 2>/dev/null)" = 65735546 ]; }
# Mounted at all: a plain root mount is an overlay in front of FUSE (statfs shows overlayfs), a
# native or writable one too; a dead daemon's FUSE mount fails statfs.
is_mounted() { awk -v m="$1" '$2 == m {f = 1} END {exit !f}' /proc/self/mounts; }
is_ours() { tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q envmount; }
MPID=
# do_mount STORE MNT CACHE [mount options…]: sets MPID
do_mount() {
  local store=$1 mnt=$2 cache=$3 out pid; shift 3
  mkdir -p "$mnt" "$cache"
  log "+ envmount mount $store $mnt --env $ENV_NAME --cache-dir $cache $*"
  out=$("$EM" mount "$store" "$mnt" --env "$ENV_NAME" --cache-dir "$cache" "$@" 2>&1) \
    || { log "$out"; echo "envmount mount failed: $out" >&2; return 1; }
  log "$out"
  MOUNTS+=("$mnt")
  pid=$(grep -oE 'pid [0-9]+' <<<"$out" | tail -n1 | grep -oE '[0-9]+' || true)
  [ -n "$pid" ] || { echo "no daemon pid in: $out" >&2; return 1; }
  DAEMONS+=("$pid"); MPID=$pid
}
do_unmount() { # MNT PID
  local mnt=$1 pid=${2:-} i
  if is_mounted "$mnt"; then
    "$EM" unmount "$mnt" >> "$LOG" 2>&1 || fusermount3 -u "$mnt" >> "$LOG" 2>&1 \
      || umount -l "$mnt" >> "$LOG" 2>&1 || echo "could not unmount $mnt" >&2
  fi
  if [ -n "$pid" ]; then
    for i in $(seq 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid" && is_ours "$pid"; then
      echo "daemon $pid still alive after unmount; SIGTERM" >&2; kill -TERM "$pid" 2>/dev/null || true
    fi
  fi
}
cleanup() {
  local rc=$? m p
  set +e
  for m in "${MOUNTS[@]}"; do is_mounted "$m" && do_unmount "$m" ""; done
  for p in "${DAEMONS[@]}"; do alive "$p" && is_ours "$p" && kill -TERM "$p" 2>/dev/null; done
  [ "$WAN_UP" = 1 ] && "$HERE/wan.sh" down >> "$LOG" 2>&1
  [ -n "$PROXY_PID" ] && alive "$PROXY_PID" && kill -TERM "$PROXY_PID" 2>/dev/null
  [ "$NGINX_STARTED" = 1 ] && "$REPO/Tools/servers/nginx.sh" stop "$NGINX_STATE" >> "$LOG" 2>&1
  [ "${KEEP:-0}" = 1 ] || rm -rf "$W"/x-* "$W"/c-*
  for m in "$W"/m-*; do is_mounted "$m" || rmdir "$m" 2>/dev/null; done
  [ "$rc" != 0 ] && echo "bench-wan.sh: aborted (rc $rc); log $LOG" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# leftovers of an aborted earlier run (our own mount points only)
for m in "$W"/m-*; do is_mounted "$m" && { "$EM" unmount "$m" 2>/dev/null || umount -l "$m"; }; done 2>/dev/null || true
mkdir -p "$W/www"; rm -rf "$W"/m-* "$W"/c-* "$W"/x-*; : > "$LOG"

# ---------------------------------------------------------------- inputs (outside the link)
src_of() { case $1 in small) echo "$BENCH_DIR/venv-small" ;; large) echo "$BENCH_DIR/venv-torch" ;; esac; }
work_of() { case $1 in
  small) echo "import numpy, pandas, scipy.linalg, sklearn.linear_model" ;;
  large) echo "import torch" ;; esac; }
reps_of() { case $1 in small) echo "$REPS_SMALL" ;; large) echo "$REPS_LARGE" ;; esac; }
prepare() { # venv: publish + tar.zst, once per source version
  local v=$1 src; src=$(src_of "$v")
  [ -x "$src/bin/python" ] || { echo "missing $src (run make-venvs.sh${v/small/}${v/large/ --large})" >&2; exit 1; }
  local d="$W/www/$v" stamp="$W/www/$v/.complete"
  # .complete2: published with the default profile (older runs published with --no-record)
  stamp="$W/www/$v/.complete2"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$src/pyvenv.cfg" ] && [ "$stamp" -nt "$EP" ]; then return; fi
  echo "== preparing $v: envpublish + tar.zst of $src"
  rm -rf "$d"; mkdir -p "$d"
  local t0; t0=$(now)
  run "$EP" "$src" "$d/store" --env "$ENV_NAME" -q
  [ -n "$(find "$d/store/profiles" -name default 2>/dev/null)" ] \
    || { echo "envpublish recorded no profile default for $src (see $LOG)" >&2; exit 1; }
  echo "   envpublish (records profile default): $(since "$t0") s, $(du -sb "$d/store" | cut -f1) bytes"
  t0=$(now)
  tar -C "$src" -cf - . | zstd -T0 -3 -q -o "$d/venv.tar.zst"
  echo "   tar | zstd -T0 -3: $(since "$t0") s, $(stat -c %s "$d/venv.tar.zst") bytes"
  touch "$stamp"
}
for v in $VENVS; do prepare "$v"; done

# ---------------------------------------------------------------- the link
"$REPO/Tools/servers/nginx.sh" start "$W/www" "$NGINX_PORT" "$NGINX_STATE" >> "$LOG" 2>&1
NGINX_STARTED=1
python3 "$HERE/delayproxy.py" "$PROXY_PORT" "$NGINX_PORT" --delay-ms "$DELAY_MS" >> "$LOG" 2>&1 &
PROXY_PID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && break; sleep 0.1; done
"$HERE/wan.sh" up "$PROXY_PORT" "$RATE" >> "$LOG" 2>&1; WAN_UP=1
BASE="http://127.0.0.1:$PROXY_PORT"
rtt=$(curl -s -o /dev/null -w '%{time_total}' "$BASE/nonexistent")
echo "== link: nginx :$NGINX_PORT <- delayproxy :$PROXY_PORT (${DELAY_MS} ms each way) <- tc htb $RATE; one GET ${rtt}s"

FACTS="$(nproc) cores, $(awk '/MemTotal/{printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
{
  echo "# envmount WAN benchmark — $(date -u +%F\ %TZ)"
  echo
  echo "Link: nginx on 127.0.0.1 → delayproxy.py ${DELAY_MS} ms each way → tc htb $RATE ($(mb "$RATE_BPS") MB/s) on the proxy port."
  echo "Machine: $FACTS. envmount $(git -C "$REPO" rev-parse --short HEAD). Page cache dropped before every timed run."
  echo "Times in s: median (runs). Bytes: envmount status bytesFetched (compressed); nginx columns count the access log."
} > "$RESULTS"

# ---------------------------------------------------------------- one venv
MNT_N=0
# cold_run STORE_URL CACHE WORK [mount options]: empty cache, drop caches, time mount + W.
# Sets T_TOTAL T_MOUNT T_WORK BYTES REQS CHUNKS NGX (after W), BYTES_END (after jobs finished),
# and the cost columns (cost_of) in COST
cold_run() {
  local url=$1 cache=$2 work=$3 mnt t0 t1 j; shift 3
  MNT_N=$((MNT_N + 1)); mnt="$W/m-$MNT_N"
  rm -rf "$cache"; mkdir -p "$cache"; drop; ngx_mark
  t0=$(now)
  do_mount "$url" "$mnt" "$cache" "$@"
  T_MOUNT=$(since "$t0"); t1=$(now)
  run "$mnt/bin/python" -c "$work" || { echo "workload failed on $mnt" >&2; return 1; }
  T_WORK=$(since "$t1"); T_TOTAL=$(since "$t0")
  j=$("$EM" status "$mnt" --json); log "$j"
  BYTES=$(jq '.[0].bytesFetched' <<<"$j"); REQS=$(jq '.[0].requests' <<<"$j"); CHUNKS=$(jq '.[0].chunksFetched' <<<"$j")
  NGX=$(ngx_since); local after_w=$j
  for _ in $(seq 600); do  # let background jobs (prefetch) finish, for the bytes they need
    j=$("$EM" status "$mnt" --json)
    [ "$(jq '[.[0].jobs[] | select(.finished != true)] | length' <<<"$j")" = 0 ] && break; sleep 0.2
  done
  BYTES_END=$(jq '.[0].bytesFetched' <<<"$j")
  COST=$(cost_of "$after_w" "$j" "$t0" "$T_MOUNT")
  log "cold_run $url $*: total $T_TOTAL mount $T_MOUNT work $T_WORK bytes $BYTES reqs $REQS chunks $CHUNKS nginx $NGX end $BYTES_END cost $COST"
  do_unmount "$mnt" "$MPID"
}

# cost_of STATUS_AFTER_W STATUS_AFTER_JOBS T0 T_MOUNT: "| FUSE requests | READ MB | waits | CPU s |
# prefetch done |" cells. FUSE requests: total (lookup/read/ioctl/readdirplus/getattr); waits:
# reads that waited for chunk bytes / their total seconds; CPU: daemon user+system seconds
# after W; prefetch done: seconds from the mount command's start (T0, epoch) to the profile
# job's end (its finishedAt; older daemons: job seconds + T_MOUNT), — without a job.
cost_of() {
  jq -r --argjson fin "$2" --arg t0 "$3" --arg tm "$4" '.[0] as $s | ($s.fuseOps // {}) as $o
    | ($fin[0].jobs | map(select(.label | startswith("profile"))) | first) as $job
    | def r2: (. * 100 | round) / 100;
      "\($o | add // 0) (\($o.lookup // 0)/\($o.read // 0)/\($o.ioctl // 0)/\($o.readdirplus // 0)/\($o.getattr // 0))"
      + " | \((($s.fuseReadBytes // 0) / 1e6 * 10 | round) / 10)"
      + " | \($s.demandWaits // 0) / \(($s.demandWaitSeconds // 0) | r2)"
      + " | \((($s.cpuUserSeconds // 0) + ($s.cpuSystemSeconds // 0)) | r2)"
      + " (\(($s.cpuUserSeconds // 0) | r2)+\(($s.cpuSystemSeconds // 0) | r2))"
      + " | \(if $job == null then "—" elif $job.finishedAt then ($job.finishedAt - ($t0 | tonumber)) | r2
              else ($job.seconds + ($tm | tonumber)) | r2 end)"' <<<"$1"
}

bench_venv() {
  local v=$1 src work reps url www tarzst r
  src=$(src_of "$v"); work=$(work_of "$v"); reps=$(reps_of "$v")
  www="$W/www/$v"; url="$BASE/$v/store"; tarzst="$www/venv.tar.zst"
  local TAR_BYTES; TAR_BYTES=$(stat -c %s "$tarzst")
  echo "== $v: $work ($reps reps)"

  # 1. envmount cold, no profile
  local cold=() cold_m=() cold_w=() cold_b=() cold_q=() cold_n=() cold_c=()
  for r in $(seq "$reps"); do
    cold_run "$url" "$W/c-cold" "$work" --no-prefetch
    cold+=("$T_TOTAL"); cold_m+=("$T_MOUNT"); cold_w+=("$T_WORK"); cold_b+=("$BYTES"); cold_q+=("$REQS"); cold_n+=("$NGX"); cold_c+=("$COST")
    echo "   cold, no profile $r: $T_TOTAL s (mount $T_MOUNT), $(mb "$BYTES") MB, $REQS requests, nginx $NGX; cost $COST"
  done

  # 2. full download
  local full=() full_d=() x="$W/x-$v"
  for r in $(seq "$reps"); do
    rm -rf "$x"; mkdir -p "$x"; drop; ngx_mark
    local t0 t1; t0=$(now)
    curl -sf "$BASE/$v/venv.tar.zst" | zstd -d -q | tar -x -C "$x"
    t1=$(now); full_d+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')")
    run "$x/bin/python" -c "$work"
    full+=("$(since "$t0")")
    echo "   full download $r: ${full[-1]} s (download+extract ${full_d[-1]}), nginx $(ngx_since)"
  done
  rm -rf "$x"

  # 3. the publish-time profile `default`: what a plain mount does
  local dp=() dp_m=() dp_b=() dp_q=() dp_e=() dp_n=() dp_c=()
  for r in $(seq "$reps"); do
    cold_run "$url" "$W/c-dp" "$work"
    dp+=("$T_TOTAL"); dp_m+=("$T_MOUNT"); dp_b+=("$BYTES"); dp_q+=("$REQS"); dp_e+=("$BYTES_END"); dp_n+=("$NGX"); dp_c+=("$COST")
    echo "   default profile $r: $T_TOTAL s (mount $T_MOUNT), $(mb "$BYTES") MB at end of W ($(mb "$BYTES_END") MB when the job finished), $REQS requests, nginx $NGX; cost $COST"
  done

  # 3b. a profile of W itself: record on a mount of the directory store (no WAN), then --prefetch over WAN
  local rec="$W/m-rec-$v"
  rm -rf "$W/c-rec"; drop
  do_mount "$www/store" "$rec" "$W/c-rec" --no-prefetch
  run "$rec/bin/python" -c "$work"
  run "$EM" profile save "$rec" bench
  local recj; recj=$("$EM" status "$rec" --json); log "$recj"
  local REC_CHUNKS; REC_CHUNKS=$(jq '.[0].recordedChunks' <<<"$recj")
  do_unmount "$rec" "$MPID"
  local pf=() pf_b=() pf_q=() pf_e=() pf_n=() pf_c=()
  for r in $(seq "$reps"); do
    cold_run "$url" "$W/c-pf" "$work" --prefetch bench
    pf+=("$T_TOTAL"); pf_b+=("$BYTES"); pf_q+=("$REQS"); pf_e+=("$BYTES_END"); pf_n+=("$NGX"); pf_c+=("$COST")
    echo "   prefetch bench $r: $T_TOTAL s (mount $T_MOUNT), $(mb "$BYTES") MB at end of W ($(mb "$BYTES_END") MB when the job finished), $REQS requests, nginx $NGX; cost $COST"
  done

  # 4. physical limit = bytes / rate + W with the venv's bytes "arrived". Every timed row above
  # drops the page cache first, so the interpreter, libpython and the stdlib (outside the venv)
  # are read cold from disk in each of them; the limit is measured the same way: drop caches,
  # read only the venv's files (find -type f: bin/python's symlink target stays cold) into the
  # page cache, time W. The old limit (everything warm, even the system's Python) is kept as a
  # second row for comparison with earlier results.
  local loc=() locv=() PF_BYTES; PF_BYTES=$(med "${pf_e[@]}")
  for r in 1 2 3; do
    drop; find "$src/" -type f -print0 | xargs -0 cat > /dev/null
    local t0; t0=$(now); run "$src/bin/python" -c "$work"; locv+=("$(since "$t0")")
  done
  run "$src/bin/python" -c "$work"
  for r in 1 2 3; do local t0; t0=$(now); run "$src/bin/python" -c "$work"; loc+=("$(since "$t0")"); done
  local LOCAL LOCALV PHYS PHYS_WARM; LOCAL=$(med "${loc[@]}"); LOCALV=$(med "${locv[@]}")
  PHYS=$(awk -v b="$PF_BYTES" -v r="$RATE_BPS" -v l="$LOCALV" 'BEGIN{printf "%.3f", b/r + l}')
  PHYS_WARM=$(awk -v b="$PF_BYTES" -v r="$RATE_BPS" -v l="$LOCAL" 'BEGIN{printf "%.3f", b/r + l}')
  echo "   physical limit: $(mb "$PF_BYTES") MB / $(mb "$RATE_BPS") MB/s + $LOCALV s W (venv in the page cache, rest cold; $(printf '%s/' "${locv[@]}" | sed 's#/$##')) = $PHYS s"
  echo "   old physical limit: $(mb "$PF_BYTES") MB / $(mb "$RATE_BPS") MB/s + $LOCAL s W (everything warm) = $PHYS_WARM s"

  # 5. warm cache vs native
  local wc="$W/c-warm" wm="$W/m-warm-$v" warm=() nat=() T_WARMALL
  rm -rf "$wc"; do_mount "$url" "$wm" "$wc"
  local t0; t0=$(now); run "$EM" warm "$wm" --all; T_WARMALL=$(since "$t0")
  local WALL_B; WALL_B=$("$EM" status "$wm" --json | jq '.[0].bytesFetched')
  # Once every chunk is cached the daemon materializes the revision for the next mount: wait
  # for it, so each timed rep below is the native mount a user gets after warm --all.
  for _ in $(seq 1200); do "$EM" status "$wm" --json | jq -e '.[0].materialized == true' >/dev/null && break; sleep 0.5; done
  do_unmount "$wm" "$MPID"
  echo "   warm --all: $T_WARMALL s, $(mb "$WALL_B") MB"
  local warm_c=()
  for r in $(seq "$reps"); do
    drop; t0=$(now); do_mount "$url" "$wm" "$wc"; local tm; tm=$(since "$t0"); run "$wm/bin/python" -c "$work"; warm+=("$(since "$t0")")
    local wj; wj=$("$EM" status "$wm" --json); log "$wj"; warm_c+=("$(cost_of "$wj" "$wj" "$t0" "$tm")")
    do_unmount "$wm" "$MPID"
    drop; t0=$(now); run "$src/bin/python" -c "$work"; nat+=("$(since "$t0")")
    echo "   warm cache $r: ${warm[-1]} s; native ${nat[-1]} s; cost ${warm_c[-1]}"
  done

  # settings
  local set_rows=()
  if [ "$SETTINGS" = 1 ]; then
    local s
    local list
    IFS=';' read -r -a list <<< "${SETTING_LIST:---stream-read-ahead 0;--stream-read-ahead 32;--stream-read-ahead 64 --fetch-threads 32}"
    for s in "${list[@]}"; do
      # shellcheck disable=SC2086
      cold_run "$url" "$W/c-set" "$work" $s
      echo "   cold $s: $T_TOTAL s, $(mb "$BYTES") MB, $REQS requests"
      set_rows+=("| envmount cold, \`$s\` | $(printf '%.2f' "$T_TOTAL") | $(mb "$BYTES") | $REQS | $(echo $NGX | tr ' ' /) | $(ratio "$T_TOTAL" "$PHYS") × phys, $(ratio "$T_TOTAL" "$(med "${full[@]}")") × full dl | |")
    done
  fi
  rm -rf "$W"/c-*

  # table
  local C F P D N WM
  C=$(med "${cold[@]}"); F=$(med "${full[@]}"); P=$(med "${pf[@]}"); D=$(med "${dp[@]}"); N=$(med "${nat[@]}"); WM=$(med "${warm[@]}")
  local rc1 rc2 rp1 rp2 rd1 rd2 rw
  rc1=$(ratio "$C" "$PHYS"); rc2=$(ratio "$C" "$F"); rp1=$(ratio "$P" "$PHYS"); rp2=$(ratio "$P" "$F"); rw=$(ratio "$WM" "$N")
  rd1=$(ratio "$D" "$PHYS"); rd2=$(ratio "$D" "$F")
  local t_cold2 t_pf
  if [ "$v" = large ]; then t_cold2="< 1: $(verdict "$rc2" 0.999)"; else t_cold2="—"; fi
  {
    echo
    echo "## $v: \`$work\` ($(du -sh "$src/" | cut -f1) venv, tar.zst $(mb "$TAR_BYTES") MB, $reps reps)"
    echo
    echo "| step | time s | MB moved | requests | nginx reqs/bytes | ratio | target |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    echo "| 1. envmount cold, no profile (mount --no-prefetch + W) | $(summ "${cold[@]}") | $(mb "$(med "${cold_b[@]}")") | $(med "${cold_q[@]}") | ${cold_n[0]// //} | $rc1 × phys; $rc2 × full dl | ≤ 2: $(verdict "$rc1" 2); $t_cold2 |"
    echo "| 1. (of which mount command) | $(summ "${cold_m[@]}") | | | | | |"
    echo "| 2. full download (curl \| zstd -d \| tar -x + W) | $(summ "${full[@]}") | $(mb "$TAR_BYTES") | 1 | | | |"
    echo "| 2. (of which download + extract) | $(summ "${full_d[@]}") | | | | | |"
    echo "| 3. publish-time profile default, cold (plain mount + W) | $(summ "${dp[@]}") | $(mb "$(med "${dp_b[@]}")") (job done $(mb "$(med "${dp_e[@]}")")) | $(med "${dp_q[@]}") | ${dp_n[0]// //} | $rd1 × phys; $rd2 × full dl | ≤ 1.2: $(verdict "$rd1" 1.2); < 1: $(verdict "$rd2" 0.999) |"
    echo "| 3. (of which mount command) | $(summ "${dp_m[@]}") | | | | | |"
    echo "| 3b. (comparison) --prefetch bench, a profile of W, cold (mount + W) | $(summ "${pf[@]}") | $(mb "$(med "${pf_b[@]}")") (job total $(mb "$PF_BYTES")) | $(med "${pf_q[@]}") | ${pf_n[0]// //} | $rp1 × phys; $rp2 × full dl | |"
    echo "| 3b. (info) profile bench: chunks recorded | | | $REC_CHUNKS | | | |"
    echo "| 4. physical limit = $(mb "$PF_BYTES") MB ÷ $(mb "$RATE_BPS") MB/s + W with caches dropped, then only the venv's files read into the page cache ($(summ "${locv[@]}") s) | $PHYS | $(mb "$PF_BYTES") | | | ratios above use this row | |"
    echo "| 4. (old) physical limit = $(mb "$PF_BYTES") MB ÷ $(mb "$RATE_BPS") MB/s + W local, everything warm ($(printf '%.2f' "$LOCAL") s) | $PHYS_WARM | $(mb "$PF_BYTES") | | | row 3: $(ratio "$D" "$PHYS_WARM") × old phys | |"
    echo "| 5. warm cache (after warm --all; remount, W) | $(summ "${warm[@]}") | 0 | | | $rw × native | ≤ 1.1: $(verdict "$rw" 1.1) |"
    echo "| 5. native: W from the source venv, caches dropped | $(summ "${nat[@]}") | | | | | |"
    echo "| 5. (info) envmount warm --all | $(printf '%.2f' "$T_WARMALL") | $(mb "$WALL_B") | | | $(ratio "$T_WARMALL" "$(med "${full_d[@]}")") × download+extract | |"
    for s in "${set_rows[@]}"; do echo "$s"; done
    echo
    echo "Where the time goes ($v; one row per run; \`envmount status --json\` right after W). FUSE requests: all (lookup/read/ioctl/readdirplus/getattr); waits: reads that waited for chunk bytes / seconds waited in all; CPU: the daemon's user+system seconds; prefetch done: s after the mount command started, vs the row's total."
    echo
    echo "Load average at the end of $v: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| run | total s | FUSE requests | READ MB | waits n / s | daemon CPU s | prefetch done s |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    for r in $(seq "$reps"); do
      echo "| 1. cold, no profile #$r | $(printf '%.2f' "${cold[$((r-1))]}") | ${cold_c[$((r-1))]} |"
      echo "| 3. profile default #$r | $(printf '%.2f' "${dp[$((r-1))]}") | ${dp_c[$((r-1))]} |"
      echo "| 3b. --prefetch bench #$r | $(printf '%.2f' "${pf[$((r-1))]}") | ${pf_c[$((r-1))]} |"
      echo "| 5. warm cache #$r | $(printf '%.2f' "${warm[$((r-1))]}") | ${warm_c[$((r-1))]} |"
    done
  } | tee -a "$RESULTS"
}

for v in $VENVS; do bench_venv "$v"; done
echo
echo "results: $RESULTS; log: $LOG"
