//! Validated value types used in profiles: each rejects bad input at load time, so the TOML
//! error carries the exact file position.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Declares a string newtype validated by `$check`, with a JSON Schema `pattern`/description.
macro_rules! string_type {
    ($(#[$doc:meta])* $name:ident, $desc:expr, $pattern:expr, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s)?;
                Ok($name(s))
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::try_from(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let pattern: Option<&str> = $pattern;
                match pattern {
                    Some(p) => json_schema!({"type": "string", "description": $desc, "pattern": p}),
                    None => json_schema!({"type": "string", "description": $desc}),
                }
            }
        }
    };
}

fn check_account_name(kind: &str, s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a valid {kind} name: use 1-32 characters a-z, 0-9, `_`, `-`, starting with a letter or `_`"
        ))
    }
}

string_type!(
    /// A user name as `useradd` accepts it on Debian/Ubuntu (`[a-z_][a-z0-9_-]*`, ≤ 32).
    UserName,
    "user name: [a-z_][a-z0-9_-]{0,31}",
    Some("^[a-z_][a-z0-9_-]{0,31}$"),
    |s| check_account_name("user", s)
);

string_type!(
    /// A group name (`[a-z_][a-z0-9_-]*`, ≤ 32).
    GroupName,
    "group name: [a-z_][a-z0-9_-]{0,31}",
    Some("^[a-z_][a-z0-9_-]{0,31}$"),
    |s| check_account_name("group", s)
);

/// Rejects control characters (newline, tab, escape, NUL …) and every character of `forbid`
/// in a field that ends up in a line-oriented file. The message shows the value escaped.
pub fn check_field_chars(what: &str, s: &str, forbid: &str) -> Result<(), String> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{what} {s:?} contains the control character {c:?} (newlines and control characters are not allowed)"
        ));
    }
    if let Some(c) = s.chars().find(|c| forbid.contains(*c)) {
        return Err(format!(
            "{what} {s:?} contains `{c}`, which separates fields in the file it is written to"
        ));
    }
    Ok(())
}

/// The checks of [`AbsPath`]: absolute, normalised (no `.`, `..`, `//`, trailing `/`), no
/// control characters, at most 4096 bytes.
fn check_abs_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err(format!("{s:?} must be an absolute path"));
    }
    if s.len() > 4096 {
        return Err(format!("path is {} bytes long (limit 4096)", s.len()));
    }
    check_field_chars("path", s, "")?;
    if s.len() > 1 && s.ends_with('/') {
        return Err(format!(
            "path {s:?} must be normalised: drop the trailing `/`"
        ));
    }
    crate::root::RelPath::new(s).map(|_| ())
}

string_type!(
    /// An absolute path inside the target (`/home/app`), normalised (no `.`, `..`, `//` or
    /// trailing `/`), without control characters.
    AbsPath,
    "absolute path without `..`",
    Some("^/"),
    check_abs_path
);

impl AbsPath {
    /// The path relative to the target root.
    pub fn rel(&self) -> crate::root::RelPath {
        // Validated at construction.
        crate::root::RelPath::new(&self.0).unwrap_or_else(|_| crate::root::RelPath::lit("invalid"))
    }
}

string_type!(
    /// A path written into `etc/passwd` (home directory, login shell): an [`AbsPath`] that also
    /// has no `:` (the field separator).
    AccountPath,
    "absolute path without `..`, `:` or control characters",
    Some("^/[^:]*$"),
    |s| {
        check_abs_path(s)?;
        check_field_chars("path", s, ":")
    }
);

impl AccountPath {
    /// The path relative to the target root.
    pub fn rel(&self) -> crate::root::RelPath {
        // Validated at construction.
        crate::root::RelPath::new(&self.0).unwrap_or_else(|_| crate::root::RelPath::lit("invalid"))
    }
}

string_type!(
    /// The GECOS / comment field of `etc/passwd` (`Alice Example,Room 4`): at most 255
    /// characters, no `:` and no control characters.
    Gecos,
    "passwd comment (GECOS): no `:`, newlines or control characters, at most 255 characters",
    Some("^[^:]{0,255}$"),
    |s| {
        if s.chars().count() > 255 {
            return Err("comment is longer than 255 characters".into());
        }
        check_field_chars("comment", s, ":")
    }
);

string_type!(
    /// A host name (RFC 1123 label, or a dotted FQDN of such labels).
    Hostname,
    "RFC 1123 host name, optionally fully qualified",
    Some("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"),
    |s| {
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if ok {
            Ok(())
        } else {
            Err(format!("`{s}` is not a valid host name (letters, digits, `-`, labels ≤ 63, dots between)"))
        }
    }
);

string_type!(
    /// An IANA time zone name (`Europe/Berlin`, `UTC`); checked against the target's zoneinfo at plan time.
    Timezone,
    "IANA time zone, e.g. Europe/Berlin or UTC",
    Some("^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"),
    |s| {
        let ok = !s.is_empty()
            && s.split('/').all(|p| {
                !p.is_empty()
                    && p != ".."
                    && p.chars().all(|c| c.is_ascii_alphanumeric() || "_+-".contains(c))
            });
        if ok {
            Ok(())
        } else {
            Err(format!("`{s}` is not a time zone name like `Europe/Berlin` or `UTC`"))
        }
    }
);

string_type!(
    /// A crypt(3) password hash (`$y$…`, `$6$…`, `$5$…`, `$2b$…`), or `!`/`*` for "no password".
    PasswordHash,
    "crypt(3) hash ($y$, $6$, $5$, $2b$) - never a clear-text password",
    None,
    |s| {
        if s == "!" || s == "*" {
            return Ok(());
        }
        let known = ["$y$", "$gy$", "$7$", "$6$", "$5$", "$2b$", "$2y$", "$2a$"];
        if !known.iter().any(|p| s.starts_with(p)) {
            return Err("password_hash must be a crypt(3) hash such as `$y$…` or `$6$…` (make one with `mkpasswd -m yescrypt`); clear-text passwords are not accepted".into());
        }
        // The message never shows the value: it is a secret.
        if s.len() < 20 || s.len() > 512 {
            return Err("password_hash looks truncated or is too long for a crypt(3) hash".into());
        }
        if !s.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err("password_hash contains `:`, a space, a control character or a non-ASCII character: a crypt(3) hash has none".into());
        }
        Ok(())
    }
);

/// A TCP/UDP port number, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u16")]
pub struct Port(pub u16);

impl TryFrom<i64> for Port {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if (1..=65535).contains(&v) {
            Ok(Port(v as u16))
        } else {
            Err(format!("port {v} is out of range (1-65535)"))
        }
    }
}

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl JsonSchema for Port {
    fn schema_name() -> Cow<'static, str> {
        "Port".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "minimum": 1, "maximum": 65535, "description": "port number 1-65535"})
    }
}

/// File permission bits written as an octal string (`"0750"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mode(pub u32);

impl TryFrom<String> for Mode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let digits = s.strip_prefix("0o").unwrap_or(&s);
        if digits.is_empty()
            || digits.len() > 4
            || !digits.chars().all(|c| ('0'..='7').contains(&c))
        {
            return Err(format!(
                "mode `{s}` must be an octal string like \"0750\" (write it quoted: a TOML number would be decimal)"
            ));
        }
        u32::from_str_radix(digits, 8)
            .map(Mode)
            .map_err(|e| format!("mode `{s}`: {e}"))
    }
}

impl From<Mode> for String {
    fn from(m: Mode) -> String {
        format!("{:04o}", m.0)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl JsonSchema for Mode {
    fn schema_name() -> Cow<'static, str> {
        "Mode".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "pattern": "^(0o)?[0-7]{1,4}$", "description": "octal permission bits as a string, e.g. \"0750\""})
    }
}

/// A duration written like `30s`, `10m`, `1h`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Duration(pub std::time::Duration);

impl TryFrom<String> for Duration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        humantime::parse_duration(&s)
            .map(Duration)
            .map_err(|e| format!("duration `{s}`: {e} (write e.g. \"30s\", \"10m\", \"1h\")"))
    }
}

impl From<Duration> for String {
    fn from(d: Duration) -> String {
        humantime::format_duration(d.0).to_string()
    }
}

impl Duration {
    /// Whole seconds.
    pub fn secs(&self) -> u64 {
        self.0.as_secs()
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "description": "duration such as \"30s\", \"10m\", \"1h\""})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(UserName::try_from("deploy".to_string()).is_ok());
        assert!(UserName::try_from("_svc-1".to_string()).is_ok());
        assert!(UserName::try_from("Deploy".to_string()).is_err());
        assert!(UserName::try_from("1abc".to_string()).is_err());
        assert!(UserName::try_from("a".repeat(33)).is_err());
    }

    #[test]
    fn modes_and_ports() {
        assert_eq!(Mode::try_from("0750".to_string()).unwrap().0, 0o750);
        assert!(Mode::try_from("0980".to_string()).is_err());
        assert!(Port::try_from(0).is_err());
        assert!(Port::try_from(65536).is_err());
        assert_eq!(Port::try_from(2222).unwrap().0, 2222);
    }

    #[test]
    fn hostnames_and_zones() {
        assert!(Hostname::try_from("app01.example.org".to_string()).is_ok());
        assert!(Hostname::try_from("-bad".to_string()).is_err());
        assert!(Timezone::try_from("Europe/Berlin".to_string()).is_ok());
        assert!(Timezone::try_from("../etc/passwd".to_string()).is_err());
    }

    #[test]
    fn password_hashes() {
        assert!(PasswordHash::try_from("hunter2".to_string()).is_err());
        assert!(PasswordHash::try_from("$6$salt$abcdefghijklmnopqrstuvwxyz".to_string()).is_ok());
        assert!(PasswordHash::try_from("!".to_string()).is_ok());
    }

    #[test]
    fn account_fields_reject_separators_and_control_characters() {
        let evil = "/bin/sh\nevil::0:0::/root:/bin/bash";
        assert!(AbsPath::try_from(evil.to_string()).is_err());
        assert!(AccountPath::try_from(evil.to_string()).is_err());
        assert!(AccountPath::try_from("/home/a:b".to_string()).is_err());
        assert!(AccountPath::try_from("/bin/bash".to_string()).is_ok());
        assert!(AbsPath::try_from("/srv/a:b".to_string()).is_ok());
        assert!(AbsPath::try_from("/srv/app/".to_string()).is_err());
        assert!(AbsPath::try_from("/srv/../etc".to_string()).is_err());
        assert!(AbsPath::try_from("/srv/a\tb".to_string()).is_err());
        assert!(Gecos::try_from("Ops: on-call".to_string()).is_err());
        assert!(Gecos::try_from("Ops\n".to_string()).is_err());
        assert!(Gecos::try_from("Alice Example,Room 4,,".to_string()).is_ok());
        let e = Gecos::try_from("a\u{1b}[2J".to_string()).unwrap_err();
        assert!(e.contains("\\u{1b}"), "escaped in the message: {e}");
        let h = "$6$salt$abcdefghijklmnopqrstuvwxyz";
        for bad in [":", "\n", " ", "\u{7f}", "é"] {
            let e = PasswordHash::try_from(format!("{h}{bad}x")).unwrap_err();
            assert!(!e.contains("abcdefghij"), "the hash is never shown: {e}");
        }
    }
}
