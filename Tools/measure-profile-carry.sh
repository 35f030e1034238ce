#!/bin/bash
# Measures a carried profile against a freshly recorded one on a real venv where one package is
# upgraded between revisions 1 and 2 (wheels already on the machine, no network):
#   rev 1: venv (pyenv 3.11.7) with pip 23.2.1 + setuptools 65.5.0; record profile `rec` of WORK
#   rev 2: UPGRADE installed (default setuptools 66.1.1; e.g. UPGRADE=<pip-24.2 wheel>),
#          republished (carries `rec`); record `fresh` on rev 2
# and prints chunks, stored bytes and the overlap of the two.
# Usage: Tools/measure-profile-carry.sh [WORKDIR] [BINDIR]   (root, /dev/fuse)
set -euo pipefail
W=${1:-/tmp/envmount-carry-measure}
BIN=${2:-$(pwd)/.build/debug}
PY=${PYTHON:-/root/.pyenv/versions/3.11.7/bin/python3}
UPGRADE=${UPGRADE:-/usr/share/python-wheels/setuptools-66.1.1-py3-none-any.whl}
WORK=${WORK:-'import setuptools, pkg_resources, pip._internal.cli.main, json, email.mime.text'}
rm -rf "$W"; mkdir -p "$W"
"$PY" -m venv "$W/src/venv"
V="$W/src/venv"
"$V/bin/python" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null | paste -sd' ' | sed 's/^/rev 1: /'
"$BIN/envpublish" "$V" "$W/store" --quiet --no-record
record() {  # record REV NAME: fresh cache, no read-ahead, run WORK, save profile NAME
    mkdir -p "$W/mnt"
    "$BIN/envmount" mount "$W/store" "$W/mnt" --cache-dir "$W/cache-$2" --read-ahead-chunks 0 --stream-read-ahead 0 >/dev/null
    "$W/mnt/bin/python" -W ignore -c "$WORK"
    "$BIN/envmount" profile save "$W/mnt" "$2"
    "$BIN/envmount" unmount "$W/mnt" >/dev/null
}
record 1 rec
"$V/bin/python" -m pip install --no-index --no-deps --disable-pip-version-check -q "$UPGRADE"
"$V/bin/python" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null | paste -sd' ' | sed 's/^/rev 2: /'
"$BIN/envpublish" "$V" "$W/store" --quiet --no-record
record 2 fresh
"$PY" - "$W/store" <<'PY'
import os, sys
store = sys.argv[1]
m = open(f"{store}/refs/venv").read().split("\n")[1].split()[1]
def load(name):
    lines = open(f"{store}/profiles/venv/{m}/{name}").read().split("\n")
    return [l for l in lines[2:] if l]
def stored(ids): return sum(os.path.getsize(f"{store}/chunks/{c[:2]}/{c}") for c in ids)
carried, fresh = load("rec"), load("fresh")
both = set(carried) & set(fresh)
mib = lambda b: f"{b / 1048576:.2f} MiB"
print(f"fresh profile on rev 2:   {len(fresh)} chunks, {mib(stored(fresh))} stored")
print(f"carried from rev 1:       {len(carried)} chunks, {mib(stored(carried))} stored")
print(f"fresh chunks the carried profile holds: {len(both)}/{len(fresh)} "
      f"({100 * len(both) / max(1, len(fresh)):.1f} % of chunks, {100 * stored(both) / max(1, stored(fresh)):.1f} % of bytes)")
print(f"carried chunks the fresh run did not read: {len(set(carried) - both)} ({mib(stored(set(carried) - both))})")
PY
