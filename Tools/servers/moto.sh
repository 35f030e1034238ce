#!/usr/bin/env bash
# moto.sh — an S3-protocol server on loopback for tests (moto_server from PyPI `moto[server]`),
# with SigV4 signature checking switched on.
#
#   moto.sh start PORT [STATE_DIR]   start moto on 127.0.0.1:PORT; prints, one per line:
#                                      MOTO_PID=<pid>
#                                      AWS_ACCESS_KEY_ID=<key>
#                                      AWS_SECRET_ACCESS_KEY=<secret>
#                                      AWS_ENDPOINT_URL=http://127.0.0.1:PORT
#                                    and writes the same as `export` lines to STATE_DIR/moto.env
#   moto.sh stop STATE_DIR|PORT      stop the server started with that state dir (by its PID)
#
# moto does not check signatures by default. With INITIAL_NO_AUTH_ACTION_COUNT=3 the first three
# API actions are unauthenticated; we spend exactly those on create_user, create_access_key and
# put_user_policy (Allow s3:* on *). From then on every request must be signed with that key:
# a wrong secret gets 403 SignatureDoesNotMatch, an unknown key 403 InvalidAccessKeyId.
# moto runs through moto_serial.py, which handles one request at a time: moto's own conditional
# PUT (If-Match) checks and stores without a lock, so racing compare-and-swaps could both win.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

cmd=${1:-}
PY=${PYTHON:-python3}

ensure_moto() {
    if ! "$PY" -c 'import moto.server, boto3, flask' >/dev/null 2>&1; then
        echo "moto.sh: installing moto[server] with pip" >&2
        CI=true PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
            "$PY" -m pip install --quiet 'moto[server]' boto3 </dev/null >&2
    fi
}

case "$cmd" in
start)
    port=${2:?usage: moto.sh start PORT [STATE_DIR]}
    state=${3:-/tmp/envmount-moto-$port}
    mkdir -p "$state"
    ensure_moto
    INITIAL_NO_AUTH_ACTION_COUNT=3 MOTO_ALLOW_NONEXISTENT_REGION=true \
        nohup "$PY" "$(dirname "$0")/moto_serial.py" -H 127.0.0.1 -p "$port" </dev/null >"$state/moto.log" 2>&1 &
    pid=$!
    echo "$pid" >"$state/moto.pid"
    # Wait for the port to accept connections (a TCP connect is not an API action).
    wait_for_port moto.sh "$pid" "$port" 300 "$state/moto.log" || exit 1
    # The three unauthenticated actions: user, access key, policy.
    "$PY" - "$port" >"$state/moto.env" <<'PYEOF'
import json, sys, boto3
port = sys.argv[1]
iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="envmount-test")
key = iam.create_access_key(UserName="envmount-test")["AccessKey"]
iam.put_user_policy(UserName="envmount-test", PolicyName="s3-all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
print(f"export AWS_ACCESS_KEY_ID={key['AccessKeyId']}")
print(f"export AWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}")
print(f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}")
PYEOF
    echo "MOTO_PID=$pid"
    sed 's/^export //' "$state/moto.env"
    ;;
stop)
    state=${2:?usage: moto.sh stop STATE_DIR|PORT}
    case "$state" in *[!0-9]*) ;; *) state=/tmp/envmount-moto-$state ;; esac
    stop_pidfile "$state/moto.pid"
    ;;
*)
    echo "usage: moto.sh start PORT [STATE_DIR] | stop STATE_DIR" >&2
    exit 2
    ;;
esac
