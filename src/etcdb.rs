//! The account databases of a target root: `etc/passwd`, `etc/group`, `etc/shadow`,
//! `etc/gshadow`, parsed and rendered losslessly.
//!
//! bollwerk never asks the running host's NSS about users: a root's accounts are what its own
//! files say. Lines that do not parse (comments, NIS `+` entries, garbage) are kept verbatim, so
//! rendering an unmodified database gives back the original bytes.

use std::fmt;

/// One line of a colon-separated database: either parsed fields or a line kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<T> {
    /// A parsed entry.
    Entry(T),
    /// Anything else, kept as it was (without the newline).
    Verbatim(String),
}

/// Largest account database bollwerk reads (4 MiB: about 40,000 accounts).
pub const MAX_BYTES: usize = 4 << 20;
/// Most lines in an account database.
pub const MAX_LINES: usize = 100_000;

/// A colon-separated account database with its lines in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Db<T> {
    /// The lines in file order.
    pub lines: Vec<Line<T>>,
    /// Whether the original text ended with a newline (kept when rendering).
    pub trailing_newline: bool,
}

/// A record type of an account database.
pub trait Record: Sized + Clone + PartialEq {
    /// Number of colon-separated fields.
    const FIELDS: usize;
    /// Parses the fields of one line.
    fn from_fields(f: &[&str]) -> Option<Self>;
    /// Renders the record as one line (no newline).
    fn render(&self) -> String;
    /// The record's name (first field).
    fn name(&self) -> &str;
}

impl<T: Record> Db<T> {
    /// Parses a database; never fails (unparsable lines are kept verbatim, a `\r` stays part of
    /// its line). Callers bound the input: files are read with a size limit, [`MAX_BYTES`].
    pub fn parse(text: &str) -> Db<T> {
        let trailing_newline = text.ends_with('\n') || text.is_empty();
        let body = text.strip_suffix('\n').unwrap_or(text);
        let split = if text.is_empty() {
            Vec::new()
        } else {
            body.split('\n').collect()
        };
        let lines = split
            .into_iter()
            .map(|l| {
                let fields: Vec<&str> = l.split(':').collect();
                if fields.len() == T::FIELDS
                    && !l.contains('\0')
                    && !l.starts_with('#')
                    && !l.starts_with('+')
                    && !l.starts_with('-')
                {
                    match T::from_fields(&fields) {
                        Some(r) if r.render() == l => Line::Entry(r),
                        _ => Line::Verbatim(l.to_string()),
                    }
                } else {
                    Line::Verbatim(l.to_string())
                }
            })
            .collect();
        Db {
            lines,
            trailing_newline,
        }
    }

    /// [`Db::parse`] with the limits of a real system: at most [`MAX_BYTES`] bytes and
    /// [`MAX_LINES`] lines.
    ///
    /// # Errors
    /// When `text` (named `what` in the message) is larger.
    pub fn parse_bounded(what: &str, text: &str) -> Result<Db<T>, String> {
        if text.len() > MAX_BYTES {
            return Err(format!(
                "{what} is {} bytes, more than the limit of {MAX_BYTES}",
                text.len()
            ));
        }
        let lines = text.bytes().filter(|b| *b == b'\n').count();
        if lines > MAX_LINES {
            return Err(format!(
                "{what} has {lines} lines, more than the limit of {MAX_LINES}"
            ));
        }
        Ok(Db::parse(text))
    }

    /// Checks that every entry renders to one line that parses back to the same record: no
    /// field holds a newline, NUL or a separator (`:`, `,` in member lists). The writer's last
    /// line of defence; profile validation rejects such values long before.
    ///
    /// # Errors
    /// The name of the first bad entry (its fields are not shown: they may be secret).
    pub fn check(&self) -> Result<(), String> {
        for r in self.entries() {
            let line = r.render();
            let fields: Vec<&str> = line.split(':').collect();
            let same = !line.contains(['\n', '\0'])
                && fields.len() == T::FIELDS
                && T::from_fields(&fields).is_some_and(|p| p == *r);
            if !same {
                let name: String = r.name().escape_debug().take(64).collect();
                return Err(format!(
                    "refusing to write the entry of `{name}`: a field holds `:`, `,`, a newline or a NUL"
                ));
            }
        }
        Ok(())
    }

    /// Renders the database after [`Db::check`].
    ///
    /// # Errors
    /// As [`Db::check`].
    pub fn render_checked(&self) -> Result<String, String> {
        self.check()?;
        Ok(self.render())
    }

    /// Renders the database back to text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, l) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            match l {
                Line::Entry(r) => out.push_str(&r.render()),
                Line::Verbatim(s) => out.push_str(s),
            }
        }
        if self.trailing_newline && !self.lines.is_empty() {
            out.push('\n');
        }
        out
    }

    /// Iterates over the parsed entries.
    pub fn entries(&self) -> impl Iterator<Item = &T> {
        self.lines.iter().filter_map(|l| match l {
            Line::Entry(r) => Some(r),
            Line::Verbatim(_) => None,
        })
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.entries().find(|r| r.name() == name)
    }

    /// The entry called `name`, mutably.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        self.lines.iter_mut().find_map(|l| match l {
            Line::Entry(r) if r.name() == name => Some(r),
            _ => None,
        })
    }

    /// Appends an entry at the end.
    pub fn push(&mut self, rec: T) {
        self.lines.push(Line::Entry(rec));
        self.trailing_newline = true;
    }
}

/// [`Db::parse_bounded`] as a crate error: a database over the limits is refused (exit 2).
///
/// # Errors
/// [`crate::error::Error::Unsafe`] when `text` is over [`MAX_BYTES`] or [`MAX_LINES`].
pub fn parse_db<T: Record>(what: &str, text: &str) -> crate::error::Result<Db<T>> {
    Db::parse_bounded(what, text).map_err(|reason| crate::error::Error::Unsafe {
        reason,
        hint: "an account database this large is not a real system's: check the root".into(),
    })
}

/// A line of `etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwd {
    /// Login name.
    pub name: String,
    /// Password placeholder (normally `x`).
    pub password: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// GECOS / comment.
    pub gecos: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

impl Record for Passwd {
    const FIELDS: usize = 7;
    fn from_fields(f: &[&str]) -> Option<Self> {
        Some(Passwd {
            name: f[0].to_string(),
            password: f[1].to_string(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            gecos: f[4].to_string(),
            home: f[5].to_string(),
            shell: f[6].to_string(),
        })
    }
    fn render(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}:{}:{}",
            self.name, self.password, self.uid, self.gid, self.gecos, self.home, self.shell
        )
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// A line of `etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Password placeholder.
    pub password: String,
    /// Group id.
    pub gid: u32,
    /// Supplementary members.
    pub members: Vec<String>,
}

fn split_members(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}

impl Record for Group {
    const FIELDS: usize = 4;
    fn from_fields(f: &[&str]) -> Option<Self> {
        Some(Group {
            name: f[0].to_string(),
            password: f[1].to_string(),
            gid: f[2].parse().ok()?,
            members: split_members(f[3]),
        })
    }
    fn render(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.name,
            self.password,
            self.gid,
            self.members.join(",")
        )
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// A line of `etc/shadow`. Numeric fields are kept as text (they may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    /// Login name.
    pub name: String,
    /// Password hash, or `!`/`*` (locked / no password).
    pub hash: String,
    /// Days since 1970-01-01 of the last change.
    pub last_change: String,
    /// Minimum days between changes.
    pub min: String,
    /// Maximum days a password is valid.
    pub max: String,
    /// Warning days before expiry.
    pub warn: String,
    /// Days of inactivity after expiry before the account is disabled.
    pub inactive: String,
    /// Account expiry (days since 1970-01-01).
    pub expire: String,
    /// Reserved.
    pub reserved: String,
}

impl Shadow {
    /// True when the hash field cannot be used to log in with a password.
    pub fn password_locked(&self) -> bool {
        self.hash.is_empty() || self.hash.starts_with('!') || self.hash.starts_with('*')
    }

    /// True when the field holds a usable password hash.
    pub fn has_password(&self) -> bool {
        !self.password_locked()
    }
}

impl Record for Shadow {
    const FIELDS: usize = 9;
    fn from_fields(f: &[&str]) -> Option<Self> {
        Some(Shadow {
            name: f[0].to_string(),
            hash: f[1].to_string(),
            last_change: f[2].to_string(),
            min: f[3].to_string(),
            max: f[4].to_string(),
            warn: f[5].to_string(),
            inactive: f[6].to_string(),
            expire: f[7].to_string(),
            reserved: f[8].to_string(),
        })
    }
    fn render(&self) -> String {
        [
            self.name.as_str(),
            &self.hash,
            &self.last_change,
            &self.min,
            &self.max,
            &self.warn,
            &self.inactive,
            &self.expire,
            &self.reserved,
        ]
        .join(":")
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// A line of `etc/gshadow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GShadow {
    /// Group name.
    pub name: String,
    /// Group password hash or `!`/`*`.
    pub password: String,
    /// Administrators.
    pub admins: Vec<String>,
    /// Members.
    pub members: Vec<String>,
}

impl Record for GShadow {
    const FIELDS: usize = 4;
    fn from_fields(f: &[&str]) -> Option<Self> {
        Some(GShadow {
            name: f[0].to_string(),
            password: f[1].to_string(),
            admins: split_members(f[2]),
            members: split_members(f[3]),
        })
    }
    fn render(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.name,
            self.password,
            self.admins.join(","),
            self.members.join(",")
        )
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Passwd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// The four databases of a root, read together.
#[derive(Debug, Clone)]
pub struct Accounts {
    /// `etc/passwd`.
    pub passwd: Db<Passwd>,
    /// `etc/group`.
    pub group: Db<Group>,
    /// `etc/shadow` (`None` when the root has none).
    pub shadow: Option<Db<Shadow>>,
    /// `etc/gshadow` (`None` when the root has none).
    pub gshadow: Option<Db<GShadow>>,
}

impl Accounts {
    /// The uid of `name`.
    pub fn uid(&self, name: &str) -> Option<u32> {
        self.passwd.get(name).map(|p| p.uid)
    }

    /// The gid of group `name`.
    pub fn gid(&self, name: &str) -> Option<u32> {
        self.group.get(name).map(|g| g.gid)
    }

    /// Names of the groups `user` belongs to (primary and supplementary).
    pub fn groups_of(&self, user: &str) -> Vec<String> {
        let primary = self.passwd.get(user).map(|p| p.gid);
        self.group
            .entries()
            .filter(|g| Some(g.gid) == primary || g.members.iter().any(|m| m == user))
            .map(|g| g.name.clone())
            .collect()
    }

    /// The smallest free id in `[lo, hi]` that is neither a uid nor a gid in use.
    pub fn free_id(&self, lo: u32, hi: u32) -> Option<u32> {
        (lo..=hi).find(|id| {
            !self.passwd.entries().any(|p| p.uid == *id)
                && !self.group.entries().any(|g| g.gid == *id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n# comment\n+nis\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n";

    #[test]
    fn roundtrip_keeps_unknown_lines() {
        let db: Db<Passwd> = Db::parse(PASSWD);
        assert_eq!(db.render(), PASSWD);
        assert_eq!(db.entries().count(), 2);
        assert_eq!(db.get("alice").unwrap().uid, 1000);
    }

    #[test]
    fn groups_of_includes_primary_and_supplementary() {
        let acc = Accounts {
            passwd: Db::parse(PASSWD),
            group: Db::parse("root:x:0:\nsudo:x:27:alice,bob\nalice:x:1000:\n"),
            shadow: None,
            gshadow: None,
        };
        assert_eq!(acc.groups_of("alice"), vec!["sudo", "alice"]);
        assert_eq!(acc.free_id(1000, 60000), Some(1001));
    }

    #[test]
    fn writer_refuses_fields_with_separators() {
        let mut db: Db<Passwd> = Db::parse(PASSWD);
        assert!(db.check().is_ok());
        let good = db.get("alice").unwrap().clone();
        for (field, bad) in [
            ("shell", "/bin/sh\nevil::0:0::/root:/bin/bash"),
            ("shell", "/bin/sh:x"),
            ("gecos", "Ops: on-call"),
            ("home", "/home/a\0"),
        ] {
            let mut p = good.clone();
            match field {
                "shell" => p.shell = bad.into(),
                "gecos" => p.gecos = bad.into(),
                _ => p.home = bad.into(),
            }
            let mut d = db.clone();
            d.push(p);
            assert!(d.render_checked().is_err(), "{field}={bad:?}");
        }
        let mut g: Db<Group> = Db::parse("sudo:x:27:alice\n");
        g.get_mut("sudo").unwrap().members.push("bob,root".into());
        assert!(g.check().is_err());
        let mut s: Db<Shadow> = Db::parse("alice:!:1:0:99999:7:::\n");
        s.get_mut("alice").unwrap().hash = "$6$x:0".into();
        let e = s.check().unwrap_err();
        assert!(!e.contains("$6$"), "the hash is not shown: {e}");
        db.lines.clear();
        assert_eq!(db.render_checked().unwrap(), "");
    }

    #[test]
    fn carriage_returns_survive_a_roundtrip() {
        let t = "root:x:0:0:root:/root:/bin/bash\r\nb:x:1:1::/:/bin/sh";
        assert_eq!(Db::<Passwd>::parse(t).render(), t);
    }

    proptest! {
        #[test]
        fn any_text_roundtrips(text in "([a-z0-9:#+,/ !*$.-]{0,40}\n){0,8}") {
            let db: Db<Passwd> = Db::parse(&text);
            prop_assert_eq!(db.render(), text.clone());
            let g: Db<Group> = Db::parse(&text);
            prop_assert_eq!(g.render(), text.clone());
            let s: Db<Shadow> = Db::parse(&text);
            prop_assert_eq!(s.render(), text);
        }

        #[test]
        fn generated_entries_parse_back(name in "[a-z_][a-z0-9_-]{0,15}", uid in 0u32..70000, shell in "/[a-z/]{1,20}") {
            let p = Passwd { name: name.clone(), password: "x".into(), uid, gid: uid, gecos: String::new(), home: format!("/home/{name}"), shell };
            let db: Db<Passwd> = Db::parse(&format!("{}\n", p.render()));
            prop_assert_eq!(db.get(&name), Some(&p));
        }
    }
}
