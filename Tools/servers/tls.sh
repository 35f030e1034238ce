#!/usr/bin/env bash
# tls.sh — a throwaway certificate authority and a server certificate for 127.0.0.1, made with
# the openssl CLI, for TLS tests (nginx.sh serves with them when NGINX_TLS_CERT/KEY are set).
#
#   tls.sh make DIR    writes, under DIR (created; keys 0600):
#                        ca.pem, ca.key          the test CA (CA:TRUE, 2 days)
#                        server.pem, server.key  a server certificate signed by it,
#                                                SAN IP:127.0.0.1 and DNS:localhost
#                        other-ca.pem            an unrelated CA, to test a wrong bundle
#                      and prints TLS_CA=…, TLS_CERT=…, TLS_KEY=…, TLS_OTHER_CA=… one per line.
# EC P-256 keys: quick to make, and every TLS stack accepts them.
set -euo pipefail

make_ca() {  # make_ca PREFIX CN
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$1.key" -out "$1.pem" -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

case "${1:-}" in
make)
    dir=${2:?usage: tls.sh make DIR}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    umask 077
    make_ca "$dir/ca" "envmount test CA $$"
    make_ca "$dir/other-ca" "envmount unrelated CA $$"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 2 -out "$dir/server.pem" -extfile "$dir/server.ext" 2>/dev/null
    chmod 0644 "$dir"/*.pem
    openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null
    echo "TLS_CA=$dir/ca.pem"
    echo "TLS_CERT=$dir/server.pem"
    echo "TLS_KEY=$dir/server.key"
    echo "TLS_OTHER_CA=$dir/other-ca.pem"
    ;;
*)
    echo "usage: tls.sh make DIR" >&2
    exit 2
    ;;
esac
