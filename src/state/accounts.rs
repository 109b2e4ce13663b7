//! Every account's password-ageing fields as `etc/shadow` of the root holds them (not only the
//! `login.defs` defaults that apply to accounts created later), with `file:line` sources.

use crate::etcdb::{Accounts, Line};

/// One field of a shadow entry's ageing data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeingField {
    /// Minimum days between password changes.
    Min,
    /// Maximum days a password is valid.
    Max,
    /// Days of warning before expiry.
    Warn,
    /// Days after expiry before the account is disabled.
    Inactive,
}

impl AgeingField {
    /// The field's name in `chage`/shadow(5) terms.
    pub fn as_str(self) -> &'static str {
        match self {
            AgeingField::Min => "min",
            AgeingField::Max => "max",
            AgeingField::Warn => "warn",
            AgeingField::Inactive => "inactive",
        }
    }
}

/// The ageing data of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountAgeing {
    /// Login name.
    pub name: String,
    /// `/etc/shadow:7`.
    pub at: String,
    /// The account has a usable password (not locked, not empty, not `*`).
    pub has_password: bool,
    /// Minimum days (`None`: field empty).
    pub min: Option<i64>,
    /// Maximum days.
    pub max: Option<i64>,
    /// Warning days.
    pub warn: Option<i64>,
    /// Inactivity days.
    pub inactive: Option<i64>,
}

impl AccountAgeing {
    /// The value of `f`.
    pub fn get(&self, f: AgeingField) -> Option<i64> {
        match f {
            AgeingField::Min => self.min,
            AgeingField::Max => self.max,
            AgeingField::Warn => self.warn,
            AgeingField::Inactive => self.inactive,
        }
    }
}

/// Every entry of `etc/shadow`, in file order; `None` when the root has no `etc/shadow`.
pub fn ageing(accounts: &Accounts) -> Option<Vec<AccountAgeing>> {
    let db = accounts.shadow.as_ref()?;
    let num = |s: &str| s.trim().parse::<i64>().ok();
    Some(
        db.lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match l {
                Line::Entry(s) => Some(AccountAgeing {
                    name: s.name.clone(),
                    at: format!("/etc/shadow:{}", i + 1),
                    has_password: !s.hash.is_empty() && !s.password_locked(),
                    min: num(&s.min),
                    max: num(&s.max),
                    warn: num(&s.warn),
                    inactive: num(&s.inactive),
                }),
                Line::Verbatim(_) => None,
            })
            .collect(),
    )
}
