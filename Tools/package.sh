#!/usr/bin/env bash
# Builds envmount and envpublish as release binaries with the Swift runtime linked in
# (--static-swift-stdlib), so they run on a machine without a Swift toolchain, and writes
#   dist/envmount-<version>-linux-<arch>.tar.gz   bin/envmount, bin/envpublish, README.md
#   dist/envmount_<version>_<debarch>.deb          /usr/bin/envmount, /usr/bin/envpublish
# The version comes from Sources/EnvFormat/ProductVersion.swift (the one place it is written).
# Builds in .build-release, apart from the debug build in .build; a rebuild is incremental.
#   --no-strip   keep the symbol tables (about 17 MB more in envmount)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ENVMOUNT_ROOT"

STRIP=1
for a in "$@"; do
    case "$a" in
        --no-strip) STRIP=0 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "package.sh: unknown option $a" >&2; exit 2 ;;
    esac
done

VERSION=$(sed -n 's/.*static let version = "\(.*\)".*/\1/p' Sources/EnvFormat/ProductVersion.swift)
[ -n "$VERSION" ] || { echo "package.sh: no version in Sources/EnvFormat/ProductVersion.swift" >&2; exit 1; }
ARCH=$(uname -m)
DEBARCH=$(dpkg --print-architecture)
SCRATCH=.build-release
OUT=dist

# A plain `swift build --static-swift-stdlib` also builds the test support target, and XCTest
# has no static variant; so build each product on its own.
for product in envmount envpublish; do
    echo "package: building $product $VERSION (release, static Swift runtime)"
    swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH" --product "$product" 2>&1 \
        | grep -vE "warning: the use of .mktemp' is dangerous|^\[[0-9]+/[0-9]+\]" || true
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "package.sh: building $product failed" >&2; exit 1; }
done
BIN=$(swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH" --show-bin-path)

rm -rf "$OUT/stage"
mkdir -p "$OUT/stage"
TAR_DIR="$OUT/stage/envmount-$VERSION-linux-$ARCH"
mkdir -p "$TAR_DIR/bin"
for product in envmount envpublish; do
    install -m 0755 "$BIN/$product" "$TAR_DIR/bin/$product"
    [ "$STRIP" = 1 ] && strip --strip-all "$TAR_DIR/bin/$product"
    if ldd "$TAR_DIR/bin/$product" | grep -i swift >/dev/null; then
        echo "package.sh: $product still links a Swift library:" >&2
        ldd "$TAR_DIR/bin/$product" | grep -i swift >&2
        exit 1
    fi
done
install -m 0644 README.md "$TAR_DIR/README.md"
TARBALL="$OUT/envmount-$VERSION-linux-$ARCH.tar.gz"
tar -C "$OUT/stage" --owner=0 --group=0 -czf "$TARBALL" "envmount-$VERSION-linux-$ARCH"

# The .deb depends only on the shared libraries the binaries load (libfuse3 is loaded by
# envmount, fusermount3 comes from fuse3); each has its Ubuntu 24.04 t64 name as an alternative.
DEB_DIR="$OUT/stage/deb"
mkdir -p "$DEB_DIR/DEBIAN" "$DEB_DIR/usr/bin" "$DEB_DIR/usr/share/doc/envmount"
install -m 0755 "$TAR_DIR/bin/envmount" "$TAR_DIR/bin/envpublish" "$DEB_DIR/usr/bin/"
install -m 0644 README.md "$DEB_DIR/usr/share/doc/envmount/README.md"
SIZE_KB=$(du -sk "$DEB_DIR/usr" | cut -f1)
cat > "$DEB_DIR/DEBIAN/control" <<EOF
Package: envmount
Version: $VERSION
Architecture: $DEBARCH
Maintainer: envmount developers <envmount@localhost>
Installed-Size: $SIZE_KB
Depends: fuse3, libfuse3-3 | libfuse3-4, libcurl4 | libcurl4t64, libzstd1, libssl3 | libssl3t64
Section: utils
Priority: optional
Description: mount published Python environments lazily over FUSE
 envpublish splits a Python venv into content-addressed zstd chunks in a store
 (a directory, S3, R2, or plain HTTP); envmount mounts it at once and fetches
 each chunk on first read, verified by SHA-256 and kept in a local cache.
EOF
DEB="$OUT/envmount_${VERSION}_$DEBARCH.deb"
dpkg-deb -Zzstd -z9 --root-owner-group --build "$DEB_DIR" "$DEB" >/dev/null
rm -rf "$OUT/stage"

size() { stat -c %s "$1" | awk '{ printf "%.1f MB", $1 / 1e6 }'; }
tmp=$(mktemp -d)
tar -C "$tmp" -xzf "$TARBALL"
for product in envmount envpublish; do
    echo "package: $product $(size "$tmp/envmount-$VERSION-linux-$ARCH/bin/$product")$([ "$STRIP" = 1 ] && echo " stripped ($(size "$BIN/$product") unstripped)")"
done
rm -rf "$tmp"
echo "package: $TARBALL $(size "$TARBALL")"
echo "package: $DEB $(size "$DEB")"
