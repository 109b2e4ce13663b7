#!/usr/bin/env bash
# Remove what crashed or killed system-test processes left behind: overlay mounts and instance
# dirs under $CACHE/run/, bw-<pid>-<n> network namespaces and bw-<pid>-… container cgroups
# (every process in them killed), whose test process is gone.
# (The harness does the same on the first Testbed::acquire() of every test process; this script is
# for doing it by hand.) With --all, also entries of processes that still run: only use that when
# no system test is running.
#
# Usage: tests/testbed/cleanup.sh [--all] [CACHE_DIR]
#   (default CACHE_DIR: $BOLLWERK_TESTBED_CACHE or target/testbed)
set -euo pipefail

all=0
if [[ ${1:-} == --all ]]; then all=1; shift; fi
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${BOLLWERK_TESTBED_CACHE:-$here/../../target/testbed}}

stale() { # $1 = "<pid>-<n>"
  local pid=${1%%-*}
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  ((all)) || [[ ! -e /proc/$pid ]]
}

for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
  [[ $ns == bw-* ]] || continue
  if stale "${ns#bw-}"; then
    # Kill whatever still runs in it (processes of the harness are normally gone already).
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" && echo "deleted netns $ns"
  fi
done

# Containers a killed test booted (docker_real_system): their PID 1 outlives systemd-nspawn.
for cg in /sys/fs/cgroup/unified/bw-* /sys/fs/cgroup/bw-*; do
  [[ -e $cg/cgroup.kill ]] || continue
  name=$(basename "$cg")
  stale "${name#bw-}" || continue
  echo 1 > "$cg/cgroup.kill" || true
  sleep 0.5
  find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  echo "killed and removed cgroup $name"
done

if [[ -d $cache/run ]]; then
  for d in "$cache"/run/*/; do
    d=${d%/}
    [[ -d $d ]] || continue
    stale "$(basename "$d")" || continue
    if mountpoint -q "$d/root"; then
      umount "$d/root" 2>/dev/null || umount -l "$d/root"
    fi
    if mountpoint -q "$d/root"; then
      echo "still mounted, left alone: $d/root" >&2
      continue
    fi
    rm -rf --one-file-system "$d" && echo "removed $d"
  done
fi
