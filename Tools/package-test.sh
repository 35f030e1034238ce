#!/usr/bin/env bash
# Tests what Tools/package.sh wrote, as a machine without Swift would run it: in a private
# mount namespace where the toolchain directory is hidden under an empty tmpfs, the packaged
# envpublish publishes a venv to a directory store, the packaged envmount mounts it, and the
# venv's Python imports a package from the mount. Also checks `--version`, the tarball's and the
# .deb's contents, and that every shared library the binaries need comes from a package in the
# .deb's Depends (or from libc6, libgcc-s1, libstdc++6, which every Debian/Ubuntu has), and that
# neither binary carries Foundation's ICU.
# Needs root (unshare, FUSE). Prints the start-up time of `envmount --version`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ENVMOUNT_ROOT"

fail() { echo "package-test: FAIL: $*" >&2; exit 1; }
VERSION=$(sed -n 's/.*static let version = "\(.*\)".*/\1/p' Sources/EnvFormat/ProductVersion.swift)
FORMAT=$(sed -n 's/.*static let formatVersion: UInt32 = \([0-9]*\).*/\1/p' Sources/EnvFormat/Manifest.swift)
ARCH=$(uname -m)
TARBALL="dist/envmount-$VERSION-linux-$ARCH.tar.gz"
DEB="dist/envmount_${VERSION}_$(dpkg --print-architecture).deb"
[ -f "$TARBALL" ] && [ -f "$DEB" ] || fail "run Tools/package.sh first ($TARBALL, $DEB missing)"
[ "$(id -u)" = 0 ] || fail "needs root (unshare -m, FUSE mounts)"

TOOLCHAIN=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")
WORK=$(mktemp -d /tmp/envmount-package-test.XXXXXX)
cleanup() {
    fusermount3 -u -z "$WORK/mnt" 2>/dev/null || true
    [ -f "$WORK/daemon.pid" ] && kill "$(cat "$WORK/daemon.pid")" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Contents.
tar -C "$WORK" -xzf "$TARBALL"
PKG="$WORK/envmount-$VERSION-linux-$ARCH"
for f in bin/envmount bin/envpublish README.md; do [ -f "$PKG/$f" ] || fail "$TARBALL lacks $f"; done
mkdir -p "$WORK/deb"
dpkg-deb -x "$DEB" "$WORK/deb"
for f in usr/bin/envmount usr/bin/envpublish usr/share/doc/envmount/README.md; do [ -f "$WORK/deb/$f" ] || fail "$DEB lacks $f"; done
# No swift-corelibs Foundation, so no ICU: its data and code were ~45 MB of a 83 MB envmount,
# paged in on every cold start (issue 11). The ICU data table is named icudt<version>, and
# CoreFoundation's run loop comes with Foundation; neither string is in a binary without them.
for bin in envmount envpublish; do
    for marker in icudt CFRunLoop; do
        ! grep -a -q "$marker" "$PKG/bin/$bin" \
            || fail "$bin contains '$marker': something imports Foundation again (use FoundationEssentials; see README, Packaging)"
    done
done
# libcurl is loaded on first use (Sources/CCurl): linked, its ~25 libraries would load on every
# cold start of every command (~27 ms here). The .deb still depends on libcurl4 for HTTP/S3.
for bin in envmount envpublish; do
    ! objdump -p "$PKG/bin/$bin" | grep -q 'NEEDED.*libcurl' \
        || fail "$bin links libcurl: it must be loaded on first use (ccurl_load), not at exec"
done
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
echo "package-test: Depends: $DEPENDS"

# Every NEEDED library comes from a package the .deb depends on, or from the base system.
for bin in envmount envpublish; do
    for lib in $(objdump -p "$PKG/bin/$bin" | awk '/NEEDED/ { print $2 }'); do
        case "$lib" in *swift*|*Foundation*|*dispatch*|*BlocksRuntime*) fail "$bin needs $lib from the Swift toolchain" ;; esac
        # awk reads to the end: an early exit would kill ldconfig with SIGPIPE, fatal under pipefail.
        path=$(ldconfig -p | awk -v l="$lib" '$1 == l && p == "" { p = $NF } END { print p }')
        [ -n "$path" ] || fail "$bin needs $lib, which this machine lacks"
        pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1) || true
        [ -n "$pkg" ] || pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1) || true
        case "$pkg" in
            libc6|libgcc-s1|libstdc++6) ;;
            "") fail "no package owns $path ($lib, needed by $bin)" ;;
            *) echo "$DEPENDS" | tr ',|' '\n\n' | sed 's/ //g; s/(.*//' | grep -x "$pkg" >/dev/null \
                   || fail "$bin needs $lib from $pkg, which is not in Depends: $DEPENDS" ;;
        esac
    done
done

# A venv with a package of its own, built outside the namespace with this machine's python3.
python3 -m venv --without-pip "$WORK/venv"
SITE=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$SITE/packaged_probe"
echo 'ANSWER = 42' > "$SITE/packaged_probe/__init__.py"
mkdir -p "$WORK/mnt"

# Everything below runs with the toolchain hidden.
unshare -m --propagation private bash -euo pipefail -s "$TOOLCHAIN" "$PKG" "$WORK" "$VERSION" "$FORMAT" <<'EOS'
TOOLCHAIN=$1 PKG=$2 WORK=$3 VERSION=$4 FORMAT=$5
mount -t tmpfs none "$TOOLCHAIN"
[ -z "$(ls -A "$TOOLCHAIN")" ] || { echo "package-test: FAIL: $TOOLCHAIN is not hidden" >&2; exit 1; }
if command -v swift >/dev/null 2>&1 && swift --version >/dev/null 2>&1; then
    echo "package-test: FAIL: swift still runs with $TOOLCHAIN hidden" >&2; exit 1
fi
check_version() {
    local out
    out=$("$1" --version)
    [ "$out" = "$2 $VERSION (store format $FORMAT)" ] || { echo "package-test: FAIL: $1 --version printed '$out'" >&2; exit 1; }
    echo "package-test: $out"
}
check_version "$PKG/bin/envmount" envmount
check_version "$PKG/bin/envpublish" envpublish
check_version "$WORK/deb/usr/bin/envmount" envmount
check_version "$WORK/deb/usr/bin/envpublish" envpublish

"$PKG/bin/envpublish" "$WORK/venv" "$WORK/store" --env probe --quiet
out=$("$PKG/bin/envmount" mount "$WORK/store" "$WORK/mnt" --env probe --cache-dir "$WORK/cache")
echo "package-test: $out"
echo "$out" | sed -n 's/.*pid \([0-9]*\).*/\1/p' > "$WORK/daemon.pid"
answer=$("$WORK/mnt/bin/python" -c 'import sys, packaged_probe; assert sys.prefix == sys.argv[1], sys.prefix; print(packaged_probe.ANSWER)' "$WORK/mnt")
[ "$answer" = 42 ] || { echo "package-test: FAIL: the mounted venv's python printed '$answer'" >&2; exit 1; }
echo "package-test: $WORK/mnt/bin/python imported packaged_probe from the mount"
"$PKG/bin/envmount" status "$WORK/mnt" | sed 's/^/package-test:   /'
"$PKG/bin/envmount" unmount "$WORK/mnt"

# Start-up time of `envmount --version`, 50 runs.
start=$(date +%s%N)
for _ in $(seq 50); do "$PKG/bin/envmount" --version >/dev/null; done
end=$(date +%s%N)
echo "package-test: envmount --version: $(( (end - start) / 50000 )) us per run (mean of 50)"
EOS
echo "package-test: $(stat -c %s "$PKG/bin/envmount" | awk '{ printf "%.1f", $1/1e6 }') MB envmount, $(stat -c %s "$PKG/bin/envpublish" | awk '{ printf "%.1f", $1/1e6 }') MB envpublish, $(stat -c %s "$TARBALL" | awk '{ printf "%.1f", $1/1e6 }') MB tarball, $(stat -c %s "$DEB" | awk '{ printf "%.1f", $1/1e6 }') MB .deb"
echo "package-test: OK"
