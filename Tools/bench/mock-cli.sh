#!/usr/bin/env bash
# A stand-in for envpublish/envmount with the same command-line contract, built on
# squashfs + squashfuse (a real FUSE mount), to test the benchmark scripts without the
# Swift CLIs and to give a reference point. Not envmount: its numbers are squashfuse's.
#   ENVPUBLISH="Tools/bench/mock-cli.sh publish" ENVMOUNT="Tools/bench/mock-cli.sh" \
#     SKIP_BUILD=1 Tools/bench/bench-local.sh
#   mock-cli.sh publish SOURCE STORE [--env NAME]
#   mock-cli.sh mount STORE MOUNTPOINT [--env NAME] [--cache-dir DIR]
#   mock-cli.sh unmount MOUNTPOINT
set -euo pipefail
for c in squashfuse mksquashfs; do
  command -v $c >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q squashfuse squashfs-tools >/dev/null
done
cmd=$1; shift
pos=()
while [ $# -gt 0 ]; do
  case "$1" in --env|--cache-dir) shift 2 ;; *) pos+=("$1"); shift ;; esac
done
case "$cmd" in
  publish)
    mkdir -p "${pos[1]}"
    mksquashfs "${pos[0]}" "${pos[1]}/image.sqfs" -comp zstd -Xcompression-level 3 -b 1M -noappend -quiet
    echo "published ${pos[0]} -> ${pos[1]}/image.sqfs ($(stat -c %s "${pos[1]}/image.sqfs") bytes)" ;;
  mount)
    mnt=${pos[1]}
    mkdir -p "$mnt"
    setsid squashfuse -f -o ro "${pos[0]}/image.sqfs" "$mnt" </dev/null >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do
      [ "$(stat -f -c %t "$mnt")" = 65735546 ] && { echo "mounted $mnt, pid $pid"; exit 0; }
      kill -0 "$pid" 2>/dev/null || { echo "squashfuse exited" >&2; exit 1; }
      sleep 0.05
    done
    echo "mount did not answer" >&2; exit 1 ;;
  unmount) fusermount3 -u "${pos[0]}" ;;
  *) echo "usage: $0 publish|mount|unmount ..." >&2; exit 2 ;;
esac
