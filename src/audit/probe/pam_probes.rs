//! PAM and password-ageing probes: they judge the effective state from [`crate::state::pam`]
//! and [`crate::state::accounts`].

use super::*;

/// What a `pam` probe asks.
pub(super) struct PamQuery<'a> {
    pub(super) file: &'a str,
    pub(super) pam_type: &'a str,
    pub(super) module: &'a str,
    pub(super) present: bool,
    pub(super) args_present: &'a [String],
    pub(super) args_absent: &'a [String],
    pub(super) arg: Option<&'a str>,
    pub(super) expect: Option<&'a Expect>,
    pub(super) group_empty: bool,
}

/// The lines of `type module` in the effective stack of `file` (state layer), or the
/// outcome when there are none.
fn pam_hits(
    cx: &AuditCx,
    file: &str,
    pam_type: &str,
    module: &str,
) -> Result<Vec<PamLine>, Outcome> {
    match pam::stack(&cx.root, file) {
        Err(e) => Err(Outcome::error(e)),
        Ok(None) => Err(Outcome::fail(format!("/etc/pam.d/{file} does not exist"))),
        Ok(Some(lines)) => Ok(lines
            .into_iter()
            .filter(|l| l.pam_type == pam_type && l.module == module)
            .collect()),
    }
}

fn pam_line_text(h: &PamLine) -> String {
    format!(
        "{} {} {} {} ({})",
        h.pam_type,
        h.control,
        h.module,
        h.args.join(" "),
        h.at
    )
}

pub(super) fn pam_probe(cx: &AuditCx, q: &PamQuery) -> Outcome {
    let hits = match pam_hits(cx, q.file, q.pam_type, q.module) {
        Ok(h) => h,
        Err(o) => return o,
    };
    let (pam_type, module, file) = (q.pam_type, q.module, q.file);
    if !q.present {
        // A line whose failure is ignored still runs the module (e.g. nullok parsing), so
        // "absent" means absent.
        return Outcome::judge(
            hits.is_empty(),
            if hits.is_empty() {
                format!("no {pam_type} {module} in /etc/pam.d/{file}")
            } else {
                format!(
                    "{pam_type} {module} at {}",
                    hits.iter()
                        .map(|h| h.at.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        );
    }
    if hits.is_empty() {
        return Outcome::fail(format!(
            "no {pam_type} {module} line in /etc/pam.d/{file} (includes followed)"
        ));
    }
    let mut outs = Vec::new();
    for h in &hits {
        let ev = pam_line_text(h);
        let mut why = Vec::new();
        if !h.enforcing() {
            why.push(format!(
                "control {} ignores a failure of {module}",
                h.control
            ));
        }
        let name_of = |a: &str| a.split('=').next().unwrap_or(a).to_string();
        for a in q.args_present {
            if !h.args.iter().any(|x| x == a || name_of(x) == *a) {
                why.push(format!("lacks {a}"));
            }
        }
        for a in q.args_absent {
            if h.args.iter().any(|x| x == a || name_of(x) == *a) {
                why.push(format!("has {a}"));
            }
        }
        let mut o = if why.is_empty() {
            Outcome::pass(ev.clone())
        } else {
            Outcome::fail(format!("{ev}: {}", why.join(", ")))
        };
        if let (Some(a), Some(e), Status::Pass) = (q.arg, q.expect, o.status) {
            let v = h.arg(a);
            o = judge(e, a, v.as_deref(), &h.at);
            if q.group_empty && o.status == Status::Pass {
                o = group_empty_outcome(cx, v.as_deref().unwrap_or(""), &h.at);
            }
        }
        outs.push(o);
    }
    combine_all(outs)
}

fn group_empty_outcome(cx: &AuditCx, group: &str, at: &str) -> Outcome {
    match pam::group_members(&cx.root, group) {
        Err(e) => Outcome::error(e),
        Ok(None) => Outcome::fail(format!("group={group} ({at}): no such group in /etc/group")),
        Ok(Some(m)) if m.is_empty() => Outcome::pass(format!(
            "group={group} ({at}); the group has no members (/etc/group, /etc/passwd)"
        )),
        Ok(Some(m)) => Outcome::fail(format!(
            "group={group} ({at}) has members: {} (/etc/group, /etc/passwd): they can su",
            list_some(&m)
        )),
    }
}

pub(super) fn pam_option_probe(
    cx: &AuditCx,
    file: &str,
    pam_type: &str,
    module: &str,
    option: &str,
    expect: &Expect,
) -> Outcome {
    let hits = match pam_hits(cx, file, pam_type, module) {
        Ok(h) => h,
        Err(o) => return o,
    };
    if hits.is_empty() {
        return Outcome::fail(format!(
            "no {pam_type} {module} line in /etc/pam.d/{file} (includes followed): {option} is not enforced"
        ));
    }
    let (enforcing, ignored): (Vec<&PamLine>, Vec<&PamLine>) =
        hits.iter().partition(|h| h.enforcing());
    if enforcing.is_empty() {
        return Outcome::fail(format!(
            "{}: a failure of {module} is ignored, so {option} is not enforced",
            ignored
                .iter()
                .map(|h| pam_line_text(h))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    combine_all(
        enforcing
            .iter()
            .map(|h| match pam::effective_options(&cx.root, h) {
                Err(e) => Outcome::error(e),
                Ok(opts) => {
                    let v = opts.get(option);
                    let src = v.map_or_else(
                        || {
                            format!(
                                "{}, {}",
                                h.at,
                                pam::conf_files(&cx.root, h)
                                    .iter()
                                    .map(|f| format!("/{f}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        },
                        |v| v.source.clone(),
                    );
                    judge(expect, option, v.map(|v| v.value.as_str()), &src)
                }
            })
            .collect(),
    )
}

pub(super) fn shadow_ageing_probe(cx: &AuditCx, field: AgeingField, expect: &Expect) -> Outcome {
    let Some(all) = crate::state::accounts::ageing(&cx.facts.accounts) else {
        return Outcome::not_evaluated(
            "the root has no etc/shadow: existing accounts' ageing is not readable here",
        );
    };
    let with_pw: Vec<_> = all.iter().filter(|a| a.has_password).collect();
    if with_pw.is_empty() {
        return Outcome::pass(format!(
            "no account has a usable password ({} entries in /etc/shadow)",
            all.len()
        ));
    }
    let name = field.as_str();
    let bad: Vec<String> = with_pw
        .iter()
        .filter_map(|a| {
            let v = a.get(field).map(|v| v.to_string());
            let o = judge(expect, name, v.as_deref(), &a.at);
            (o.status != Status::Pass).then(|| {
                format!(
                    "{} {name} {} ({})",
                    a.name,
                    v.as_deref().unwrap_or("empty"),
                    a.at
                )
            })
        })
        .collect();
    if bad.is_empty() {
        Outcome::pass(format!(
            "{} account(s) with a password: {} (/etc/shadow)",
            with_pw.len(),
            list_some(
                &with_pw
                    .iter()
                    .map(|a| format!(
                        "{} {name} {}",
                        a.name,
                        a.get(field).map_or("empty".into(), |v| v.to_string())
                    ))
                    .collect::<Vec<_>>()
            )
        ))
    } else {
        Outcome::fail(format!(
            "existing accounts outside the policy: {}",
            list_some(&bad)
        ))
    }
}
