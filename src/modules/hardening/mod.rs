//! OS hardening (issue 7): the remediation half of the CIS catalog, one module per concern.
//!
//! | module | profile section | owns |
//! |---|---|---|
//! | `sudo` | `[sudo]` | `etc/sudoers.d/bollwerk-defaults` |
//! | `banners` | `[banners]` | `etc/issue`, `etc/issue.net`, `etc/motd`, the modes of `etc/update-motd.d/*` |
//! | `kernel_modules` | `[kernel_modules]` | `etc/modprobe.d/bollwerk-blacklist.conf` |
//! | `cron` | `[cron]` | `etc/cron.allow`, `etc/at.allow`, modes of `etc/crontab` and `etc/cron.*` |
//! | `coredump` | `[coredump]` | `etc/security/limits.d/bollwerk-coredump.conf`, `etc/systemd/coredump.conf.d/bollwerk.conf` |
//! | `tmp` | `[tmp]` | `etc/systemd/system/tmp.mount` (or the `/tmp` line of `etc/fstab`), the `/dev/shm` line of `etc/fstab` |
//! | `time` | `[time]` | `etc/systemd/timesyncd.conf.d/bollwerk.conf` or `etc/chrony/sources.d/bollwerk.sources`, the time daemons' enablement |
//! | `accounts` | `[accounts]` | settings in `etc/login.defs` and `etc/default/useradd`, `etc/profile.d/bollwerk-shell.sh`, a `umask` block at the end of `etc/profile` and `etc/bash.bashrc`, password ageing in `etc/shadow`, system accounts' shells |
//! | `pam` | `[pam]` | `usr/share/pam-configs/bollwerk-*` activated with `pam-auth-update`, `etc/security/pwquality.conf.d/bollwerk.conf` (the same settings in `etc/security/pwquality.conf`), settings in `etc/security/faillock.conf`, the `pam_wheel` line of `etc/pam.d/su` |
//! | `apparmor` | `[apparmor]` | enablement of `apparmor.service`, `etc/apparmor.d/force-complain/*`, `etc/default/grub.d/bollwerk-apparmor.cfg` |
//! | `integrity` | `[integrity]` | `etc/systemd/system/bollwerk-aide-init.{service,timer}` (AIDE database built by a timer) |
//! | `tools` | `[tools]` | `etc/needrestart/conf.d/bollwerk.conf`, `etc/systemd/system/bollwerk-chkrootkit.{service,timer}` (packages: needrestart, debsums, apt-show-versions, apt-listchanges, chkrootkit) |
//! | `auditd` | `[auditd]` | `etc/audit/rules.d/{50-bollwerk-cis,99-bollwerk-finalize}.rules`, settings in `etc/audit/auditd.conf`, `etc/default/grub.d/bollwerk-audit.cfg` |
//! | `accounting` | `[accounting]` | enablement of `acct.service` and `sysstat.service`, `ENABLED` in `etc/default/sysstat` |
//! | `logging` | `[logging]` | `etc/rsyslog.d/00-bollwerk-filemode.conf`, modes of files in `var/log` |
//!
//! Every module reports kernel-level settings as not applicable in containers (a note, no
//! changes) and edits a distro file in place only where no drop-in mechanism exists, keeping
//! every other line byte-identical.

pub mod accounting;
pub mod accounts;
pub mod apparmor;
pub mod auditd;
pub mod banners;
pub mod coredump;
pub mod cron;
pub mod integrity;
pub mod kernel_modules;
pub mod logging;
pub mod pam;
pub mod sudo;
pub mod time;
pub mod tmp;
pub mod tools;
pub mod util;
