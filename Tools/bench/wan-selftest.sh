#!/usr/bin/env bash
# Checks the loopback WAN profile (delayproxy.py + wan.sh) with python's http.server and curl:
# latency (time_connect, time_starttransfer of a tiny file) and throughput of a 200 MB file,
# for: direct, through the proxy, through the proxy with the 1gbit tc limit, and 4 parallel
# downloads through proxy+tc (shows connections are not serialised).
#   wan-selftest.sh [DELAY_MS=20] [RATE=1gbit]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/envmount-bench}
DELAY_MS=${1:-20}
RATE=${2:-1gbit}
W="$BENCH_DIR/wan-selftest"
mkdir -p "$W"
[ "$(id -u)" = 0 ] || { echo "must run as root (tc)" >&2; exit 1; }
command -v curl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UPORT=$(free_port); LPORT=$(free_port)
while [ "$LPORT" = "$UPORT" ]; do LPORT=$(free_port); done

PIDS=()
WAN_UP=0
cleanup() {
  local rc=$?
  [ "$WAN_UP" = 1 ] && "$HERE/wan.sh" down >/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  exit "$rc"
}
trap cleanup EXIT INT TERM

[ -f "$W/200M.bin" ] || head -c 200000000 /dev/urandom > "$W/200M.bin"
echo hi > "$W/tiny.txt"

python3 -m http.server --bind 127.0.0.1 --directory "$W" "$UPORT" >"$W/http.log" 2>&1 &
PIDS+=($!)
python3 "$HERE/delayproxy.py" "$LPORT" "$UPORT" --delay-ms "$DELAY_MS" >"$W/proxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$UPORT/tiny.txt" && curl -s -o /dev/null "http://127.0.0.1:$LPORT/tiny.txt" && break
  sleep 0.1
done

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# latency: median of 7 tiny GETs, each on a new connection
lat() {
  local port=$1 i c=() t=()
  for i in $(seq 7); do
    read -r tc ts < <(curl -s -o /dev/null -w '%{time_connect} %{time_starttransfer}\n' "http://127.0.0.1:$port/tiny.txt")
    c+=("$tc"); t+=("$ts")
  done
  printf '%s %s\n' "$(printf '%s\n' "${c[@]}" | median)" "$(printf '%s\n' "${t[@]}" | median)"
}
# throughput: best of 2 downloads of the 200 MB file, MB/s
tput() {
  local port=$1 i best=0 s
  for i in 1 2; do
    s=$(curl -s -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$port/200M.bin")
    best=$(awk -v a="$best" -v b="$s" 'BEGIN{print (b>a)?b:a}')
  done
  awk -v b="$best" 'BEGIN{printf "%.0f", b/1e6}'
}
par() {
  local port=$1 n=4 i t0 t1
  t0=$(date +%s.%N)
  local cp=()
  for i in $(seq $n); do curl -s -o /dev/null "http://127.0.0.1:$port/200M.bin" & cp+=($!); done
  for i in "${cp[@]}"; do wait "$i"; done
  t1=$(date +%s.%N)
  awk -v t0="$t0" -v t1="$t1" -v n=$n 'BEGIN{printf "%.0f", n*200/(t1-t0)}'
}

row() { # label port
  local l; l=$(lat "$2")
  printf '| %-28s | %8.1f | %8.1f | %8s |\n' "$1" \
    "$(awk -v x="${l% *}" 'BEGIN{print x*1000}')" "$(awk -v x="${l#* }" 'BEGIN{print x*1000}')" "$(tput "$2")"
}

echo "delay ${DELAY_MS} ms one-way, rate $RATE; http.server :$UPORT, proxy :$LPORT; $(nproc) cores, $(uname -r)"
echo "| path                         | connect ms | TTFB ms | 200MB MB/s |"
echo "|------------------------------|-----------:|--------:|-----------:|"
row "direct (http.server)" "$UPORT"
row "delayproxy" "$LPORT"
"$HERE/wan.sh" up "$LPORT" "$RATE" >/dev/null; WAN_UP=1
row "delayproxy + tc $RATE" "$LPORT"
echo "4 parallel 200MB downloads via delayproxy + tc: $(par "$LPORT") MB/s aggregate"
curl -s -o /dev/null "http://127.0.0.1:$LPORT/200M.bin" & BG=$!
sleep 0.5
l=$(lat "$LPORT")
wait "$BG"
echo "tiny GET while a 200MB download runs (proxy + tc): connect ${l% *} s, TTFB ${l#* } s"
tc -s class show dev lo | awk '/^class htb/{c=$3} /Sent/{print "  tc class " c ": sent " $2 " bytes, dropped " $7}'
"$HERE/wan.sh" down >/dev/null; WAN_UP=0
echo "tc removed: $(tc qdisc show dev lo root)"
echo "note: connect time through the proxy is loopback-fast (the proxy accepts locally); a real"
echo "WAN costs one more RTT per new connection. TTFB = request + response = 1 RTT."
