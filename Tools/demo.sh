#!/usr/bin/env bash
# End to end on the embedded default, a local directory store: build envmount, make a small
# venv, publish it, mount it, run its python from the mount, show what was fetched, unmount.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ENVMOUNT_ROOT"
"$ENVMOUNT_ROOT/Tools/install-deps.sh"
echo "== building envmount (release)"
swift build -c release 2>&1 | tail -n 1
BIN="$ENVMOUNT_ROOT/.build/release"

WORK="${DEMO_DIR:-/tmp/envmount-demo}"
SRC="$WORK/src/demo-venv" STORE="$WORK/store" MNT="$WORK/mnt" CACHE="$WORK/cache"
mkdir -p "$WORK/src" "$MNT"
cleanup() { mountpoint -q "$MNT" 2>/dev/null && "$BIN/envmount" unmount "$MNT" || true; }
trap cleanup EXIT

if [ ! -x "$SRC/bin/python" ]; then
    echo "== creating a venv at $SRC"
    python3 -m venv "$SRC"
    "$SRC/bin/pip" install -q --disable-pip-version-check six packaging </dev/null \
        || echo "(pip could not reach PyPI; the venv keeps only the standard library)"
fi
echo "== source: $(du -sh "$SRC" | cut -f1), $(find "$SRC" | wc -l) entries"

echo "== envpublish $SRC $STORE"
"$BIN/envpublish" "$SRC" "$STORE"
echo "== store: $(du -sh "$STORE" | cut -f1)"

echo "== envmount mount $STORE $MNT (empty cache)"
rm -rf "$CACHE"
"$BIN/envmount" mount "$STORE" "$MNT" --cache-dir "$CACHE"

echo "== running the venv's python from the mount"
"$MNT/bin/python" - <<'PY'
import sys, json, importlib.util
mods = [m for m in ("six", "packaging.version") if importlib.util.find_spec(m.split(".")[0])]
for m in mods: __import__(m)
print(json.dumps({"prefix": sys.prefix, "version": sys.version.split()[0], "imported": mods}))
PY

echo "== envmount status $MNT"
"$BIN/envmount" status "$MNT"

echo "== envmount unmount $MNT"
"$BIN/envmount" unmount "$MNT"
for _ in $(seq 50); do grep -q "unmounted $MNT" "$CACHE/logs/demo-venv.log" 2>/dev/null && break; sleep 0.1; done
echo "== what the mount fetched:"
grep "unmounted $MNT" "$CACHE/logs/demo-venv.log" | tail -n 1 | sed 's/^.*unmounted [^:]*: /  /'
echo "== cache: $(du -sh "$CACHE/v1/chunks" | cut -f1) in $(find "$CACHE/v1/chunks" -type f | wc -l) chunks"
