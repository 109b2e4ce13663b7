#!/usr/bin/env bash
# The independent scanners of the testbed (issue 12): Lynis and OpenSCAP judge a root that
# bollwerk hardened, so "hardened" is not only our own audit's word.
#
#   tests/testbed/scanners.sh content CACHE_DIR
#       Fetches, once, into CACHE_DIR/scanners/:
#         - lynis.deb: Debian 12's Lynis package (unpacked into the scanned copy, never installed
#           on this machine by this script);
#         - ssg-ubuntu2204-ds-debian12.xml: ComplianceAsCode's CIS Ubuntu 22.04 datastream, taken
#           from the ssg-debderived package of a newer Debian suite (trixie) of this machine's own
#           mirror (unpacked, not installed), with the Ubuntu 22.04 platform check widened so that
#           it also evaluates Debian 12 (see tests/testbed/README.md, "Scanners").
#   tests/testbed/scanners.sh oscap ROOT OUT_DIR [PROFILE]
#       Evaluates ROOT offline (OSCAP_PROBE_ROOT, what oscap-chroot does) with the CIS profile
#       (default cis_level1_server). Writes OUT_DIR/oscap-results.xml, OUT_DIR/oscap-report.html
#       and prints "oscap: PASS pass, FAIL fail, ... -> RATE %".
#   tests/testbed/scanners.sh lynis ROOT OUT_DIR
#       ROOT must be a throw-away copy: unpacks Lynis into it, boots it with systemd-nspawn
#       (private network, not registered), runs `lynis audit system` at boot and powers off.
#       Copies the report to OUT_DIR and prints "lynis: hardening index N", the suggestions and
#       "lynis lost: TEST N" (hardening points a test did not give).
#   tests/testbed/scanners.sh lynis-vm ROOT OUT_DIR
#       The same in a QEMU VM booted from ROOT's own kernel (KVM where it works, else TCG), where
#       the kernel, AppArmor, auditd and mounts are the root's own, as on a VPS. ROOT must be a
#       throw-away copy with linux-image-amd64. Also prints "lynis-vm: ACCEL, image N s, ...".
#       BOLLWERK_LYNIS_VM_TIMEOUT: seconds before the VM is killed (default 2400).
#
# The mirror is read from this machine's apt sources; no registry host name is in the repository.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# The first bookworm mirror of this machine's apt sources (deb822 or one-line format).
mirror() {
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [[ -e $f ]] || continue
      awk 'BEGIN{RS=""} {u="";s=""; for(i=1;i<=NF;i++){ if($i=="URIs:") u=$(i+1); if($i=="Suites:"){ j=i+1; while(j<=NF && $j !~ /:$/){ s=s" "$j; j++ } } } if(u!="") print u, s}' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -e $f ]] || continue
      awk '$1=="deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } print $i, $(i+1) }' "$f"
    done
  } | awk '$0 ~ / bookworm( |$)/ { print $1; exit }'
}

content() {
  local dir=$1/scanners
  mkdir -p "$dir"
  if [[ ! -s $dir/lynis.deb ]]; then
    (cd "$dir" && apt-get download -q lynis >/dev/null && mv lynis_*.deb lynis.deb.part && mv lynis.deb.part lynis.deb)
  fi
  local ds=$dir/ssg-ubuntu2204-ds-debian12.xml
  [[ -s $ds ]] && { echo "scanner content cached: $dir"; return; }
  local m tmp fn
  m=$(mirror)
  [[ -n $m ]] || { echo "scanners: no bookworm mirror in /etc/apt/sources.list*" >&2; exit 1; }
  tmp=$(mktemp -d "$dir/fetch.XXXXXX")
  trap 'rm -rf "$tmp"' RETURN
  curl -fsS -o "$tmp/Packages.xz" "$m/dists/trixie/main/binary-all/Packages.xz"
  xz -d "$tmp/Packages.xz"
  fn=$(awk '/^Package: /{p=($2=="ssg-debderived")} p && /^Filename: /{print $2; exit}' "$tmp/Packages")
  [[ -n $fn ]] || { echo "scanners: no ssg-debderived in trixie" >&2; exit 1; }
  curl -fsS -o "$tmp/ssg.deb" "$m/$fn"
  dpkg-deb -x "$tmp/ssg.deb" "$tmp/x"
  python3 "$here/widen-ssg-platform.py" \
    "$tmp/x/usr/share/xml/scap/ssg/content/ssg-ubuntu2204-ds.xml" "$ds.part"
  mv "$ds.part" "$ds"
  echo "scanner content: $(basename "$fn") -> $ds"
}

oscap_eval() {
  local root=$1 out=$2 profile=${3:-cis_level1_server}
  local ds=${BOLLWERK_TESTBED_CACHE:?}/scanners/ssg-ubuntu2204-ds-debian12.xml
  mkdir -p "$out"
  # Exit 2 means "some rule failed"; 1 is an error. oscap 1.3.7's probe threads have been seen to
  # deadlock (all threads in futex wait, no CPU) on a run that passes the next time: a run that
  # takes longer than 5 minutes (about 10 times the usual) is killed and tried once more.
  local rc attempt
  for attempt in 1 2; do
    rc=0
    OSCAP_PROBE_ROOT=$root timeout -s KILL 300 oscap xccdf eval \
      --profile "xccdf_org.ssgproject.content_profile_$profile" \
      --results "$out/oscap-results.xml" --report "$out/oscap-report.html" "$ds" \
      >"$out/oscap.log" 2>&1 || rc=$?
    (( rc == 137 )) || break
    echo "oscap: no result after 300 s (attempt $attempt, killed)" >&2
  done
  if (( rc != 0 && rc != 2 )); then
    tail -20 "$out/oscap.log" >&2
    echo "oscap failed (exit $rc)" >&2
    exit 1
  fi
  python3 - "$out/oscap-results.xml" <<'EOF'
import sys, collections, xml.etree.ElementTree as ET
ns = {"x": "http://checklists.nist.gov/xccdf/1.2"}
counts = collections.Counter()
fails = []
for rr in ET.parse(sys.argv[1]).getroot().iter("{http://checklists.nist.gov/xccdf/1.2}rule-result"):
    r = rr.find("x:result", ns).text
    counts[r] += 1
    if r == "fail":
        fails.append(rr.get("idref").replace("xccdf_org.ssgproject.content_rule_", ""))
judged = counts["pass"] + counts["fail"]
rate = 100.0 * counts["pass"] / judged if judged else 0.0
other = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()) if k not in ("pass", "fail"))
print(f"oscap: {counts['pass']} pass, {counts['fail']} fail ({other}) -> {rate:.1f} %")
for f in sorted(fails):
    print(f"oscap fail: {f}")
EOF
}

# Unpacks Lynis into ROOT and installs a oneshot unit that runs it at boot and powers off.
lynis_prepare() {
  local root=$1
  local deb=${BOLLWERK_TESTBED_CACHE:?}/scanners/lynis.deb
  # Not `dpkg-deb -x`: its tar would replace the root's /lib -> usr/lib symlink with a directory.
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$root" --keep-directory-symlink --no-overwrite-dir
  cat >"$root/etc/systemd/system/bollwerk-lynis.service" <<'EOF2'
[Unit]
Description=Lynis scan for bollwerk's scanner test
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'lynis audit system --quick --no-colors --report-file /root/lynis-report.dat --logfile /root/lynis.log >/root/lynis.out 2>&1; echo $? >/root/lynis.rc'
ExecStartPost=/bin/systemctl poweroff --no-block

[Install]
WantedBy=multi-user.target
EOF2
  ln -sf /etc/systemd/system/bollwerk-lynis.service "$root/etc/systemd/system/multi-user.target.wants/bollwerk-lynis.service"
  rm -f "$root/root/lynis-report.dat" "$root/root/lynis.out" "$root/root/lynis.log" "$root/root/lynis.rc"
  # A VPS has SSH host keys; without them ssh.service fails and Lynis skips its SSH tests.
  # `-A` creates only the missing ones.
  ssh-keygen -A -f "$root" >/dev/null
}

# Prints the index, the suggestions and warnings, and the points per test of OUT's report.
lynis_summary() {
  local out=$1 idx
  idx=$(sed -n 's/^hardening_index=//p' "$out/lynis-report.dat")
  echo "lynis: hardening index ${idx:-?}"
  sed -n 's/^suggestion\[\]=//p' "$out/lynis-report.dat" | sed 's/^/lynis suggestion: /'
  sed -n 's/^warning\[\]=//p' "$out/lynis-report.dat" | sed 's/^/lynis warning: /'
  # The points each test lost (the log's "Hardening: assigned partial number of hardening
  # points (N of M)"), so a change in the index can be traced to its tests.
  awk '/Performing test ID/ { id=$0; sub(/.*Performing test ID /, "", id); sub(/ .*/, "", id) }
       /Hardening: assigned partial number of hardening points/ {
         if (match($0, /points \([0-9]+ of [0-9]+\)/)) {
           split(substr($0, RSTART + 8, RLENGTH - 9), a, " of ")
           if (a[1] + 0 < a[2] + 0) lost[id] += a[2] - a[1] } }
       END { for (t in lost) printf "lynis lost: %s %d\n", t, lost[t] }' "$out/lynis.log" | sort
}

lynis_scan() {
  local root=$1 out=$2
  mkdir -p "$out"
  lynis_prepare "$root"
  [[ -s $root/etc/machine-id ]] || systemd-machine-id-setup --root="$root" >/dev/null 2>&1 || true
  timeout -s KILL 600 setpriv --pdeathsig KILL -- systemd-nspawn --boot --register=no --keep-unit \
    --private-network --quiet -D "$root" >"$out/nspawn.log" 2>&1 || true
  rm -f "$root/etc/systemd/system/multi-user.target.wants/bollwerk-lynis.service"
  cp "$root/root/lynis-report.dat" "$root/root/lynis.out" "$root/root/lynis.log" "$out/" 2>/dev/null || {
    echo "lynis: no report (see $out/nspawn.log)" >&2
    exit 1
  }
  lynis_summary "$out"
}

# The same scan where Lynis really runs on a VPS: ROOT (a throw-away copy, with the root's own
# kernel package) becomes a raw ext4 image (vagrant/vm-lib.sh) booted by QEMU with that kernel,
# user-mode networking with restrict=on and no forwarded port; the unit powers the guest off and
# the report is read from the image with debugfs. Prints each step's seconds.
lynis_vm() {
  local root=$1 out=$2 t0 t1 t2
  # shellcheck source=../../vagrant/vm-lib.sh
  . "$here/../../vagrant/vm-lib.sh"
  for t in qemu-system-x86_64 mkfs.ext4 debugfs; do
    command -v "$t" >/dev/null || { echo "lynis-vm: $t is not installed (vagrant/install-deps.sh)" >&2; exit 1; }
  done
  mkdir -p "$out"
  t0=$(date +%s.%N)
  vm_kernel "$root" || { echo "lynis-vm: $root has no kernel (linux-image-amd64)" >&2; exit 1; }
  lynis_prepare "$root"
  vm_prepare_root "$root" vps
  rm -f "$root/usr/sbin/policy-rc.d"   # the testbed's build aid; a VPS has none
  local img=$out/vm.img
  cp "$VM_KERNEL" "$out/vmlinuz"; cp "$VM_INITRD" "$out/initrd.img"
  vm_make_image "$root" "$img" || { echo "lynis-vm: mkfs.ext4 -d failed" >&2; exit 1; }
  t1=$(date +%s.%N)
  vm_detect_accel
  timeout -s KILL "${BOLLWERK_LYNIS_VM_TIMEOUT:-2400}" setpriv --pdeathsig KILL -- qemu-system-x86_64 "${VM_QEMU_ACCEL[@]}" \
    -m 1024 -smp 2 -machine q35 -nodefaults -display none -no-reboot \
    -serial "file:$out/serial.log" -kernel "$out/vmlinuz" -initrd "$out/initrd.img" \
    -append 'root=/dev/vda rw console=ttyS0 panic=-1' \
    -drive "file=$img,if=virtio,format=raw,cache=unsafe" \
    -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0 >"$out/qemu.log" 2>&1 || true
  t2=$(date +%s.%N)
  local f
  for f in lynis-report.dat lynis.out lynis.log; do
    debugfs -R "cat /root/$f" "$img" >"$out/$f" 2>/dev/null
  done
  rm -f "$img" "$out/vmlinuz" "$out/initrd.img"
  if ! grep -q '^hardening_index=' "$out/lynis-report.dat"; then
    echo "lynis-vm: no report (see $out/serial.log)" >&2
    tail -30 "$out/serial.log" >&2
    exit 1
  fi
  python3 -c "import sys; a,b,c=map(float,sys.argv[1:4]); print(f'lynis-vm: {sys.argv[4]}, image {b-a:.0f} s, boot + scan + poweroff {c-b:.0f} s')" "$t0" "$t1" "$t2" "$VM_ACCEL"
  lynis_summary "$out"
}

case ${1:-} in
  content) content "${2:?cache dir}" ;;
  oscap) oscap_eval "${2:?root}" "${3:?out dir}" "${4:-}" ;;
  lynis) lynis_scan "${2:?root}" "${3:?out dir}" ;;
  lynis-vm) lynis_vm "${2:?root}" "${3:?out dir}" ;;
  *) sed -n '2,27p' "$0" >&2; exit 2 ;;
esac
