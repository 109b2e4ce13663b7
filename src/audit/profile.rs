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
}
