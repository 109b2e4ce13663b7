#!/bin/bash
# Host tools for the QEMU first-boot harness (vagrant/qemu-firstboot.sh): QEMU (TCG), a NoCloud
# seed builder, ext4 tools. Idempotent. On Debian 12 hosts where qemu-utils comes from
# bookworm-backports, qemu-system-x86 must come from there too: the backports suite is added with
# the same mirror as the machine's own Debian sources (read at run time, never hard-coded).
set -euo pipefail
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cloud-localds >/dev/null || need+=(cloud-image-utils)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v debugfs >/dev/null || need+=(e2fsprogs)
command -v ssh >/dev/null || need+=(openssh-client)
command -v sshpass >/dev/null || need+=(sshpass)
command -v zstd >/dev/null || need+=(zstd)
command -v gpg >/dev/null || need+=(gpg)   # signs the test apt repository (scenarios 5, 6)
[ ${#need[@]} -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "$@"; }
apt-get -o DPkg::Lock::Timeout=300 update -qq
if ! apt_install "${need[@]}"; then
    # qemu-utils from backports breaks qemu-system-common 7.2: take QEMU from backports as well.
    src=/etc/apt/sources.list.d/debian.sources
    mirror=$(awk '/^URIs:/ {print $2; exit}' "$src")
    [ -n "$mirror" ] || { echo "install-deps: no mirror in $src" >&2; exit 1; }
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" > /etc/apt/sources.list.d/bollwerk-backports.sources
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt_install -t bookworm-backports "${need[@]}"
fi
