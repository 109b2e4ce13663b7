//! The `[audit]` profile section: how the audit relates to a profile (scan roots, waivers,
//! the default threshold, auditing after `apply`).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
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
    /// Deprecated alias of `[[audit.waivers]]`: check ids reported as `waived` without an
    /// approver or expiry (the audit warns; write waivers instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<String>>,
    /// Accepted deviations: each check named here is reported as `waived` with its reason
    /// until the day after `expires`, when it turns back into the check's own verdict. The
    /// audit warns about waivers that expire within 30 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waivers: Option<Vec<Waiver>>,
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

/// `[[audit.waivers]]`: one accepted deviation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    /// The check id (`ssh.x11-forwarding`).
    pub check: NonEmpty,
    /// Why the deviation is accepted (shown in every report format).
    pub reason: NonEmpty,
    /// Who approved it.
    pub approved_by: NonEmpty,
    /// Last day the waiver holds, `"YYYY-MM-DD"` (a quoted date).
    pub expires: WaiverDate,
}

/// A non-empty, single-line string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NonEmpty(String);

impl NonEmpty {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NonEmpty {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if s.contains('\n') {
            return Err("must be a single line".into());
        }
        Ok(NonEmpty(s))
    }
}

impl From<NonEmpty> for String {
    fn from(v: NonEmpty) -> String {
        v.0
    }
}

impl JsonSchema for NonEmpty {
    fn schema_name() -> Cow<'static, str> {
        "NonEmpty".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "description": "non-empty single line", "minLength": 1})
    }
}

/// A calendar date `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WaiverDate(String);

impl WaiverDate {
    /// The date as `YYYY-MM-DD` (sorts like the date).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WaiverDate {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let ok = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && digits(0..4)
            && digits(5..7)
            && digits(8..10);
        let month: u32 = if ok { s[5..7].parse().unwrap_or(0) } else { 0 };
        let day: u32 = if ok { s[8..10].parse().unwrap_or(0) } else { 0 };
        if !ok || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return Err(format!("`{s}` is not a date: write \"YYYY-MM-DD\""));
        }
        Ok(WaiverDate(s))
    }
}

impl From<WaiverDate> for String {
    fn from(v: WaiverDate) -> String {
        v.0
    }
}

impl JsonSchema for WaiverDate {
    fn schema_name() -> Cow<'static, str> {
        "WaiverDate".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "description": "date YYYY-MM-DD", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_validated() {
        assert!(WaiverDate::try_from("2027-01-31".to_string()).is_ok());
        for bad in ["2027-1-31", "2027-13-01", "31.01.2027", "2027-01-00", ""] {
            assert!(WaiverDate::try_from(bad.to_string()).is_err(), "{bad}");
        }
        assert!(NonEmpty::try_from(" ".to_string()).is_err());
    }
}
