//! The host's effective state, read once per run with the source of every fact (tool output,
//! file:line, the live kernel, or "not readable here" and why). Planning, the lockout guard and
//! the audit all read the host through this layer; none of them parses these raw files itself.
//!
//! Submodules, one per concern: `sshd` (per connection context, `Match` evaluated), `pam` (the
//! stack as PAM evaluates it), `accounts` (every account's shadow fields), `firewall` (the loaded
//! ruleset on a live host, the one the next boot loads offline) and `services` (enabled; active
//! only where a running systemd can say so), `sockets` (listening sockets of the running system).

pub mod accounts;
pub mod firewall;
pub mod pam;
pub mod services;
pub mod sockets;
pub mod sshd;
