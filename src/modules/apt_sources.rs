//! `[apt]`: extra apt repositories (PGDG, Docker CE, NodeSource …), each a deb822 file
//! `etc/apt/sources.list.d/bollwerk-<name>.sources` whose `Signed-By` names its own keyring
//! `etc/apt/keyrings/bollwerk-<name>.asc` (the armored key from the profile), so a key only
//! ever vouches for its own repository (no `trusted.gpg.d`).
//!
//! Planned before the packages module: its `apt-get update` then sees the new sources, and
//! packages from them install in the same run. Files of sources no longer in the profile are
//! removed (bollwerk owns the `bollwerk-` prefix). cloud-config `apt: sources:` maps here;
//! `$RELEASE` in a suite becomes the target's codename, as cloud-init does.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner};
use crate::error::Result;
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::{Layer, ProfileError};
use crate::root::{Perms, RelPath};

/// `[apt]`: extra repositories.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AptSection {
    /// Repositories (`[[apt.sources]]`), each with its own `signed-by` keyring.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<AptSource>,
}

/// One repository (a deb822 `.sources` file).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AptSource {
    /// Name: lower-case letters, digits and `-` (file names `bollwerk-<name>.sources/.asc`).
    pub name: String,
    /// "deb" and/or "deb-src" (default ["deb"]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Repository URIs (`https://`, `http://` or `file:`); packages are verified with the key.
    pub uris: Vec<String>,
    /// Suites, e.g. ["bookworm-pgdg"]; `$RELEASE` is replaced with the target's codename. A
    /// suite ending in `/` is a flat repository (no components).
    pub suites: Vec<String>,
    /// Components, e.g. ["main"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// Architectures, e.g. ["amd64"] (default: apt's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    /// The repository's ASCII-armored OpenPGP public key (`-----BEGIN PGP PUBLIC KEY
    /// BLOCK-----`), written to `etc/apt/keyrings/bollwerk-<name>.asc` and named in
    /// `Signed-By`. Without it apt uses its global keyrings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

const SOURCES_DIR: &str = "etc/apt/sources.list.d";
const KEYRINGS_DIR: &str = "etc/apt/keyrings";
const PREFIX: &str = "bollwerk-";

fn word_ok(w: &str) -> bool {
    !w.is_empty()
        && !w
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
}

/// Checks of `[apt]` that types cannot express.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &AptSection, layers: &[Layer]) -> std::result::Result<(), ProfileError> {
    let mut seen = Vec::new();
    for src in &s.sources {
        // Array entries are located by their `name`.
        let at = |key: &str, msg: String| {
            let mut path = vec!["apt", "sources", src.name.as_str()];
            if !key.is_empty() {
                path.push(key);
            }
            crate::profile::error_at(layers, &path, msg)
        };
        let n = &src.name;
        if n.is_empty()
            || n.len() > 64
            || !n
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(at(
                "name",
                format!("apt source name {n:?}: use lower-case letters, digits and `-`"),
            ));
        }
        if seen.contains(&n) {
            return Err(at("name", format!("apt source {n:?} is listed twice")));
        }
        seen.push(n);
        if let Some(t) = src
            .types
            .iter()
            .find(|t| !matches!(t.as_str(), "deb" | "deb-src"))
        {
            return Err(at(
                "types",
                format!("type {t:?}: expected \"deb\" or \"deb-src\""),
            ));
        }
        if src.uris.is_empty() {
            return Err(at("uris", format!("apt source {n} has no URI")));
        }
        if let Some(u) = src.uris.iter().find(|u| {
            !word_ok(u)
                || !(u.starts_with("https://")
                    || u.starts_with("http://")
                    || u.starts_with("file:"))
        }) {
            return Err(at(
                "uris",
                format!("{u:?} is not an https://, http:// or file: URI"),
            ));
        }
        if src.suites.is_empty() {
            return Err(at("suites", format!("apt source {n} has no suite")));
        }
        for list in [&src.suites, &src.components, &src.architectures] {
            if let Some(w) = list.iter().find(|w| !word_ok(w)) {
                return Err(at(
                    "",
                    format!("{w:?} in apt source {n} is not a single word"),
                ));
            }
        }
        let flat = src.suites.iter().all(|s| s.ends_with('/'));
        if flat != src.components.is_empty() {
            return Err(at(
                "components",
                format!(
                    "apt source {n}: a suite ending in `/` takes no components, any other suite needs them"
                ),
            ));
        }
        if let Some(k) = &src.key {
            let k = k.trim();
            if !k.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
                || !k.ends_with("-----END PGP PUBLIC KEY BLOCK-----")
                || k.len() > 256 * 1024
            {
                return Err(at(
                    "key",
                    format!("the key of apt source {n} is not one ASCII-armored OpenPGP public key block"),
                )
                .with_hint("paste the output of `gpg --armor --export KEYID` (or the vendor's .asc file)"));
            }
        }
    }
    Ok(())
}

/// The deb822 text of one source.
pub fn render_source(src: &AptSource, codename: &str) -> String {
    let types = if src.types.is_empty() {
        "deb".to_string()
    } else {
        src.types.join(" ")
    };
    let suites: Vec<String> = src
        .suites
        .iter()
        .map(|s| s.replace("$RELEASE", codename))
        .collect();
    let mut s = format!(
        "{MANAGED_HEADER}\nTypes: {types}\nURIs: {}\nSuites: {}\n",
        src.uris.join(" "),
        suites.join(" ")
    );
    if !src.components.is_empty() {
        s.push_str(&format!("Components: {}\n", src.components.join(" ")));
    }
    if !src.architectures.is_empty() {
        s.push_str(&format!("Architectures: {}\n", src.architectures.join(" ")));
    }
    if src.key.is_some() {
        s.push_str(&format!(
            "Signed-By: /{KEYRINGS_DIR}/{PREFIX}{}.asc\n",
            src.name
        ));
    }
    s
}

/// The apt sources module.
pub struct AptSources;

impl Module for AptSources {
    fn name(&self) -> &'static str {
        "apt"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(section) = cx.profile.profile.apt.as_ref() else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        let codename = cx.facts.os.codename.clone();
        if codename.is_empty()
            && section
                .sources
                .iter()
                .any(|s| s.suites.iter().any(|x| x.contains("$RELEASE")))
        {
            p.note(
                Level::Warning,
                "the target's os-release has no VERSION_CODENAME: `$RELEASE` in apt suites stays empty",
            );
        }
        let mut wanted = Vec::new();
        for src in &section.sources {
            let file = RelPath::new(&format!("{SOURCES_DIR}/{PREFIX}{}.sources", src.name))
                .map_err(crate::error::Error::Runtime)?;
            if let Some(key) = &src.key {
                let ring = RelPath::new(&format!("{KEYRINGS_DIR}/{PREFIX}{}.asc", src.name))
                    .map_err(crate::error::Error::Runtime)?;
                let mut text = key.trim().to_string();
                text.push('\n');
                p.file(
                    &cx.root,
                    &ring,
                    text,
                    Perms::root(0o644),
                    format!("keyring of apt source {} ({ring})", src.name),
                )?;
                wanted.push(ring);
            }
            p.file(
                &cx.root,
                &file,
                render_source(src, &codename),
                Perms::root(0o644),
                format!("apt source {} ({file})", src.name),
            )?;
            wanted.push(file);
        }
        // Sources and keyrings bollwerk wrote earlier that the profile no longer lists.
        for (dir, ext) in [(SOURCES_DIR, ".sources"), (KEYRINGS_DIR, ".asc")] {
            let d = RelPath::lit(dir);
            if !cx.root.exists(&d) {
                continue;
            }
            for name in cx.root.list_dir(&d)? {
                if !name.starts_with(PREFIX) || !name.ends_with(ext) {
                    continue;
                }
                let rel = d.join(&name).map_err(crate::error::Error::Runtime)?;
                if !wanted.contains(&rel) {
                    p.remove(
                        &cx.root,
                        &rel,
                        format!("remove {rel} (no longer in [apt] sources)"),
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_with_signed_by_and_release() {
        let src = AptSource {
            name: "pgdg".into(),
            types: Vec::new(),
            uris: vec!["https://apt.example.org/pub/repos/apt".into()],
            suites: vec!["$RELEASE-pgdg".into()],
            components: vec!["main".into()],
            architectures: vec!["amd64".into()],
            key: Some(
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\nx\n-----END PGP PUBLIC KEY BLOCK-----"
                    .into(),
            ),
        };
        let s = render_source(&src, "bookworm");
        assert!(s.starts_with(MANAGED_HEADER), "{s}");
        assert!(
            s.ends_with("Types: deb\nURIs: https://apt.example.org/pub/repos/apt\nSuites: bookworm-pgdg\nComponents: main\nArchitectures: amd64\nSigned-By: /etc/apt/keyrings/bollwerk-pgdg.asc\n"),
            "{s}"
        );
    }
}
