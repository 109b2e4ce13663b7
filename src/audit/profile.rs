//! The `[audit]` profile section: how the audit relates to a profile (scan roots, excluded
//! checks, the default threshold, auditing after `apply`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::profile::types::AbsPath;

/// `[audit]`: compliance audit settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Run the audit after a successful `apply` and save its JSON report under
    /// `/var/lib/bollwerk/reports/` (a one-line summary goes to stderr; apply's output and exit
    /// code are unchanged). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_apply: Option<bool>,
    /// Directories the world-writable and unowned-file checks walk (default `/`; other file
    /// systems, `/proc`, `/sys`, `/dev` and `/run` are never entered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_roots: Option<Vec<AbsPath>>,
    /// Check ids not to judge on this host (reported as skipped, with this profile as the reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<String>>,
    /// Default for `bollwerk audit --fail-under`: exit 1 when the score (in %) is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_under: Option<f64>,
    /// A directory of checks of your own (`*.toml`, the check catalog's format) on the
    /// machine running the audit, loaded with the built-in catalog (docs/fleet.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks_dir: Option<AbsPath>,
    /// Directory of the application's backups; turns on the web-app profiles'
    /// `app.backup-fresh` check (the newest file must be younger than 26 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_dir: Option<AbsPath>,
    /// Loopback URL of the application's health endpoint; turns on the web-app profiles'
    /// `app.local-health` check (must answer 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
    /// Checks this profile ships: `[[audit.checks]]` tables in the check catalog's format
    /// (`id`, `title`, `rationale`, `severity`, `fix`, `probe`, …), judged with the built-in
    /// checks; ids may not collide with built-in ones (docs/fleet.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<serde_json::Value>>,
}
