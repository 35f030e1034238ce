#!/usr/bin/env bash
# nginx.sh — Debian's nginx serving a directory on loopback, for tests and benchmarks.
#
#   nginx.sh start DIR PORT [STATE_DIR]   serve DIR at http://127.0.0.1:PORT/ (foreground master
#                                         process in the background, generated config under
#                                         STATE_DIR, default /tmp/envmount-nginx-PORT);
#                                         prints NGINX_PID=<pid> and NGINX_ACCESS_LOG=<path>
#   nginx.sh proxy UPSTREAM PORT [STATE_DIR]
#                                         a reverse proxy to UPSTREAM (http://host:port) on PORT
#                                         instead, passing the Host header the client sent (so an
#                                         S3 signature over Host still matches: moto behind TLS)
#   nginx.sh stop STATE_DIR|PORT          stop it by the PID in STATE_DIR/nginx.pid
#
# With NGINX_TLS_CERT and NGINX_TLS_KEY set (PEM files, e.g. from tls.sh), it listens with TLS
# (HTTP/2 offered) instead of plain HTTP.
#
# Served stores answer as a fleet origin should: chunks, manifests and profiles with
# `Cache-Control: public, max-age=31536000, immutable` (content-addressed, never change), refs
# with `no-cache` (a cache must revalidate them), so an HTTP cache in front (Tools/servers/squid.sh)
# keeps the first and re-asks for the second.
#
# The access log (nginx's "combined" format plus the request's Cache-Control and Range headers:
# one line per request, bytes sent in field 10) lets tests count requests and origin bytes and
# see what a client asked a cache for.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

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
start|proxy)
    mode=$1
    target=${2:?usage: nginx.sh start DIR PORT [STATE_DIR] | proxy UPSTREAM PORT [STATE_DIR]}
    port=${3:?usage: nginx.sh start DIR PORT [STATE_DIR] | proxy UPSTREAM PORT [STATE_DIR]}
    state=$(state_for "${4:-$port}")
    listen="listen 127.0.0.1:$port;"
    tls=""
    if [ -n "${NGINX_TLS_CERT:-}" ]; then
        listen="listen 127.0.0.1:$port ssl http2;"
        tls="ssl_certificate ${NGINX_TLS_CERT}; ssl_certificate_key ${NGINX_TLS_KEY:?NGINX_TLS_KEY is needed with NGINX_TLS_CERT};"
    fi
    if [ "$mode" = start ]; then
        dir=$(cd "$target" && pwd)
        body="root $dir;
        location / { autoindex off; }
        location /chunks/ { add_header Cache-Control \"public, max-age=31536000, immutable\"; }
        location /manifests/ { add_header Cache-Control \"public, max-age=31536000, immutable\"; }
        location /profiles/ { add_header Cache-Control \"public, max-age=31536000, immutable\"; }
        location /refs/ { add_header Cache-Control \"no-cache\"; }"
    else
        body="client_max_body_size 0;
        location / {
            proxy_pass $target;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host \$http_host;
            proxy_request_buffering off;
            proxy_buffering off;
        }"
    fi
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
    log_format envmount '\$remote_addr - \$remote_user [\$time_local] "\$request" \$status \$body_bytes_sent '
                        '"\$http_referer" "\$http_user_agent" cc="\$http_cache_control" range="\$http_range"';
    access_log $state/access.log envmount;
    client_body_temp_path $state/tmp/body;
    proxy_temp_path $state/tmp/proxy;
    fastcgi_temp_path $state/tmp/fastcgi;
    uwsgi_temp_path $state/tmp/uwsgi;
    scgi_temp_path $state/tmp/scgi;
    server {
        $listen
        $tls
        $body
    }
}
CONF
    : >"$state/access.log"
    nohup "$NGINX" -p "$state" -c "$state/nginx.conf" </dev/null >"$state/stdout.log" 2>&1 &
    pid=$!
    wait_for_port nginx.sh "$pid" "$port" 100 "$state/error.log" "$state/stdout.log" || exit 1
    echo "$pid" >"$state/nginx.pid"
    echo "NGINX_PID=$pid"
    echo "NGINX_ACCESS_LOG=$state/access.log"
    ;;
stop)
    state=$(state_for "${2:?usage: nginx.sh stop STATE_DIR|PORT}")
    stop_pidfile "$state/nginx.pid"
    ;;
*)
    echo "usage: nginx.sh start DIR PORT [STATE_DIR] | proxy UPSTREAM PORT [STATE_DIR] | stop STATE_DIR|PORT" >&2
    exit 2
    ;;
esac
