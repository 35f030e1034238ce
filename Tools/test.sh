#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds, and runs every test (unit tests, real
# S3 and HTTP servers on 127.0.0.1, real FUSE mounts). Needs root for the FUSE tests.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ENVMOUNT_ROOT"
"$ENVMOUNT_ROOT/Tools/install-deps.sh"
swift build --build-tests
swift test --skip-build "$@"
# The packaged binaries (static Swift runtime, .deb) run with the toolchain hidden. Only for a
# whole-suite run: a static release build of both products takes a few minutes on 2 cores.
if [ $# -eq 0 ]; then
    "$ENVMOUNT_ROOT/Tools/package.sh"
    "$ENVMOUNT_ROOT/Tools/package-test.sh"
fi
