//! Byte sizes in profiles (`"100M"`, `"1G"`, `"4GiB"`, `"512k"`), binary units, and how each
//! tool wants them written (logrotate `100M`, journald `1G`, PostgreSQL `4GB`).

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

const K: u64 = 1024;

/// A size in bytes, written with a binary unit: `512k`, `100M`, `1G`, `4GiB`, `1T` (or plain
/// bytes). `k`/`K`/`KiB`, `M`/`MB`/`MiB` … all mean powers of 1024, as in the tools it feeds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// The largest unit that divides the size exactly, with suffixes `k`, `M`, `G` (logrotate
    /// takes `k`, `M` and `G`; a plain number is bytes).
    pub fn logrotate(self) -> String {
        for (suffix, div) in [("G", K * K * K), ("M", K * K), ("k", K)] {
            if self.0 >= div && self.0.is_multiple_of(div) {
                return format!("{}{suffix}", self.0 / div);
            }
        }
        self.0.to_string()
    }

    /// systemd's notation (`K`, `M`, `G`, `T`, base 1024).
    pub fn systemd(self) -> String {
        for (suffix, div) in [
            ("T", K * K * K * K),
            ("G", K * K * K),
            ("M", K * K),
            ("K", K),
        ] {
            if self.0 >= div && self.0.is_multiple_of(div) {
                return format!("{}{suffix}", self.0 / div);
            }
        }
        self.0.to_string()
    }
}

impl TryFrom<String> for ByteSize {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let mult = match unit.trim() {
            "" | "B" => 1,
            "k" | "K" | "kB" | "KB" | "KiB" => K,
            "m" | "M" | "MB" | "MiB" => K * K,
            "g" | "G" | "GB" | "GiB" => K * K * K,
            "t" | "T" | "TB" | "TiB" => K * K * K * K,
            _ => 0,
        };
        let n: u64 = num.parse().unwrap_or(0);
        if num.is_empty() || mult == 0 || n == 0 {
            return Err(format!(
                "size `{s}` must be a whole number with a unit such as \"512k\", \"100M\", \"1G\" or \"4GiB\""
            ));
        }
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size `{s}` is too large"))
    }
}

impl From<ByteSize> for String {
    fn from(b: ByteSize) -> String {
        b.systemd()
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.systemd())
    }
}

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ByteSize({})", self.systemd())
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "pattern": "^[0-9]+ ?([kKmMgGtT](i?B)?|B)?$", "description": "size with a binary unit, e.g. \"100M\", \"1G\", \"4GiB\""})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sz(s: &str) -> Result<ByteSize, String> {
        ByteSize::try_from(s.to_string())
    }

    #[test]
    fn parses_binary_units() {
        assert_eq!(sz("100M").unwrap().bytes(), 100 * 1024 * 1024);
        assert_eq!(sz("4GiB").unwrap().bytes(), 4 << 30);
        assert_eq!(sz("1G").unwrap(), sz("1024M").unwrap());
        assert_eq!(sz("512k").unwrap().bytes(), 512 * 1024);
        assert_eq!(sz("2048").unwrap().bytes(), 2048);
        for bad in ["", "M", "1.5G", "-1G", "0", "10X", "1 G B"] {
            assert!(sz(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn renders_for_each_tool() {
        assert_eq!(sz("1024M").unwrap().logrotate(), "1G");
        assert_eq!(sz("1536M").unwrap().logrotate(), "1536M");
        assert_eq!(sz("512k").unwrap().logrotate(), "512k");
        assert_eq!(sz("1G").unwrap().systemd(), "1G");
        assert_eq!(sz("1024G").unwrap().systemd(), "1T");
    }
}
