#!/usr/bin/env bash
# Installs what envmount needs to build, test and run on Debian 12 (run as root). Idempotent:
# a machine that has everything pays only the checks.
set -euo pipefail

need_apt=()
for pkg in fuse3 libfuse3-dev libcurl4-openssl-dev libzstd-dev zstd nginx squid openssl pkg-config libssl-dev python3 python3-venv curl binutils; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "install-deps: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The S3-protocol test server (moto) and boto3 to configure it, from PyPI.
if ! python3 -c 'import moto.server, boto3, flask' >/dev/null 2>&1; then
    echo "install-deps: pip install moto[server]"
    python3 -m pip install -q --disable-pip-version-check 'moto[server]>=5' boto3 </dev/null
fi

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
    echo "install-deps: Swift is at /opt/swift/usr/bin; add it to PATH" >&2
fi
[ -e /dev/fuse ] || echo "install-deps: warning: /dev/fuse is missing; mounts will fail" >&2
