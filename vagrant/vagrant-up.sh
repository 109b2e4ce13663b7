#!/bin/bash
# Vagrant harness: `vagrant up` and `vagrant destroy` of vagrant/Vagrantfile against a local box,
# proven from outside.
#
# 1. Builds a libvirt box from the testbed rootfs (tests/testbed/build-rootfs.sh, with
#    linux-image-amd64), no download: box.img (qcow2 of an ext4 root), metadata.json, a box
#    Vagrantfile that boots the box's own kernel and initrd, a `vagrant` user with sudo and a
#    key made for this run, SSH host keys generated on each VM's first boot.
# 2. Runs Vagrant (Debian's vagrant + vagrant-libvirt) as an unprivileged user against libvirt's
#    session daemon (qemu:///session) with QEMU user-mode networking: no bridge, no NAT rules,
#    no libvirt network on this machine; the guest's SSH is forwarded to a free 127.0.0.1 port,
#    and restrict=on keeps the guest off every other network. TCG unless KVM really runs guests.
# 3. `vagrant up local`: the Vagrantfile's provisioners upload the static binary and apply
#    vagrant/profile.toml (plus a second, idempotent apply).
# 4. From outside: key login as the profile's admin (vagrant); password login refused;
#    `bollwerk plan` has nothing left to do; `bollwerk audit --format json` in the guest: every
#    check the profile covers passes.
# 5. `vagrant destroy -f`: no domain is left, and no volume but the box's base image (removed
#    with the box); the session daemon is stopped.
#
# Usage: vagrant/vagrant-up.sh [--bin PATH] [--keep]
#   --bin PATH  the bollwerk binary for the guest (default: the static musl release build)
#   --keep      keep the work directory (box, serial log, Vagrant's data)
# Env: BOLLWERK_TESTBED_CACHE (default target/testbed), BOLLWERK_REQUIRE_SYSTEM_TESTS=1 (a missing
#      prerequisite fails instead of skipping), BOLLWERK_VM_ACCEL (tcg|kvm, default: detected),
#      BOLLWERK_VAGRANT_USER (unprivileged user that runs Vagrant and libvirt, default nobody).
# Exit: 0 all passed, 1 a check failed, 77 skipped (prerequisite missing).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/vm-lib.sh"
vm_args "$0" "$@"
skip() { vm_skip vagrant-up "$*"; }

[ "$(id -u)" = 0 ] || skip "needs root (overlay mount, mkfs.ext4 -d with owners, running Vagrant as another user)"
for t in vagrant virsh qemu-system-x86_64 qemu-img mkfs.ext4 setpriv ssh ssh-keygen sshpass python3 zstd tar; do
    command -v "$t" >/dev/null || skip "$t is not installed (run vagrant/install-deps.sh)"
done
vagrant plugin list 2>/dev/null | grep -q '^vagrant-libvirt' || skip "the vagrant-libvirt plugin is not installed (run vagrant/install-deps.sh)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || skip "no overlayfs"
vuser=${BOLLWERK_VAGRANT_USER:-nobody}
id "$vuser" >/dev/null 2>&1 || skip "no user $vuser to run Vagrant and the libvirt session daemon as"
vgroup=$(id -gn "$vuser")

vm_inputs vagrant-up "$repo"
lower=$VM_LOWER kernel=$VM_KERNEL initrd=$VM_INITRD bin=$VM_BIN keep=$VM_KEEP

# KVM only where it really runs guests (not kvm_pvm, which has no vmx/svm), and only when the
# unprivileged user may open /dev/kvm.
accel=${BOLLWERK_VM_ACCEL:-}
if [ -z "$accel" ]; then
    accel=tcg
    if grep -qwE 'vmx|svm' /proc/cpuinfo && ! grep -qw kvm_pvm /proc/modules 2>/dev/null \
        && setpriv --reuid="$vuser" --regid="$vgroup" --clear-groups test -w /dev/kvm 2>/dev/null; then
        accel=kvm
    fi
fi
if [ "$accel" = kvm ]; then driver=kvm; else driver=qemu; fi

work=$(mktemp -d /tmp/bollwerk-vagrant.XXXX)   # short: libvirt's socket paths live below it
chmod 0755 "$work"
mnt=$work/merged
box_name=bollwerk/debian12-local
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
daemon_pids=()
as_user() { # runs a command as $vuser with Vagrant's and libvirt's state inside $work
    (cd "$work" && setpriv --reuid="$vuser" --regid="$vgroup" --clear-groups \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME="$work/home" \
        XDG_RUNTIME_DIR="$work/run" XDG_CONFIG_HOME="$work/c" \
        XDG_CACHE_HOME="$work/home/.cache" XDG_DATA_HOME="$work/home/.local/share" \
        LIBVIRT_DEFAULT_URI=qemu:///session VAGRANT_HOME="$work/vagrant.d" \
        VAGRANT_DOTFILE_PATH="$work/dot" VAGRANT_CWD="$here" VAGRANT_DEFAULT_PROVIDER=libvirt \
        VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1 \
        BOLLWERK_BIN="$work/bollwerk" BOLLWERK_VAGRANT_BOX="$box_name" \
        BOLLWERK_VAGRANT_SSH_PORT="$port" BOLLWERK_VAGRANT_KEY="$work/key" \
        BOLLWERK_VAGRANT_DRIVER="$driver" BOLLWERK_VAGRANT_SERIAL_LOG="$work/home/serial.log" \
        "$@")
}
stop_daemons() { # what this run's session libvirt started (daemons, QEMU), by the PIDs it wrote
    local f p
    while IFS= read -r f; do
        p=$(cat "$f" 2>/dev/null) || continue
        case $p in ''|*[!0-9]*) continue ;; esac
        [ "$(ps -o user= -p "$p" 2>/dev/null | tr -d ' ')" = "$vuser" ] || continue
        kill -9 "$p" 2>/dev/null && daemon_pids+=("$p")
    done < <(find "$work/run" -name '*.pid' 2>/dev/null)
}
cleanup() {
    if [ -d "$work/dot" ] && [ "${destroyed:-0}" = 0 ]; then
        timeout 300 as_user vagrant destroy -f >/dev/null 2>&1
    fi
    stop_daemons
    mountpoint -q "$mnt" && umount "$mnt"
    if [ "$keep" = 1 ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

# ---------------------------------------------------------------------------------------------
# The box
# ---------------------------------------------------------------------------------------------
t0=$(now)
ssh-keygen -q -t ed25519 -N '' -C bollwerk-vagrant-test -f "$work/key"
install -m 0755 "$bin" "$work/bollwerk"
mkdir -p "$work/upper" "$work/ovl-work" "$mnt" "$work/box"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$work/upper,workdir=$work/ovl-work" "$mnt" || skip "overlay mount failed"
chmod 0755 "$work/upper"
chr() { unshare -m --propagation private sh -c 'mount -t proc proc "$1/proc" && shift && exec chroot "$@"' sh "$mnt" "$mnt" "$@"; }
echo bollwerk-box > "$mnt/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tbollwerk-box\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$mnt/etc/hosts"
rm -f "$mnt/etc/resolv.conf"; echo 'nameserver 10.0.2.3' > "$mnt/etc/resolv.conf"
: > "$mnt/etc/machine-id"
rm -f "$mnt"/etc/ssh/ssh_host_* "$mnt/usr/sbin/policy-rc.d"
echo '/dev/vda / ext4 defaults 0 1' > "$mnt/etc/fstab"
printf '[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n' > "$mnt/etc/systemd/network/80-dhcp.network"
# Every VM made from the box gets its own SSH host key on its first boot: ed25519 only (RSA 3072
# generation took over 12 minutes in a CPU-starved TCG guest; sshd skips absent default keys).
cat > "$mnt/etc/systemd/system/box-ssh-hostkeys.service" <<'EOF'
[Unit]
Description=Generate this VM's SSH host key (first boot of a Vagrant box)
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target
EOF
# The vagrant user: sudo without a password, the key made for this run, no password.
chr useradd -m -s /bin/bash -G sudo vagrant || { echo "useradd vagrant failed" >&2; exit 1; }
chr usermod -p '*' vagrant
install -d -m 0700 -o "$(chr id -u vagrant)" -g "$(chr id -g vagrant)" "$mnt/home/vagrant/.ssh"
install -m 0600 -o "$(chr id -u vagrant)" -g "$(chr id -g vagrant)" "$work/key.pub" "$mnt/home/vagrant/.ssh/authorized_keys"
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > "$mnt/etc/sudoers.d/vagrant"; chmod 0440 "$mnt/etc/sudoers.d/vagrant"
chr systemctl enable systemd-networkd.service box-ssh-hostkeys.service >/dev/null 2>&1 \
    || { echo "systemctl enable failed" >&2; exit 1; }
# Keep the boot short under TCG: services no profile step needs.
chr systemctl mask postgresql.service apt-daily.timer apt-daily-upgrade.timer man-db.timer \
    e2scrub_reap.service >/dev/null 2>&1 || true
cp "$kernel" "$work/box/vmlinuz"; cp "$initrd" "$work/box/initrd.img"
truncate -s 4G "$work/root.img"
mkfs.ext4 -q -F -L root -d "$mnt" "$work/root.img" || { echo "mkfs.ext4 -d failed" >&2; exit 1; }
umount "$mnt"
rm -rf "$work/upper" "$work/ovl-work"
qemu-img convert -f raw -O qcow2 "$work/root.img" "$work/box/box.img" || { echo "qemu-img convert failed" >&2; exit 1; }
rm -f "$work/root.img"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": 4}\n' > "$work/box/metadata.json"
cat > "$work/box/Vagrantfile" <<'EOF'
# Box Vagrantfile: boot the kernel and initrd shipped in the box (the root is a bare ext4 image).
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    lv.kernel = File.join(__dir__, "vmlinuz")
    lv.initrd = File.join(__dir__, "initrd.img")
    lv.cmd_line = "root=/dev/vda rw console=ttyS0"
    lv.disk_bus = "virtio"
  end
end
EOF
tar -C "$work/box" -cf "$work/debian12-local.box" metadata.json Vagrantfile box.img vmlinuz initrd.img
rm -rf "$work/box"
# (libvirt's config dir is $work/c: QEMU's UNIX socket paths under it must stay below 108 bytes)
mkdir -p "$work/home" "$work/c" "$work/run" "$work/vagrant.d" "$work/dot"
chmod 0700 "$work/run" "$work/c"
chown "$vuser:$vgroup" "$work/home" "$work/c" "$work/run" "$work/vagrant.d" "$work/dot" "$work/key" "$work/key.pub"
echo "box built in $(secs "$t0" "$(now)") s ($(du -m "$work/debian12-local.box" | cut -f1) MB, accel $accel)"

t1=$(now)
as_user vagrant box add --name "$box_name" "$work/debian12-local.box" >/dev/null \
    || { echo "vagrant box add failed" >&2; exit 1; }
rm -f "$work/debian12-local.box"
echo "vagrant box add: $(secs "$t1" "$(now)") s"

# ---------------------------------------------------------------------------------------------
# vagrant up, checks from outside, vagrant destroy
# ---------------------------------------------------------------------------------------------
SSH_OPTS=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
          -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=3)
vm_ssh() { timeout 120 ssh "${SSH_OPTS[@]}" -o BatchMode=yes -o IdentitiesOnly=yes -i "$work/key" -p "$port" vagrant@127.0.0.1 "$@"; }

t2=$(now)
as_user timeout 1500 vagrant up local > "$work/up.log" 2>&1
up_rc=$?
up_secs=$(secs "$t2" "$(now)")
sed 's/^/  vagrant up: /' "$work/up.log" | grep -vE 'Progress: |^\s*vagrant up: \s*$' | tail -60
check "vagrant up local (boot + provisioning: apply, idempotent second apply) exits 0 (${up_secs} s)" test "$up_rc" = 0
if [ "$up_rc" != 0 ] && [ -f "$work/home/serial.log" ]; then
    echo "--- serial console (last 40 lines)"; tail -40 "$work/home/serial.log"
fi

status=$(as_user vagrant status local --machine-readable 2>/dev/null | awk -F, '$3 == "state" {print $4}')
check "vagrant status: running (is '$status')" test "$status" = running
domain=$(as_user virsh list --name 2>/dev/null | grep -v '^$' | head -1)
check "a libvirt session domain runs ($domain)" test -n "$domain"
check "the domain has no libvirt network interface (user-mode networking only)" \
    test -z "$(as_user virsh domiflist "$domain" 2>/dev/null | awk 'NR > 2 && NF')"

check "key login from outside as the profile's admin (vagrant on 127.0.0.1:$port)" vm_ssh true
denied=$(timeout 60 sshpass -p vagrant ssh "${SSH_OPTS[@]}" -o PubkeyAuthentication=no \
    -o PreferredAuthentications=password,keyboard-interactive -p "$port" vagrant@127.0.0.1 true 2>&1)
check "password login refused ($denied)" grep -q 'Permission denied (publickey)' <<<"$denied"
check "bollwerk is installed in the guest" vm_ssh 'test -x /usr/sbin/bollwerk'
check "vagrant ssh -c works after hardening, and plan has nothing left to do" \
    as_user timeout 300 vagrant ssh local -c 'sudo bollwerk plan --profile /root/bollwerk-profile.toml >/dev/null'
effective=$(vm_ssh sudo sshd -T 2>/dev/null)
check "sshd: password authentication off" grep -qx 'passwordauthentication no' <<<"$effective"
check "sshd: root login off" grep -qx 'permitrootlogin no' <<<"$effective"

# The report goes through a file: as an argument it exceeds the kernel's argument size limit.
vm_ssh 'sudo bollwerk audit --profile /root/bollwerk-profile.toml --format json' >"$work/audit.json" 2>"$work/audit.err"
audit_rc=$?
summary=$(python3 - "$work/audit.json" <<'EOF' 2>&1
import json, sys
try:
    with open(sys.argv[1]) as f:
        r = json.load(f)
except ValueError:
    sys.exit("no JSON report from the guest's audit")
res = r.get("results", [])
cov = [x for x in res if x.get("covered_by_profile")]
bad = [f"{x['id']} ({x.get('status')})" for x in cov if x.get("status") in ("fail", "error")]
print(f"{len(res)} checks, {len(cov)} covered by the profile, covered failing: {bad}")
sys.exit(0 if len(cov) > 20 and not bad else 1)
EOF
)
summary_rc=$?
echo "guest audit (exit $audit_rc): $summary"
[ -s "$work/audit.err" ] && [ "$summary_rc" != 0 ] && sed 's/^/  audit stderr: /' "$work/audit.err" | tail -20
check "bollwerk audit in the guest: every check the profile covers passes" test "$summary_rc" = 0

t3=$(now)
as_user timeout 600 vagrant destroy -f local > "$work/destroy.log" 2>&1
destroy_rc=$?
destroyed=1
sed 's/^/  vagrant destroy: /' "$work/destroy.log"
check "vagrant destroy -f exits 0 ($(secs "$t3" "$(now)") s)" test "$destroy_rc" = 0
left=$(as_user virsh list --all --name 2>&1 | grep -v '^$')
check "no libvirt domain left ('$left')" test -z "$left"
vols=$(as_user virsh vol-list default 2>/dev/null | awk 'NR > 2 && NF {print $1}')
others=$(grep -v '_vagrant_box_image_' <<<"$vols" | grep -v '^$')
check "no volume left in the session pool but the box's base image ('$others')" test -z "$others"
for v in $(grep '_vagrant_box_image_' <<<"$vols"); do as_user virsh vol-delete --pool default "$v" >/dev/null; done
as_user vagrant box remove -f "$box_name" >/dev/null 2>&1
check "box and its base image removed: the session pool is empty" \
    test -z "$(as_user virsh vol-list default 2>/dev/null | awk 'NR > 2 && NF')"
nets=$(as_user virsh net-list --all --name 2>/dev/null | grep -v '^$')
check "no libvirt network was ever defined ('$nets')" test -z "$nets"
stop_daemons
sleep 1
alive=""
for p in "${daemon_pids[@]}"; do ps -o stat= -p "$p" 2>/dev/null | grep -qv Z && alive="$alive $p"; done
check "the session daemons this run started are stopped ($(printf '%s\n' "${daemon_pids[@]}" | sort -u | xargs))" test -z "$alive"

echo "vagrant up: $up_secs s; whole harness: $(secs "$t0" "$(now)") s"
if [ "$failures" -gt 0 ]; then
    echo "vagrant-up: $failures check(s) failed"
    exit 1
fi
echo "vagrant-up: all checks passed"
