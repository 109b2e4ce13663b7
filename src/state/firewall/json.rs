//! The loaded ruleset from `nft -j list ruleset` (libnftables' JSON schema, version 1): chains
//! with their hook and policy, rules rendered into the words the text reading gives, so both
//! readings are judged by the same [`Rule`] methods.
//!
//! A rule's `expr` is a list of statements: `match` (left, operator, right), verdicts
//! (`accept`, `drop`, `reject`, `jump`, `goto`, `return`), and statements that do not decide
//! (`counter`, `log`) and are dropped. Anything else (`limit`, `xt`, `vmap`, NAT, …) keeps its
//! name and values as words, so a rule that also matches something unknown is never mistaken
//! for a plain one.

use serde_json::{Map, Value};

use super::{Chain, Rule};

/// Meta keys nft prints without the `meta` keyword.
const UNQUALIFIED_META: [&str; 8] = [
    "iif", "iifname", "oif", "oifname", "iifgroup", "oifgroup", "mark", "skuid",
];

/// The chains of `nft -j list ruleset` output, in the order nft lists them.
///
/// # Errors
/// When the text is not JSON with a top-level `nftables` array (an nft that ignored `-j`, or a
/// truncated output).
pub fn parse_json_ruleset(text: &str) -> Result<Vec<Chain>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not nft JSON output: {e}"))?;
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("not nft JSON output: no top-level \"nftables\" array")?;
    let mut chains: Vec<Chain> = Vec::new();
    for item in items {
        if let Some(c) = item.get("chain").and_then(Value::as_object) {
            chains.push(chain(c));
        } else if let Some(r) = item.get("rule").and_then(Value::as_object) {
            let (table, name) = (table_name(r), text_of(r.get("chain")));
            if let Some(c) = chains
                .iter_mut()
                .find(|c| c.table == table && c.name == name)
            {
                c.rules.push(rule(r));
            }
        }
    }
    Ok(chains)
}

/// `inet filter` from an object's `family` and `table` (or `name` for a table).
fn table_name(o: &Map<String, Value>) -> String {
    format!("{} {}", text_of(o.get("family")), text_of(o.get("table")))
}

fn chain(o: &Map<String, Value>) -> Chain {
    Chain {
        table: table_name(o),
        name: text_of(o.get("name")),
        hook: o.get("hook").map(|v| text_of(Some(v))),
        policy: o.get("policy").map(|v| text_of(Some(v))),
        rules: Vec::new(),
    }
}

fn rule(o: &Map<String, Value>) -> Rule {
    let stmts = o.get("expr").and_then(Value::as_array);
    let words: Vec<String> = stmts
        .into_iter()
        .flatten()
        .filter_map(statement)
        .filter(|s| !s.is_empty())
        .collect();
    Rule::parse(&words.join(" "))
}

/// One statement in nft's text syntax; `None` for those that do not change what the rule
/// matches or decides.
fn statement(v: &Value) -> Option<String> {
    let (key, body) = single(v)?;
    Some(match key {
        "counter" | "log" => return None,
        "match" => {
            let op = text_of(body.get("op"));
            let left = expr(body.get("left").unwrap_or(&Value::Null));
            let right = expr(body.get("right").unwrap_or(&Value::Null));
            match op.as_str() {
                "==" | "in" => format!("{left} {right}"),
                _ => format!("{left} {op} {right}"),
            }
        }
        "accept" | "drop" | "return" | "continue" | "queue" | "notrack" => key.to_string(),
        "reject" => reject(body),
        "limit" => limit(body),
        "set" => format!(
            "{} {} {{ {}{} }}",
            text_of(body.get("op")),
            text_of(body.get("set")),
            expr(body.get("elem").unwrap_or(&Value::Null)),
            body.get("stmt")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(statement)
                .map(|s| format!(" {s}"))
                .collect::<String>()
        ),
        "jump" | "goto" => format!("{key} {}", text_of(body.get("target"))),
        "vmap" => format!(
            "{} vmap {}",
            expr(body.get("key").unwrap_or(&Value::Null)),
            expr(body.get("data").unwrap_or(&Value::Null))
        ),
        "mangle" => format!(
            "{} set {}",
            expr(body.get("key").unwrap_or(&Value::Null)),
            expr(body.get("value").unwrap_or(&Value::Null))
        ),
        _ => format!("{key} {}", values(body)),
    })
}

/// `reject`, `reject with tcp reset`, `reject with icmpx type admin-prohibited` (the default,
/// `icmpx port-unreachable`, prints as plain `reject`, as nft does).
fn reject(body: &Value) -> String {
    let ty = text_of(body.get("type"));
    let code = text_of(body.get("expr"));
    match (ty.as_str(), code.as_str()) {
        ("", _) | ("icmpx", "port-unreachable") => "reject".into(),
        ("tcp reset", _) => "reject with tcp reset".into(),
        _ => format!("reject with {ty} type {code}"),
    }
}

/// `limit rate [over] 12/minute burst 6 packets`.
fn limit(body: &Value) -> String {
    let over = if body.get("inv") == Some(&Value::Bool(true)) {
        "over "
    } else {
        ""
    };
    let unit = match body.get("rate_unit").map(|u| text_of(Some(u))) {
        Some(u) if u != "packets" => format!(" {u}"),
        _ => String::new(),
    };
    let burst = match body.get("burst") {
        Some(b) if b != &Value::from(0) => format!(
            " burst {} {}",
            text_of(Some(b)),
            body.get("burst_unit")
                .map(|u| text_of(Some(u)))
                .unwrap_or_else(|| "packets".into())
        ),
        _ => String::new(),
    };
    format!(
        "limit rate {over}{}{unit}/{}{burst}",
        text_of(body.get("rate")),
        text_of(body.get("per"))
    )
}

/// An expression (the left or right side of a match) in nft's text syntax.
fn expr(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        // A list on the right of `in` is a flag set: `ct state established,related`.
        Value::Array(a) => a.iter().map(expr).collect::<Vec<_>>().join(","),
        Value::Object(_) => object_expr(v),
    }
}

fn object_expr(v: &Value) -> String {
    let Some((key, body)) = single(v) else {
        return String::new();
    };
    match key {
        "payload" => match body.get("protocol") {
            Some(p) => format!("{} {}", text_of(Some(p)), text_of(body.get("field"))),
            None => format!(
                "@{},{},{}",
                text_of(body.get("base")),
                text_of(body.get("offset")),
                text_of(body.get("len"))
            ),
        },
        "meta" => {
            let k = text_of(body.get("key"));
            if UNQUALIFIED_META.contains(&k.as_str()) {
                k
            } else {
                format!("meta {k}")
            }
        }
        "ct" => {
            let mut w = vec!["ct".to_string()];
            w.extend(body.get("dir").map(|d| text_of(Some(d))));
            w.extend(body.get("family").map(|f| text_of(Some(f))));
            w.push(text_of(body.get("key")));
            w.join(" ")
        }
        "set" => {
            let items = body.as_array().map(Vec::as_slice).unwrap_or_default();
            format!(
                "{{ {} }}",
                items.iter().map(set_item).collect::<Vec<_>>().join(", ")
            )
        }
        "range" => {
            let ends = body.as_array().map(Vec::as_slice).unwrap_or_default();
            ends.iter().map(expr).collect::<Vec<_>>().join("-")
        }
        "prefix" => format!("{}/{}", expr(&body["addr"]), text_of(body.get("len"))),
        "elem" => expr(body.get("val").unwrap_or(&Value::Null)),
        _ => format!("{key} {}", values(body)),
    }
}

/// A set element; a map element (`[key, value]`) reads `key : value`.
fn set_item(v: &Value) -> String {
    match v.as_array().map(Vec::as_slice) {
        Some([k, d]) => {
            let data = statement(d).unwrap_or_else(|| expr(d));
            format!("{} : {data}", expr(k))
        }
        _ => expr(v),
    }
}

/// The values of an object nobody here judges, as words (keys sorted by serde_json).
fn values(body: &Value) -> String {
    match body {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k} {}", expr(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => expr(other),
    }
}

/// The only key of a `{ "key": body }` object.
fn single(v: &Value) -> Option<(&str, &Value)> {
    let m = v.as_object()?;
    let (k, b) = m.iter().next()?;
    (m.len() == 1).then_some((k.as_str(), b))
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}
