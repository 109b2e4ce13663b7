//! Judging one observed value against an [`Expect`], and describing an `Expect` in words.

use regex::Regex;

use super::check::{Expect, Missing};
use super::result::Status;

/// The outcome of a probe: a status and the evidence (observed value and its source, or the
/// reason for `not_applicable`/`error`/`skipped`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The status.
    pub status: Status,
    /// The evidence.
    pub evidence: String,
}

impl Outcome {
    /// A passing outcome.
    pub fn pass(evidence: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Pass,
            evidence: evidence.into(),
        }
    }
    /// A failing outcome.
    pub fn fail(evidence: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Fail,
            evidence: evidence.into(),
        }
    }
    /// Not applicable, with the reason.
    pub fn na(reason: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::NotApplicable,
            evidence: reason.into(),
        }
    }
    /// Could not decide, with the reason.
    pub fn error(reason: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Error,
            evidence: reason.into(),
        }
    }
    /// The needed fact cannot be read here, with the reason (never a pass).
    pub fn not_evaluated(reason: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::NotEvaluated,
            evidence: reason.into(),
        }
    }
    /// Not judged, with the reason.
    pub fn skipped(reason: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Skipped,
            evidence: reason.into(),
        }
    }
    /// Pass when `ok`, else fail, with the same evidence.
    pub fn judge(ok: bool, evidence: impl Into<String>) -> Outcome {
        if ok {
            Outcome::pass(evidence)
        } else {
            Outcome::fail(evidence)
        }
    }
    /// The outcome for a missing thing, according to `missing`.
    pub fn missing(missing: Missing, evidence: impl Into<String>) -> Outcome {
        match missing {
            Missing::Fail => Outcome::fail(evidence),
            Missing::Pass => Outcome::pass(evidence),
            Missing::NotApplicable => Outcome::na(evidence),
        }
    }
}

fn list_items(v: &str) -> Vec<String> {
    v.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase())
        .collect()
}

fn integers(v: &str) -> Vec<i64> {
    v.split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn parse_int(v: &str) -> Option<i64> {
    let t = v.trim().trim_matches('"');
    t.parse().ok().or_else(|| {
        // Allow hex (0x…) as printed by some tools.
        t.strip_prefix("0x")
            .and_then(|h| i64::from_str_radix(h, 16).ok())
    })
}

/// Parses a duration: `600`, `10m`, `1h 30m`, `1d`, `2w`, `-1` (forever: `i64::MAX`).
pub fn parse_duration(v: &str) -> Option<i64> {
    let v = v.trim().trim_matches('"');
    if v == "-1" {
        return Some(i64::MAX);
    }
    let mut total = 0i64;
    let mut num = String::new();
    let mut any = false;
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        if c.is_whitespace() {
            continue;
        }
        let mut unit = c.to_string();
        while let Some(n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(*n);
                chars.next();
            } else {
                break;
            }
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        let mult = match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" | "seconds" => 1,
            "m" | "min" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 604_800,
            _ => return None,
        };
        total += n * mult;
        any = true;
    }
    if !num.is_empty() {
        total += num.parse::<i64>().ok()?;
        any = true;
    }
    any.then_some(total)
}

/// Why `value` does not satisfy `e` (`None`: it does).
pub fn violation(e: &Expect, value: &str) -> Option<String> {
    let v = value.trim();
    let lv = v.to_ascii_lowercase();
    if let Some(eq) = &e.equals
        && lv != eq.to_ascii_lowercase()
    {
        return Some(format!("not {eq}"));
    }
    if !e.one_of.is_empty() && !e.one_of.iter().any(|o| o.eq_ignore_ascii_case(v)) {
        return Some(format!("not one of {}", e.one_of.join(", ")));
    }
    if let Some(bad) = e.not_one_of.iter().find(|o| o.eq_ignore_ascii_case(v)) {
        return Some(format!("{bad} is not allowed"));
    }
    if e.min.is_some() || e.max.is_some() {
        let Some(n) = parse_int(v) else {
            return Some("not a number".into());
        };
        if let Some(min) = e.min
            && n < min
        {
            return Some(format!("less than {min}"));
        }
        if let Some(max) = e.max
            && n > max
        {
            return Some(format!("more than {max}"));
        }
    }
    if let Some(re) = &e.matches
        && !Regex::new(re).is_ok_and(|r| r.is_match(v))
    {
        return Some(format!("does not match /{re}/"));
    }
    if let Some(re) = &e.not_matches
        && Regex::new(re).is_ok_and(|r| r.is_match(v))
    {
        return Some(format!("matches /{re}/"));
    }
    let items = list_items(v);
    let bad: Vec<&String> = e
        .list_none_of
        .iter()
        .filter(|b| items.contains(&b.to_ascii_lowercase()))
        .collect();
    if !bad.is_empty() {
        return Some(format!(
            "contains {}",
            bad.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let lacking: Vec<&String> = e
        .list_all_of
        .iter()
        .filter(|b| !items.contains(&b.to_ascii_lowercase()))
        .collect();
    if !lacking.is_empty() {
        return Some(format!(
            "lacks {}",
            lacking
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !e.list_subset_of.is_empty() {
        if items.is_empty() {
            return Some("empty".into());
        }
        let extra: Vec<&String> = items
            .iter()
            .filter(|i| !e.list_subset_of.iter().any(|a| a.eq_ignore_ascii_case(i)))
            .collect();
        if !extra.is_empty() {
            return Some(format!(
                "{} not allowed",
                extra
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if e.min_seconds.is_some() || e.max_seconds.is_some() {
        let Some(secs) = parse_duration(v) else {
            return Some("not a duration".into());
        };
        if let Some(min) = e.min_seconds
            && secs != i64::MAX
            && secs < min
        {
            return Some(format!("shorter than {min} s"));
        }
        if let Some(max) = e.max_seconds
            && secs > max
        {
            return Some(format!("longer than {max} s"));
        }
    }
    if !e.numbers_max.is_empty() || !e.numbers_min.is_empty() {
        let ns = integers(v);
        for (i, max) in e.numbers_max.iter().enumerate() {
            match ns.get(i) {
                Some(n) if n <= max => {}
                Some(n) => return Some(format!("{n} is more than {max}")),
                None => return Some(format!("lacks a number at position {}", i + 1)),
            }
        }
        for (i, min) in e.numbers_min.iter().enumerate() {
            match ns.get(i) {
                Some(n) if n >= min => {}
                Some(n) => return Some(format!("{n} is less than {min}")),
                None => return Some(format!("lacks a number at position {}", i + 1)),
            }
        }
    }
    None
}

/// Judges an observed value. `shown` is how the observation is named in the evidence
/// (`permitrootlogin yes (sshd -T)` is built from `name`, the value and `source`).
pub fn judge(e: &Expect, name: &str, value: Option<&str>, source: &str) -> Outcome {
    match value {
        Some(v) => {
            let ev = format!("{name} {} ({source})", shown(v));
            match violation(e, v) {
                None => Outcome::pass(ev),
                Some(why) => Outcome::fail(format!("{ev}: {why}")),
            }
        }
        None => match &e.default {
            Some(d) => {
                let ev = format!("{name} not set ({source}); default {}", shown(d));
                match violation(e, d) {
                    None => Outcome::pass(ev),
                    Some(why) => Outcome::fail(format!("{ev}: {why}")),
                }
            }
            None => Outcome::missing(e.missing, format!("{name} not set ({source})")),
        },
    }
}

fn shown(v: &str) -> String {
    let v = v.trim();
    if v.is_empty() {
        "\"\"".into()
    } else if v.chars().count() > 200 {
        format!("{}…", v.chars().take(200).collect::<String>())
    } else {
        v.to_string()
    }
}

/// The expectation in words (`= no`, `≤ 4`, `none of 3des-cbc, …`).
pub fn describe(e: &Expect) -> String {
    let mut parts = Vec::new();
    if let Some(v) = &e.equals {
        parts.push(format!("= {v}"));
    }
    if !e.one_of.is_empty() {
        parts.push(format!("one of {}", e.one_of.join(", ")));
    }
    if !e.not_one_of.is_empty() {
        parts.push(format!("not {}", e.not_one_of.join(", ")));
    }
    match (e.min, e.max) {
        (Some(a), Some(b)) => parts.push(format!("between {a} and {b}")),
        (Some(a), None) => parts.push(format!("≥ {a}")),
        (None, Some(b)) => parts.push(format!("≤ {b}")),
        (None, None) => {}
    }
    if let Some(r) = &e.matches {
        parts.push(format!("matching /{r}/"));
    }
    if let Some(r) = &e.not_matches {
        parts.push(format!("not matching /{r}/"));
    }
    if !e.list_none_of.is_empty() {
        parts.push(format!("without {}", e.list_none_of.join(", ")));
    }
    if !e.list_all_of.is_empty() {
        parts.push(format!("including {}", e.list_all_of.join(", ")));
    }
    if !e.list_subset_of.is_empty() {
        parts.push(format!("only {}", e.list_subset_of.join(", ")));
    }
    match (e.min_seconds, e.max_seconds) {
        (Some(a), Some(b)) => parts.push(format!("between {a} s and {b} s")),
        (Some(a), None) => parts.push(format!("≥ {a} s")),
        (None, Some(b)) => parts.push(format!("≤ {b} s")),
        (None, None) => {}
    }
    if !e.numbers_max.is_empty() {
        parts.push(format!(
            "numbers ≤ {}",
            e.numbers_max
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(":")
        ));
    }
    if !e.numbers_min.is_empty() {
        parts.push(format!(
            "numbers ≥ {}",
            e.numbers_min
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(":")
        ));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions() {
        let e = Expect {
            equals: Some("no".into()),
            ..Default::default()
        };
        assert_eq!(violation(&e, "No"), None);
        assert!(violation(&e, "yes").is_some());
        let e = Expect {
            max: Some(4),
            min: Some(1),
            ..Default::default()
        };
        assert_eq!(violation(&e, "4"), None);
        assert!(violation(&e, "6").is_some());
        assert!(violation(&e, "0").is_some());
        assert!(violation(&e, "x").is_some());
        let e = Expect {
            list_none_of: vec!["3des-cbc".into()],
            ..Default::default()
        };
        assert_eq!(violation(&e, "aes256-ctr,aes128-ctr"), None);
        assert!(violation(&e, "aes256-ctr,3des-cbc").is_some());
        let e = Expect {
            numbers_max: vec![10, i64::MAX, 60],
            numbers_min: vec![0, 30],
            ..Default::default()
        };
        assert_eq!(violation(&e, "10:30:60"), None);
        assert!(violation(&e, "10:30:100").is_some());
        assert!(violation(&e, "10:20:60").is_some());
        let e = Expect {
            list_subset_of: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        assert_eq!(violation(&e, "a b"), None);
        assert!(violation(&e, "a c").is_some());
        assert!(violation(&e, "").is_some());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600"), Some(600));
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("1h 30m"), Some(5400));
        assert_eq!(parse_duration("-1"), Some(i64::MAX));
        assert_eq!(parse_duration("x"), None);
        let e = Expect {
            min_seconds: Some(600),
            ..Default::default()
        };
        assert_eq!(violation(&e, "1h"), None);
        assert!(violation(&e, "5m").is_some());
    }

    #[test]
    fn missing_and_default() {
        let e = Expect {
            equals: Some("no".into()),
            default: Some("yes".into()),
            ..Default::default()
        };
        let o = judge(&e, "x11forwarding", None, "static");
        assert_eq!(o.status, Status::Fail);
        assert!(o.evidence.contains("default yes"), "{}", o.evidence);
        let e = Expect {
            equals: Some("no".into()),
            missing: Missing::NotApplicable,
            ..Default::default()
        };
        assert_eq!(judge(&e, "k", None, "f").status, Status::NotApplicable);
        assert_eq!(
            judge(&e, "k", Some("no"), "f").evidence,
            "k no (f)".to_string()
        );
    }
}
