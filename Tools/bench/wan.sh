#!/usr/bin/env bash
# Loopback WAN bandwidth: an HTB qdisc on `lo` that limits the TCP traffic of ONE port
# (both directions, each direction its own class, so the link is full duplex) and lets
# everything else on lo through untouched.
#
#   wan.sh up PORT [RATE]   # RATE in tc units, default 1gbit; replaces a previous `up`
#   wan.sh down             # removes exactly what `up` added
#   wan.sh status
#
# Latency comes from delayproxy.py (this kernel has no netem): run the proxy on LPORT and
# shape LPORT here, e.g.
#   python3 delayproxy.py 18080 8080 &   ;   wan.sh up 18080 1gbit
#
# Ownership: `up` creates the root qdisc with its own handle (0xe57a) only if lo's root is
# the kernel default (noqueue); it refuses to touch a root qdisc someone else installed.
# `down` deletes the root qdisc only if it carries that handle.
set -euo pipefail

DEV=lo
HANDLE=e57a          # ours; `down` only ever deletes a root qdisc with this handle
STATE=/run/envmount-wan.state

need_tc() {
  if ! command -v tc >/dev/null 2>&1; then
    echo "wan.sh: installing iproute2 (tc)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 >/dev/null
  fi
  [ "$(id -u)" = 0 ] || { echo "wan.sh: must run as root" >&2; exit 1; }
}

root_qdisc() { tc qdisc show dev "$DEV" root | head -n1; }
ours() { root_qdisc | grep -q "^qdisc htb $HANDLE: "; }

down() {
  if ours; then
    tc qdisc del dev "$DEV" root handle "$HANDLE:"
    echo "wan.sh: removed htb $HANDLE: from $DEV ($(cat "$STATE" 2>/dev/null || echo '?'))"
  else
    echo "wan.sh: nothing of ours on $DEV (root: $(root_qdisc))"
  fi
  rm -f "$STATE"
}

up() {
  local port=$1 rate=${2:-1gbit}
  [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] \
    || { echo "wan.sh: bad port '$port'" >&2; exit 2; }
  if ours; then
    down >/dev/null
  elif ! root_qdisc | grep -q '^qdisc noqueue '; then
    echo "wan.sh: $DEV already has a root qdisc that is not ours, refusing: $(root_qdisc)" >&2
    exit 1
  fi
  # lo has a 64 KiB MTU and GSO: packets up to 64 KiB. A burst of a few such packets keeps
  # HTB from under-running at 1gbit; quantum set explicitly (rate/r2q would be huge).
  # `default 0`: unclassified traffic bypasses HTB entirely (not shaped, not queued).
  local burst=512k q=200000
  tc qdisc add dev "$DEV" root handle "$HANDLE:" htb default 0 r2q 1000
  # Any failure from here on removes the half-built qdisc.
  trap 'tc qdisc del dev "$DEV" root handle "$HANDLE:" 2>/dev/null || true' ERR
  tc class add dev "$DEV" parent "$HANDLE:" classid "$HANDLE:1" htb \
    rate "$rate" ceil "$rate" burst "$burst" cburst "$burst" quantum "$q"
  tc class add dev "$DEV" parent "$HANDLE:" classid "$HANDLE:2" htb \
    rate "$rate" ceil "$rate" burst "$burst" cburst "$burst" quantum "$q"
  # Deep enough FIFOs that loopback TCP does not see artificial drops.
  tc qdisc add dev "$DEV" parent "$HANDLE:1" pfifo limit 10000
  tc qdisc add dev "$DEV" parent "$HANDLE:2" pfifo limit 10000
  # from the port (server/proxy -> client: the download direction) -> class 1
  tc filter add dev "$DEV" parent "$HANDLE:" protocol ip prio 1 u32 \
    match ip protocol 6 0xff match ip sport "$port" 0xffff flowid "$HANDLE:1"
  # to the port (client -> server/proxy: requests, uploads) -> class 2
  tc filter add dev "$DEV" parent "$HANDLE:" protocol ip prio 1 u32 \
    match ip protocol 6 0xff match ip dport "$port" 0xffff flowid "$HANDLE:2"
  trap - ERR
  echo "port $port rate $rate" > "$STATE"
  echo "wan.sh: $DEV tcp port $port limited to $rate each way (htb $HANDLE:)"
}

status() {
  tc -s qdisc show dev "$DEV"
  tc -s class show dev "$DEV"
  tc filter show dev "$DEV"
  [ -f "$STATE" ] && echo "state: $(cat "$STATE")" || true
}

need_tc
case "${1:-}" in
  up) [ $# -ge 2 ] || { echo "usage: $0 up PORT [RATE]" >&2; exit 2; }; up "$2" "${3:-1gbit}" ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up PORT [RATE] | down | status" >&2; exit 2 ;;
esac
