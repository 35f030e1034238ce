#!/usr/bin/env bash
# nginx.sh — Debian's nginx serving a directory on loopback, for tests and benchmarks.
#
#   nginx.sh start DIR PORT [STATE_DIR]   serve DIR at http://127.0.0.1:PORT/ (foreground master
#                                         process in the background, generated config under
#                                         STATE_DIR, default /tmp/envmount-nginx-PORT);
#                                         prints NGINX_PID=<pid> and NGINX_ACCESS_LOG=<path>
#   nginx.sh stop STATE_DIR|PORT          stop it by the PID in STATE_DIR/nginx.pid
#
# The access log (one line per request) lets tests count requests.
set -euo pipefail

state_for() { case "$1" in *[!0-9]*) echo "$1" ;; *) echo "/tmp/envmount-nginx-$1" ;; esac; }

ensure_nginx() {
    if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
        echo "nginx.sh: installing nginx with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx </dev/null >&2 \
            || { DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null >&2 \
                 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx </dev/null >&2; }
    fi
}

case "${1:-}" in
start)
    dir=${2:?usage: nginx.sh start DIR PORT [STATE_DIR]}
    port=${3:?usage: nginx.sh start DIR PORT [STATE_DIR]}
    state=$(state_for "${4:-$port}")
    dir=$(cd "$dir" && pwd)
    ensure_nginx
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    mkdir -p "$state/tmp"
    user_line=""
    [ "$(id -u)" = 0 ] && user_line="user root;"
    cat >"$state/nginx.conf" <<CONF
$user_line
worker_processes 2;
daemon off;
pid $state/nginx.pid;
error_log $state/error.log warn;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 100000;
    access_log $state/access.log;
    client_body_temp_path $state/tmp/body;
    proxy_temp_path $state/tmp/proxy;
    fastcgi_temp_path $state/tmp/fastcgi;
    uwsgi_temp_path $state/tmp/uwsgi;
    scgi_temp_path $state/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        root $dir;
        location / { autoindex off; }
    }
}
CONF
    : >"$state/access.log"
    nohup "$NGINX" -p "$state" -c "$state/nginx.conf" </dev/null >"$state/stdout.log" 2>&1 &
    pid=$!
    ok=0
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then ok=1; break; fi
        sleep 0.05
    done
    if [ "$ok" != 1 ]; then
        echo "nginx.sh: nginx did not start on 127.0.0.1:$port" >&2
        cat "$state/error.log" "$state/stdout.log" >&2 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
        exit 1
    fi
    echo "$pid" >"$state/nginx.pid"
    echo "NGINX_PID=$pid"
    echo "NGINX_ACCESS_LOG=$state/access.log"
    ;;
stop)
    state=$(state_for "${2:?usage: nginx.sh stop STATE_DIR|PORT}")
    if [ -f "$state/nginx.pid" ]; then
        pid=$(cat "$state/nginx.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$state/nginx.pid"
    fi
    ;;
*)
    echo "usage: nginx.sh start DIR PORT [STATE_DIR] | stop STATE_DIR|PORT" >&2
    exit 2
    ;;
esac
