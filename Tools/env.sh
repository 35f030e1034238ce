# Sourced by the Tools scripts: PATH with Swift, and the repository root.
ENVMOUNT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! command -v swift >/dev/null 2>&1; then
    for d in /opt/swift/usr/bin /opt/swift/bin; do [ -x "$d/swift" ] && PATH="$d:$PATH"; done
fi
export PATH ENVMOUNT_ROOT
