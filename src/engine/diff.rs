//! Rendering planned changes as unified diffs (via `similar`), with secrets masked.

use similar::TextDiff;

use super::{Action, Change, Visibility};
use crate::root::Entry;

/// Masks the second colon-separated field of every line (password hashes in `etc/shadow`)
/// unless it is a lock marker or empty.
pub fn mask_hashes(text: &str) -> String {
    text.lines()
        .map(|l| {
            let mut parts: Vec<&str> = l.splitn(3, ':').collect();
            if parts.len() == 3
                && !matches!(parts[1], "" | "!" | "*" | "!*" | "x")
                && !l.starts_with('#')
            {
                let locked = parts[1].starts_with('!');
                parts[1] = if locked { "!<hash>" } else { "<hash>" };
            }
            parts.join(":")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if text.ends_with('\n') { "\n" } else { "" }
}

/// A unified diff of `old` → `new` with `/path` headers; empty when equal.
pub fn unified(path: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    let diff = TextDiff::from_lines(old, new);
    let mut out = diff
        .unified_diff()
        .context_radius(3)
        .header(if old.is_empty() { "/dev/null" } else { path }, path)
        .to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The diff (or description) of one change, for `plan` output. Binary content is described,
/// never dumped.
pub fn render(change: &Change) -> String {
    match &change.action {
        Action::WriteFile {
            path,
            content,
            visibility,
            ..
        } => {
            let p = path.to_string();
            match visibility {
                Visibility::Secret => format!(
                    "content hidden ({} bytes, sha256 {})\n",
                    content.len(),
                    &crate::root::sha256_hex(content)[..16]
                ),
                Visibility::Brief => format!(
                    "({} lines, not shown)\n",
                    String::from_utf8_lossy(content).lines().count()
                ),
                _ => {
                    let old = change.old_content.as_deref().unwrap_or_default();
                    let (Ok(old), Ok(new)) =
                        (std::str::from_utf8(old), std::str::from_utf8(content))
                    else {
                        return format!("binary content ({} bytes)\n", content.len());
                    };
                    if *visibility == Visibility::MaskHashes {
                        unified(&p, &mask_hashes(old), &mask_hashes(new))
                    } else {
                        unified(&p, old, new)
                    }
                }
            }
        }
        Action::Symlink { target, .. } => match &change.before {
            Entry::Symlink { target: old, .. } => format!("symlink -> {old}  ⇒  -> {target}\n"),
            _ => format!("symlink -> {target}\n"),
        },
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_only_real_hashes() {
        let t = "root:*:1::::::\nalice:$6$x$y:1::::::\nbob:!$y$z:1::::::\n";
        assert_eq!(
            mask_hashes(t),
            "root:*:1::::::\nalice:<hash>:1::::::\nbob:!<hash>:1::::::\n"
        );
    }

    #[test]
    fn unified_has_headers() {
        let d = unified("/etc/x", "a\nb\n", "a\nc\n");
        assert!(d.starts_with("--- /etc/x\n+++ /etc/x\n"), "{d}");
        assert!(d.contains("-b\n+c\n"));
        assert_eq!(unified("/etc/x", "a", "a"), "");
    }
}
