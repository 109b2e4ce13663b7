//! The host's effective state, read once per run with the source of every fact (tool output,
//! file:line, the live kernel, or "not readable here" and why). Planning, the lockout guard and
//! the audit all read the host through this layer; none of them parses these raw files itself.
//!
//! Submodules, one per concern: `sshd` (per connection context, `Match` evaluated),
//! further ones (PAM, firewall, accounts, services) as they are built.

pub mod accounts;
pub mod firewall;
pub mod pam;
pub mod services;
