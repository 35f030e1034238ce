# lib.sh — what the server scripts share: waiting for a started server's port, and stopping a
# server by the PID file its script wrote. Sourced by nginx.sh, squid.sh and moto.sh.

# wait_for_port NAME PID PORT TRIES LOG...
#   Waits (TRIES × 0.05 s) until 127.0.0.1:PORT accepts a connection while PID lives. On
#   failure: says so on stderr with the tail of each LOG, ends PID, and returns 1.
wait_for_port() {
    local name=$1 pid=$2 port=$3 tries=$4
    shift 4
    local _
    for _ in $(seq 1 "$tries"); do
        kill -0 "$pid" 2>/dev/null || break
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "$name: did not start on 127.0.0.1:$port" >&2
    tail -n 20 "$@" >&2 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    return 1
}

# stop_pidfile PIDFILE
#   SIGTERM to the PID in PIDFILE, up to 5 s to exit, then SIGKILL; removes PIDFILE.
stop_pidfile() {
    local file=$1 pid _
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$file"
}
