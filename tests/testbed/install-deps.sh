#!/usr/bin/env bash
# Install the host tools bollwerk's system tests need (Debian 12 host, as root). Idempotent: does
# nothing when everything is already installed, so CI can call it on every run.
#
# Usage: tests/testbed/install-deps.sh
set -euo pipefail

packages=(
  mmdebstrap arch-test  # build-rootfs.sh
  zstd tar              # tarball extraction
  util-linux mount      # unshare, nsenter, setpriv, mount
  coreutils             # chroot
  iproute2              # ip netns
  openssh-client        # ssh, ssh-keygen (the test's client side)
  sshpass               # password-login attempts
  systemd-container     # systemd-nspawn (LXC-like tests)
  musl-tools            # static release build (ring's C code)
  file                  # checks the static build
  time                  # GNU time: the benchmarks' peak RSS of one process (tests/common/bench.rs)
  openssl               # local HTTPS server for the key-fetch test
  chromium              # headless rendering of the audit's HTML report
  ansible ansible-lint  # fleet: the Ansible collection's system test and lint (issue 15)
  binutils              # strip: the fleet SSH test ships a stripped binary to its containers
  openscap-scanner xz-utils curl python3  # scanners.sh: OpenSCAP against a root (issue 12)
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
  [[ $status == ii* ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "testbed dependencies: all installed"
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "install-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
echo "testbed dependencies: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
dpkg --configure -a  # some images ship half-configured packages
apt-get -o DPkg::Lock::Timeout=300 update -q
apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
