#!/usr/bin/env bash
# squid.sh — Debian's squid as a site cache in front of an envmount store, with the project's
# configuration (Tools/servers/squid.conf), for tests, benchmarks and small sites.
#
#   squid.sh start PORT STATE_DIR [ALLOW_CIDR] [CACHE_MEM_MB] [CACHE_DIR_MB]
#        listen on 127.0.0.1:PORT (on every address when ALLOW_CIDR is not 127.0.0.0/8);
#        ALLOW_CIDR: who may use it (default 127.0.0.0/8); CACHE_MEM_MB: memory cache (default
#        1024); CACHE_DIR_MB: also a disk cache under STATE_DIR of that size (default none).
#        Prints SQUID_PID=<pid>, SQUID_ACCESS_LOG=<path> and http_proxy=http://127.0.0.1:PORT.
#   squid.sh stop STATE_DIR      stop it by the PID it wrote
#
# Clients use it through http_proxy (envmount honours http_proxy/no_proxy; note that many
# machines set no_proxy=localhost,127.0.0.1, which bypasses a proxy for a loopback origin).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
here=$(cd "$(dirname "$0")" && pwd)

ensure_squid() {
    if ! command -v squid >/dev/null 2>&1 && [ ! -x /usr/sbin/squid ]; then
        echo "squid.sh: installing squid with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq squid </dev/null >&2 \
            || { DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null >&2 \
                 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq squid </dev/null >&2; }
    fi
}

case "${1:-}" in
start)
    port=${2:?usage: squid.sh start PORT STATE_DIR [ALLOW_CIDR] [CACHE_MEM_MB] [CACHE_DIR_MB]}
    state=${3:?usage: squid.sh start PORT STATE_DIR [ALLOW_CIDR] [CACHE_MEM_MB] [CACHE_DIR_MB]}
    allow=${4:-127.0.0.0/8}
    mem=${5:-1024}
    disk=${6:-}
    ensure_squid
    SQUID=$(command -v squid || echo /usr/sbin/squid)
    mkdir -p "$state"
    state=$(cd "$state" && pwd)
    listen="127.0.0.1:$port"
    [ "$allow" = 127.0.0.0/8 ] || listen="$port"
    cache_dir_line="# memory cache only"
    [ -n "$disk" ] && cache_dir_line="cache_dir ufs $state/cache $disk 16 256"
    sed -e "s|@LISTEN@|$listen|" -e "s|@ALLOW@|$allow|" -e "s|@CACHE_MEM@|$mem|" \
        -e "s|@STATE@|$state|g" -e "s|@CACHE_DIR_LINE@|$cache_dir_line|" "$here/squid.conf" >"$state/squid.conf"
    # As root, squid drops to its effective user (proxy on Debian), which must own the state.
    if [ "$(id -u)" = 0 ] && id proxy >/dev/null 2>&1; then chown -R proxy "$state"; fi
    if [ -n "$disk" ]; then "$SQUID" -f "$state/squid.conf" -z -N >"$state/init.log" 2>&1; fi
    : >"$state/access.log"
    [ "$(id -u)" = 0 ] && id proxy >/dev/null 2>&1 && chown proxy "$state/access.log"
    nohup "$SQUID" -f "$state/squid.conf" -N </dev/null >"$state/stdout.log" 2>&1 &
    pid=$!
    wait_for_port squid.sh "$pid" "$port" 200 "$state/cache.log" "$state/stdout.log" || exit 1
    echo "$pid" >"$state/squid.launcher.pid"
    echo "SQUID_PID=$pid"
    echo "SQUID_ACCESS_LOG=$state/access.log"
    echo "http_proxy=http://127.0.0.1:$port"
    ;;
stop)
    state=${2:?usage: squid.sh stop STATE_DIR}
    stop_pidfile "$state/squid.launcher.pid"
    ;;
*)
    echo "usage: squid.sh start PORT STATE_DIR [ALLOW_CIDR] [CACHE_MEM_MB] [CACHE_DIR_MB] | stop STATE_DIR" >&2
    exit 2
    ;;
esac
