#!/bin/bash
# Host tools for the VM harnesses: QEMU (TCG), a NoCloud seed builder and ext4 tools for
# vagrant/qemu-firstboot.sh; Vagrant with vagrant-libvirt and libvirt's daemon (used only in
# session mode, qemu:///session, by vagrant/vagrant-up.sh; no system daemon is started) for the
# Vagrant harness. Idempotent. On Debian 12 hosts where qemu-utils comes from
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
# Vagrant + vagrant-libvirt (vagrant/vagrant-up.sh) only when asked (tests/run-all.sh asks).
if [ "${BOLLWERK_WITH_VAGRANT:-0}" = 1 ]; then
    command -v vagrant >/dev/null || need+=(vagrant)
    [ -d /usr/share/rubygems-integration/all/gems ] && ls -d /usr/share/rubygems-integration/all/gems/vagrant-libvirt-* >/dev/null 2>&1 \
        || need+=(vagrant-libvirt)
    command -v libvirtd >/dev/null || need+=(libvirt-daemon)
    [ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ] || need+=(libvirt-daemon-driver-qemu)
    command -v virsh >/dev/null || need+=(libvirt-clients)
    command -v qemu-img >/dev/null || need+=(qemu-utils)
    command -v setpriv >/dev/null || need+=(util-linux)
fi
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
