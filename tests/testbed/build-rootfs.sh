#!/usr/bin/env bash
# Build (or reuse) the Debian 12 testbed root filesystem used by bollwerk's system tests.
#
# Output: $CACHE/rootfs-<key>.tar.zst, where <key> hashes the package list and this script, plus a
# symlink $CACHE/rootfs.tar.zst to it. The mirror is read from this machine's apt sources at run
# time; no registry host name is written into the repository.
#
# Usage: tests/testbed/build-rootfs.sh [CACHE_DIR]   (default: $BOLLWERK_TESTBED_CACHE or target/testbed)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${BOLLWERK_TESTBED_CACHE:-$here/../../target/testbed}}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

packages=(
  systemd systemd-sysv dbus libpam-systemd udev openssh-server openssh-client sudo ufw nftables
  iptables fail2ban python3 python3-systemd unattended-upgrades logrotate postgresql-15
  postgresql-client-15 iproute2 procps kmod cron rsyslog ca-certificates e2fsprogs netbase
  libpam-pwquality cracklib-runtime pamtester apparmor apparmor-utils chrony- systemd-timesyncd at- aide aide-common auditd-
  linux-image-amd64 isc-dhcp-client- ifupdown- netcat-openbsd curl
)
# What the built-in hardening profiles install (issue 12: cis-level1-server's [tools] and
# [packages], cis-level2-server's auditd and accounting): downloaded into the root's apt cache,
# NOT installed, with the package lists kept, so `bollwerk apply` installs them from the root's
# own apt offline, as on a VPS whose lists and cache are warm. The fresh root stays fresh.
# docker.io and busybox-static: tests/docker_real_system.rs installs them offline in its copy
# (a real dockerd, and a container image made from busybox without any registry).
# cloud-init and cloud-guest-utils: vagrant/qemu-firstboot.sh installs them offline in its
# time-to-SSH image, to boot the same image and seed with cloud-init beside bollwerk (issue 13).
predownload=(
  needrestart debsums apt-show-versions apt-listchanges chkrootkit libpam-tmpdir
  systemd-journal-remote auditd audispd-plugins acct sysstat
  docker.io busybox-static
  cloud-init cloud-guest-utils
)
# Entries ending in "-" are documentation of what we deliberately leave out; strip them.
include=()
for p in "${packages[@]}"; do [[ $p == *- ]] || include+=("$p"); done

key=$( { printf '%s\n' "${include[@]}" "${predownload[@]}"; cat "$0"; } | sha256sum | cut -c1-16)
out="$cache/rootfs-$key.tar.zst"
if [[ -s $out ]]; then
  ln -sfn "$(basename "$out")" "$cache/rootfs.tar.zst"
  echo "testbed rootfs cached: $out"
  exit 0
fi

# Read the mirrors from the machine's own apt configuration (deb822 or one-line format).
mirror= secmirror=
while read -r uri suites; do
  case " $suites " in
    *" bookworm-security "*) secmirror=${secmirror:-$uri} ;;
    *" bookworm "*) mirror=${mirror:-$uri} ;;
  esac
done < <(
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -e $f ]] || continue
    awk 'BEGIN{RS=""} {u="";s=""; for(i=1;i<=NF;i++){ if($i=="URIs:") u=$(i+1); if($i=="Suites:"){ j=i+1; while(j<=NF && $j !~ /:$/){ s=s" "$j; j++ } } } if(u!="") print u, s}' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -e $f ]] || continue
    awk '$1=="deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } print $i, $(i+1) }' "$f"
  done
)
if [[ -z $mirror ]]; then
  echo "build-rootfs: no bookworm mirror found in /etc/apt/sources.list*" >&2
  exit 1
fi
secmirror=${secmirror:-$mirror}

tmp=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root="$tmp/root"
echo "building Debian 12 testbed rootfs from $mirror (this takes 2-3 minutes)"
mmdebstrap --variant=apt --mode=root \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --dpkgopt='path-exclude=/usr/share/{doc,man,info,locale}/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --include="$(IFS=,; echo "${include[*]}")" \
  --skip=cleanup/apt/lists --skip=cleanup/apt/cache \
  --customize-hook='chroot "$1" apt-get clean' \
  --customize-hook="chroot \"\$1\" apt-get install -q -y --download-only --no-install-recommends ${predownload[*]}" \
  bookworm "$root" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $secmirror bookworm-security main"

# The tree carries the build machine's identity: make it neutral. Tests and images regenerate these.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
echo testbed > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\ttestbed\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
rm -f "$root/etc/resolv.conf"

tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -cf - . | zstd -q -3 -T0 -o "$out.part"
mv "$out.part" "$out"
ln -sfn "$(basename "$out")" "$cache/rootfs.tar.zst"
echo "testbed rootfs built: $out"
