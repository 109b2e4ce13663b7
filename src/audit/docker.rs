//! The `docker_daemon` probe: a Docker daemon setting as dockerd would read it — from
//! `etc/docker/daemon.json` and from the flags of `docker.service`'s effective `ExecStart`
//! (unit file and `docker.service.d/*.conf` drop-ins; dockerd refuses a key set in both) — judged
//! with an `expect` table. Dotted keys reach into objects (`log-opts.max-size`). Read-only.

use serde_json::Value;

use super::check::Expect;
use super::expect::{Outcome, judge};
use super::facts::AuditCx;

/// The daemon.json path in the root.
pub const DAEMON_JSON: &str = "etc/docker/daemon.json";

/// A JSON value as one word for judging: booleans and numbers as text, lists joined with `,`,
/// objects as sorted `k=v` pairs.
pub fn flatten(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(flatten).collect::<Vec<_>>().join(","),
        Value::Object(o) => {
            let mut kv: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{k}={}", flatten(v)))
                .collect();
            kv.sort();
            kv.join(",")
        }
    }
}

/// Looks up a dotted key in a JSON object.
pub fn lookup<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    let mut cur = root;
    for part in key.split('.') {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

/// dockerd's flag name for a daemon.json key (`hosts` is `-H`/`--host`).
fn flag_names(key: &str) -> Vec<String> {
    match key {
        "hosts" => vec!["-H".into(), "--host".into()],
        "insecure-registries" => vec!["--insecure-registry".into()],
        "log-opts" => vec!["--log-opt".into()],
        k => vec![format!("--{k}")],
    }
}

/// The value of `key` among dockerd's command-line flags (`--icc=false`, `--icc false`,
/// `--live-restore`, repeated flags joined with `,`).
pub fn flag_value(exec: &str, key: &str) -> Option<String> {
    let names = flag_names(key);
    let words: Vec<&str> = exec.split_whitespace().collect();
    let mut vals = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        for n in &names {
            if let Some(v) = w.strip_prefix(&format!("{n}=")) {
                vals.push(v.to_string());
            } else if w == n {
                match words.get(i + 1) {
                    Some(next) if !next.starts_with('-') => {
                        vals.push((*next).to_string());
                        i += 1;
                    }
                    _ => vals.push("true".into()),
                }
            }
        }
        i += 1;
    }
    (!vals.is_empty()).then(|| vals.join(","))
}

/// The effective `ExecStart` of docker.service and where it comes from.
fn exec_start(cx: &AuditCx) -> Option<(String, String)> {
    let (unit, _) = cx.unit_file("docker.service")?;
    let mut files = vec![unit];
    files.extend(cx.glob("etc/systemd/system/docker.service.d/*.conf"));
    let mut found: Option<(String, String)> = None;
    for f in files {
        let Ok(Some(text)) = cx.read(&f) else {
            continue;
        };
        for line in text.lines() {
            if let Some(v) = line.trim().strip_prefix("ExecStart=") {
                found = (!v.trim().is_empty()).then(|| (v.trim().to_string(), f.clone()));
            }
        }
    }
    found
}

/// Evaluates a `docker_daemon` probe.
pub fn daemon_probe(cx: &AuditCx, key: &str, expect: &Expect) -> Outcome {
    let json = match cx.read(DAEMON_JSON) {
        Ok(Some(t)) if t.trim().is_empty() => Value::Object(Default::default()),
        Ok(Some(t)) => match serde_json::from_str::<Value>(&t) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Outcome::error(format!("{DAEMON_JSON} is not a JSON object")),
            Err(e) => return Outcome::error(format!("{DAEMON_JSON} is not valid JSON: {e}")),
        },
        Ok(None) => Value::Object(Default::default()),
        Err(e) => return Outcome::error(e),
    };
    if let Some(v) = lookup(&json, key) {
        return judge(expect, key, Some(&flatten(v)), DAEMON_JSON);
    }
    let exec = exec_start(cx);
    if let Some((cmd, file)) = &exec
        && let Some(v) = flag_value(cmd, key)
    {
        return judge(expect, key, Some(&v), &format!("dockerd flag in {file}"));
    }
    let source = match &exec {
        Some((_, f)) => format!("{DAEMON_JSON}, ExecStart in {f}"),
        None => DAEMON_JSON.to_string(),
    };
    judge(expect, key, None, &source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_json_values() {
        let e = "/usr/sbin/dockerd -H fd:// --containerd=/run/c.sock --icc=false --live-restore --log-opt max-size=10m";
        assert_eq!(flag_value(e, "icc").as_deref(), Some("false"));
        assert_eq!(flag_value(e, "live-restore").as_deref(), Some("true"));
        assert_eq!(flag_value(e, "hosts").as_deref(), Some("fd://"));
        assert_eq!(flag_value(e, "log-opts").as_deref(), Some("max-size=10m"));
        assert_eq!(flag_value(e, "userland-proxy"), None);
        let v: Value = serde_json::from_str(
            r#"{"log-opts": {"max-size": "10m", "max-file": "5"}, "insecure-registries": []}"#,
        )
        .unwrap();
        assert_eq!(
            flatten(lookup(&v, "log-opts").unwrap()),
            "max-file=5,max-size=10m"
        );
        assert_eq!(flatten(lookup(&v, "log-opts.max-size").unwrap()), "10m");
        assert_eq!(flatten(lookup(&v, "insecure-registries").unwrap()), "");
    }
}
