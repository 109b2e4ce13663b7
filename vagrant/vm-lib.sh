# Sourced, not run: turning a Debian 12 root tree (the testbed rootfs, or a hardened copy of
# it, with linux-image-amd64) into a QEMU guest. Used by vagrant/qemu-firstboot.sh and
# tests/testbed/scanners.sh (Lynis in a VM).
#
#   vm_detect_accel          sets VM_ACCEL (kvm|tcg; BOLLWERK_VM_ACCEL overrides) and the array
#                            VM_QEMU_ACCEL (qemu's -accel/-cpu arguments)
#   vm_prepare_root ROOT H   host name H, /etc/hosts, resolv.conf for QEMU's user network, an
#                            empty machine-id, a root line in /etc/fstab, networkd DHCP on en*/eth*
#   vm_kernel ROOT           sets VM_KERNEL and VM_INITRD (newest in ROOT/boot), 1 if none
#   vm_make_image ROOT IMG   a 4 GiB raw ext4 image (label root) with ROOT's tree, owners, xattrs

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
