//! The profile reference (`docs/profile.md`), generated from the JSON Schema so it cannot
//! drift from the code: `bollwerk profile reference > docs/profile.md`.

use serde_json::Value;

const INTRO: &str = include_str!("../../docs/profile.intro.md");

/// Renders the reference as Markdown.
pub fn markdown() -> String {
    let schema = super::schema();
    let mut out = String::from(INTRO);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    let empty = serde_json::Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    out.push_str("\n## Top-level keys\n\n| key | type | description |\n|---|---|---|\n");
    let mut sections = Vec::new();
    for (name, prop) in props {
        let (ty, target) = describe(&schema, prop);
        out.push_str(&format!(
            "| `{name}` | {ty} | {} |\n",
            cell(&description(&schema, prop))
        ));
        if let Some(t) = target {
            sections.push((name.clone(), t));
        }
    }
    // A worklist: nested tables (`[pam.faillock]`) get their own section after their parent.
    let mut sections: std::collections::VecDeque<(String, Value, bool)> = sections
        .into_iter()
        .map(|(name, def)| {
            let is_array =
                matches!(describe(&schema, &props[&name]).0.as_str(), s if s.starts_with("array"));
            (name, def, is_array)
        })
        .collect();
    while let Some((name, def, is_array)) = sections.pop_front() {
        out.push_str(&format!(
            "\n## `{}{name}{}`\n\n",
            if is_array { "[[" } else { "[" },
            if is_array { "]]" } else { "]" }
        ));
        if let Some(d) = def.get("description").and_then(Value::as_str) {
            out.push_str(d);
            out.push_str("\n\n");
        }
        out.push_str("| key | type | description |\n|---|---|---|\n");
        let req: Vec<&str> = def
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut nested = Vec::new();
        for (k, p) in def
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty)
        {
            let (ty, target) = describe(&schema, p);
            if let Some(t) = target
                && ty == "table"
            {
                nested.push((format!("{name}.{k}"), t, false));
            }
            let req = if req.contains(&k.as_str()) {
                " **(required)**"
            } else {
                ""
            };
            out.push_str(&format!(
                "| `{k}` | {ty}{req} | {} |\n",
                cell(&description(&schema, p))
            ));
        }
        for n in nested.into_iter().rev() {
            sections.push_front(n);
        }
    }
    out
}

fn cell(s: &str) -> String {
    s.replace('\n', " ").replace('|', "\\|")
}

fn resolve<'a>(schema: &'a Value, v: &'a Value) -> &'a Value {
    if let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        if let Some(d) = schema.get("$defs").and_then(|d| d.get(name)) {
            return d;
        }
    }
    v
}

fn description(schema: &Value, v: &Value) -> String {
    v.get("description")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            let r = resolve(schema, v);
            if let Some(d) = r.get("description").and_then(Value::as_str) {
                return Some(d.to_string());
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(a) = v.get(key).and_then(Value::as_array) {
                    for x in a {
                        let d = description(schema, x);
                        if !d.is_empty() {
                            return Some(d);
                        }
                    }
                }
            }
            None
        })
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A short type description, and the object definition for tables / arrays of tables.
fn describe(schema: &Value, v: &Value) -> (String, Option<Value>) {
    let r = resolve(schema, v);
    for key in ["anyOf", "oneOf"] {
        if let Some(a) = r.get(key).and_then(Value::as_array) {
            let parts: Vec<(String, Option<Value>)> = a
                .iter()
                .filter(|x| x.get("type").and_then(Value::as_str) != Some("null"))
                .map(|x| describe(schema, x))
                .collect();
            let target = parts.iter().find_map(|(_, t)| t.clone());
            let mut names: Vec<String> = parts.into_iter().map(|(n, _)| n).collect();
            names.dedup();
            return (names.join(" or "), target);
        }
    }
    if let Some(e) = r.get("enum").and_then(Value::as_array) {
        let vals: Vec<String> = e.iter().map(|x| format!("`{x}`")).collect();
        return (vals.join(", "), None);
    }
    if let Some(c) = r.get("const") {
        return (format!("`{c}`"), None);
    }
    let ty = match r.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => String::new(),
    };
    match ty.as_str() {
        "array" => {
            let items = r.get("items").cloned().unwrap_or(Value::Null);
            let (it, target) = describe(schema, &items);
            (format!("array of {it}"), target)
        }
        "object" if r.get("properties").is_some() => ("table".into(), Some(r.clone())),
        "object" => {
            let add = r
                .get("additionalProperties")
                .cloned()
                .unwrap_or(Value::Null);
            let (it, _) = describe(schema, &add);
            (
                format!(
                    "table of {}",
                    if it.is_empty() { "values".into() } else { it }
                ),
                None,
            )
        }
        "" => ("value".into(), None),
        t => {
            let pattern = r
                .get("pattern")
                .and_then(Value::as_str)
                .map(|p| format!(" (`{p}`)"))
                .unwrap_or_default();
            let range = match (r.get("minimum"), r.get("maximum")) {
                (Some(a), Some(b)) => format!(" {a}–{b}"),
                _ => String::new(),
            };
            let _ = pattern;
            (format!("{t}{range}"), None)
        }
    }
}
