# Sourced, not run: turning a Debian 12 root tree (the testbed rootfs, or a hardened copy of
# it, with linux-image-amd64) into a QEMU guest. Used by vagrant/qemu-firstboot.sh,
# vagrant/vagrant-up.sh (the harnesses' shared start) and tests/testbed/scanners.sh (Lynis in a VM).
#
#   vm_args NAME ARGS...     parses --bin PATH and --keep into VM_BIN and VM_KEEP (exit 2 on
#                            anything else)
#   vm_skip NAME REASON      prints why NAME is skipped; exit 77, or 1 with
#                            BOLLWERK_REQUIRE_SYSTEM_TESTS=1
#   vm_lower REPO            builds or reuses the testbed rootfs (BOLLWERK_TESTBED_CACHE, default
#                            REPO/target/testbed) and extracts it once; sets VM_LOWER, 1 on failure
#   vm_bin REPO              VM_BIN, or the static musl release build (built when missing)
#   vm_inputs NAME REPO      vm_lower, vm_kernel and vm_bin, skipping NAME (vm_skip) when one fails
#   vm_detect_accel          sets VM_ACCEL (kvm|tcg; BOLLWERK_VM_ACCEL overrides) and the array
#                            VM_QEMU_ACCEL (qemu's -accel/-cpu arguments)
#   vm_prepare_root ROOT H   host name H, /etc/hosts, resolv.conf for QEMU's user network, an
#                            empty machine-id, a root line in /etc/fstab, networkd DHCP on en*/eth*
#   vm_kernel ROOT           sets VM_KERNEL and VM_INITRD (newest in ROOT/boot), 1 if none
#   vm_make_image ROOT IMG   a 4 GiB raw ext4 image (label root) with ROOT's tree, owners, xattrs

vm_args() {
    local name=$1; shift
    VM_BIN="" VM_KEEP=0
    while [ $# -gt 0 ]; do
        case $1 in
            --bin) VM_BIN=$2; shift 2 ;;
            --keep) VM_KEEP=1; shift ;;
            *) echo "usage: $name [--bin PATH] [--keep]" >&2; exit 2 ;;
        esac
    done
}

vm_skip() {
    echo "SKIPPED: $1: $2" >&2
    if [ "${BOLLWERK_REQUIRE_SYSTEM_TESTS:-0}" = 1 ]; then
        echo "FAIL: BOLLWERK_REQUIRE_SYSTEM_TESTS=1 and a prerequisite is missing" >&2
        exit 1
    fi
    exit 77
}

vm_lower() {
    local cache=${BOLLWERK_TESTBED_CACHE:-$1/target/testbed} tarball key tmp
    "$1/tests/testbed/build-rootfs.sh" "$cache" >&2 || return 1
    tarball=$(readlink -f "$cache/rootfs.tar.zst")
    key=$(basename "$tarball" .tar.zst); key=${key#rootfs-}
    VM_LOWER=$cache/lower-$key
    if [ ! -d "$VM_LOWER" ]; then
        tmp=$(mktemp -d "$cache/lower-tmp.XXXX")
        zstd -dc "$tarball" | tar -C "$tmp" --numeric-owner --xattrs --xattrs-include='*' -xf - \
            || { rm -rf "$tmp"; return 1; }
        mv "$tmp" "$VM_LOWER" 2>/dev/null || rm -rf "$tmp"
    fi
}

vm_bin() {
    if [ -z "$VM_BIN" ]; then
        VM_BIN=$1/target/x86_64-unknown-linux-musl/release/bollwerk
        if [ ! -x "$VM_BIN" ]; then
            (cd "$1" && CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release \
                --target x86_64-unknown-linux-musl >&2) || return 1
        fi
    fi
    [ -x "$VM_BIN" ]
}

vm_inputs() {
    vm_lower "$2" || vm_skip "$1" "the testbed rootfs could not be built or extracted"
    vm_kernel "$VM_LOWER" || vm_skip "$1" "the rootfs has no kernel (linux-image-amd64)"
    vm_bin "$2" || vm_skip "$1" "no bollwerk binary (${VM_BIN:-the static build failed})"
}

vm_detect_accel() {
    # KVM only where it really runs guests (not kvm_pvm, which has no vmx/svm).
    VM_ACCEL=${BOLLWERK_VM_ACCEL:-}
    if [ -z "$VM_ACCEL" ]; then
        VM_ACCEL=tcg
        if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && ! grep -qw kvm_pvm /proc/modules 2>/dev/null; then
            VM_ACCEL=kvm
        fi
    fi
    if [ "$VM_ACCEL" = kvm ]; then
        VM_QEMU_ACCEL=(-accel kvm -cpu host,-arch-capabilities)
    else
        VM_QEMU_ACCEL=(-accel tcg,thread=multi -cpu max)
    fi
}

vm_prepare_root() {
    local root=$1 name=$2
    echo "$name" > "$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$name" > "$root/etc/hosts"
    rm -f "$root/etc/resolv.conf"; echo 'nameserver 10.0.2.3' > "$root/etc/resolv.conf"
    : > "$root/etc/machine-id"
    # The root file system; lines a profile added (/dev/shm, /tmp) stay.
    if ! awk '$1 !~ /^#/ && $2 == "/" { found=1 } END { exit !found }' "$root/etc/fstab" 2>/dev/null; then
        { echo '/dev/vda / ext4 defaults 0 1'; grep -v '^# UNCONFIGURED FSTAB' "$root/etc/fstab" 2>/dev/null; } > "$root/etc/fstab.vm"
        mv "$root/etc/fstab.vm" "$root/etc/fstab"
    fi
    mkdir -p "$root/etc/systemd/network"
    printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n' > "$root/etc/systemd/network/80-dhcp.network"
}

vm_kernel() {
    VM_KERNEL=$(ls "$1"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
    VM_INITRD=$(ls "$1"/boot/initrd.img-* 2>/dev/null | sort -V | tail -1)
    [ -n "$VM_KERNEL" ] && [ -n "$VM_INITRD" ]
}

vm_make_image() {
    truncate -s 4G "$2" && mkfs.ext4 -q -F -L root -d "$1" "$2"
}
