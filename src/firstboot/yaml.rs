//! A small YAML document tree for instance data (cloud-config, meta-data, network-config), built
//! from `saphyr-parser` events, with positions and YAML 1.1 scalar resolution.
//!
//! cloud-init reads its files with PyYAML, which implements YAML 1.1: `yes`/`no`/`on`/`off` are
//! booleans and `0644` is an octal integer. A YAML 1.2 library would read `permissions: 0644` as
//! the decimal 644 and `ssh_pwauth: yes` as a string, so scalars keep their source text and
//! style here and are resolved the way cloud-init users expect.

use std::collections::BTreeMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// A parsed YAML node with its 1-based source position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// The value.
    pub value: Value,
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar: its text and whether it was written plain (unquoted, not a block).
    Scalar {
        /// The scalar's text after YAML unescaping.
        text: String,
        /// Plain (unquoted) scalars are subject to type resolution (`yes`, `0644`, `~`).
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order (keys are scalars' text).
    Map(Vec<(Node, Node)>),
}

/// A YAML syntax error with position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.message)
    }
}

/// Largest YAML text accepted (1 MiB; cloud providers cap user-data at 16-256 KiB).
pub const MAX_INPUT_BYTES: usize = 1 << 20;
/// Deepest nesting of sequences and mappings.
pub const MAX_DEPTH: usize = 64;
/// Most nodes in the document tree, counting every alias as the copy it expands to.
pub const MAX_NODES: usize = 100_000;
/// Most scalar bytes in the document tree, counting every alias as the copy it expands to.
pub const MAX_EXPANDED_BYTES: usize = 4 << 20;
/// Most alias references (`*name`) in one document.
pub const MAX_ALIASES: usize = 1_000;

/// Size of a subtree: nodes and scalar bytes (what an alias to it would copy).
#[derive(Debug, Clone, Copy, Default)]
struct Weight {
    nodes: usize,
    bytes: usize,
}

/// A collection under construction: node, anchor id, pending map key, subtree weight.
struct Open {
    node: Node,
    anchor: usize,
    pending: Option<Node>,
    weight: Weight,
}

/// Parses the first document of `text`. An empty document is `Ok(None)`.
///
/// The parser is bounded (an anchor bomb or a deep nest is an error, never an abort): input at
/// most [`MAX_INPUT_BYTES`], nesting at most [`MAX_DEPTH`], at most [`MAX_ALIASES`] aliases, and
/// the tree with aliases expanded at most [`MAX_NODES`] nodes and [`MAX_EXPANDED_BYTES`] bytes.
///
/// # Errors
/// A [`YamlError`] for syntax errors, unknown aliases and the limits above.
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(YamlError {
            line: 1,
            col: 1,
            message: format!(
                "document is {} bytes, more than the limit of {MAX_INPUT_BYTES} bytes",
                text.len()
            ),
        });
    }
    let mut parser = Parser::new_from_str(text);
    let mut anchors: BTreeMap<usize, (Node, Weight)> = BTreeMap::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut result: Option<Node> = None;
    let mut total = Weight::default();
    let mut aliases = 0usize;
    for ev in parser.by_ref() {
        let (ev, span) = ev.map_err(|e| YamlError {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let (line, col) = (span.start.line(), span.start.col() + 1);
        let limit = |message: String| YamlError { line, col, message };
        let complete: Option<(Node, usize, Weight)> = match ev {
            Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => None,
            Event::DocumentEnd | Event::StreamEnd => break,
            Event::Alias(id) => {
                aliases += 1;
                if aliases > MAX_ALIASES {
                    return Err(limit(format!(
                        "more than {MAX_ALIASES} aliases (limit against alias bombs)"
                    )));
                }
                let (n, w) = anchors
                    .get(&id)
                    .ok_or_else(|| limit("alias refers to an unknown anchor".into()))?;
                if total.nodes + w.nodes > MAX_NODES || total.bytes + w.bytes > MAX_EXPANDED_BYTES {
                    return Err(limit(format!(
                        "aliases expand the document beyond {MAX_NODES} nodes or {MAX_EXPANDED_BYTES} bytes (limit against alias bombs)"
                    )));
                }
                total.nodes += w.nodes;
                total.bytes += w.bytes;
                Some((n.clone(), 0, *w))
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let w = Weight {
                    nodes: 1,
                    bytes: text.len(),
                };
                total.nodes += 1;
                total.bytes += text.len();
                Some((
                    Node {
                        line,
                        col,
                        value: Value::Scalar {
                            text: text.into_owned(),
                            plain: style == ScalarStyle::Plain,
                        },
                    },
                    anchor,
                    w,
                ))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(limit(format!("nesting deeper than {MAX_DEPTH} levels")));
                }
                let value = if matches!(ev, Event::SequenceStart(..)) {
                    Value::Seq(Vec::new())
                } else {
                    Value::Map(Vec::new())
                };
                total.nodes += 1;
                stack.push(Open {
                    node: Node { line, col, value },
                    anchor,
                    pending: None,
                    weight: Weight { nodes: 1, bytes: 0 },
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop().map(|o| (o.node, o.anchor, o.weight))
            }
        };
        if total.nodes > MAX_NODES || total.bytes > MAX_EXPANDED_BYTES {
            return Err(limit(format!(
                "document larger than {MAX_NODES} nodes or {MAX_EXPANDED_BYTES} bytes"
            )));
        }
        let Some((node, anchor, weight)) = complete else {
            continue;
        };
        if anchor > 0 {
            anchors.insert(anchor, (node.clone(), weight));
        }
        match stack.last_mut() {
            None => {
                result = Some(node);
            }
            Some(open) => {
                open.weight.nodes += weight.nodes;
                open.weight.bytes += weight.bytes;
                match &mut open.node.value {
                    Value::Seq(items) => items.push(node),
                    Value::Map(entries) => match open.pending.take() {
                        None => open.pending = Some(node),
                        Some(key) => entries.push((key, node)),
                    },
                    Value::Scalar { .. } => {}
                }
            }
        }
    }
    Ok(result)
}

impl Node {
    /// The scalar text, if this is a scalar.
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A string value: any scalar that is not null (numbers and booleans as written).
    pub fn as_str(&self) -> Option<&str> {
        if self.is_null() {
            return None;
        }
        self.as_scalar()
    }

    /// True for `~`, `null`, `Null`, `NULL` and empty plain scalars.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A YAML 1.1 boolean (`true`, `yes`, `on`, … in any of the usual cases). Quoted strings
    /// with these words are accepted too, as cloud-init does for most boolean keys.
    pub fn as_bool(&self) -> Option<bool> {
        match self.as_scalar()? {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
                Some(true)
            }
            "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n"
            | "N" => Some(false),
            _ => None,
        }
    }

    /// A YAML 1.1 integer: decimal, `0o17`/`017` octal, `0x1f` hex (plain scalars only;
    /// quoted strings of digits are read as decimal, except a leading `0` means octal as in
    /// cloud-init's permission strings).
    pub fn as_int(&self) -> Option<i64> {
        let t = self.as_scalar()?.replace('_', "");
        let (neg, t) = match t.strip_prefix('-') {
            Some(r) => (true, r.to_string()),
            None => (false, t.trim_start_matches('+').to_string()),
        };
        let v = if let Some(h) = t.strip_prefix("0x") {
            i64::from_str_radix(h, 16).ok()?
        } else if let Some(o) = t.strip_prefix("0o") {
            i64::from_str_radix(o, 8).ok()?
        } else if t.len() > 1 && t.starts_with('0') {
            i64::from_str_radix(&t[1..], 8).ok()?
        } else {
            t.parse().ok()?
        };
        Some(if neg { -v } else { v })
    }

    /// The entries of a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items of a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a mapping key (first match).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_scalar() == Some(key))
            .map(|(_, v)| v)
    }

    /// A string or a list of strings (`"a, b"` is not split; see [`Node::str_list`]).
    pub fn strings(&self) -> Option<Vec<String>> {
        match &self.value {
            Value::Seq(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect(),
            Value::Scalar { .. } if self.is_null() => Some(Vec::new()),
            Value::Scalar { text, .. } => Some(vec![text.clone()]),
            Value::Map(_) => None,
        }
    }

    /// A list of strings, where a single string is split at commas (cloud-init's `groups: a, b`).
    pub fn str_list(&self) -> Option<Vec<String>> {
        match &self.value {
            Value::Scalar { text, .. } if !self.is_null() => Some(
                text.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
            _ => self.strings(),
        }
    }

    /// The node as JSON (scalars resolved as YAML 1.1 would: null, bool, int, else string).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Scalar { text, plain } => {
                if !*plain {
                    return serde_json::Value::String(text.clone());
                }
                if self.is_null() {
                    return serde_json::Value::Null;
                }
                if let Some(b) = self.as_bool()
                    && !matches!(text.as_str(), "y" | "Y" | "n" | "N")
                {
                    return serde_json::Value::Bool(b);
                }
                if text
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit() || c == '-')
                    && let Some(i) = self.as_int()
                {
                    return serde_json::Value::from(i);
                }
                serde_json::Value::String(text.clone())
            }
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_scalar().unwrap_or_default().to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml11_scalars_keep_their_text() {
        let n = parse("a: 0644\nb: yes\nc: '0644'\nd: ~\ne: [x, 'y']\nf: &k {g: 1}\nh: *k\n")
            .unwrap()
            .unwrap();
        assert_eq!(n.get("a").unwrap().as_int(), Some(0o644));
        assert_eq!(n.get("a").unwrap().as_scalar(), Some("0644"));
        assert_eq!(n.get("b").unwrap().as_bool(), Some(true));
        assert_eq!(n.get("c").unwrap().as_int(), Some(0o644));
        assert!(n.get("d").unwrap().is_null());
        assert_eq!(
            n.get("e").unwrap().strings(),
            Some(vec!["x".to_string(), "y".to_string()])
        );
        assert_eq!(n.get("h").unwrap().get("g").unwrap().as_int(), Some(1));
        assert_eq!(n.get("b").unwrap().line, 2);
        assert_eq!(n.get("b").unwrap().col, 4);
        assert_eq!(
            n.to_json(),
            serde_json::json!({"a": 420, "b": true, "c": "0644", "d": null, "e": ["x", "y"], "f": {"g": 1}, "h": {"g": 1}})
        );
    }

    #[test]
    fn errors_have_positions_and_empty_is_none() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line >= 1, "{e}");
        let e = parse("a: *nope\n").unwrap_err();
        assert!(e.message.contains("anchor") || !e.message.is_empty(), "{e}");
    }

    #[test]
    fn comma_lists() {
        let n = parse("g: adm, sudo\n").unwrap().unwrap();
        assert_eq!(
            n.get("g").unwrap().str_list(),
            Some(vec!["adm".to_string(), "sudo".to_string()])
        );
    }

    /// The 377-byte "billion laughs" of the issue: nine levels of nine aliases.
    pub(crate) fn anchor_bomb() -> String {
        let mut s = String::from("a0: &a0 [\"lol\"]\n");
        for i in 1..10 {
            let p = i - 1;
            let refs = vec![format!("*a{p}"); 9].join(",");
            s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        s
    }

    #[test]
    fn anchor_bomb_is_refused_quickly() {
        let bomb = anchor_bomb();
        let t = std::time::Instant::now();
        let e = parse(&bomb).unwrap_err();
        assert!(e.message.contains("alias"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        // Few aliases to a big scalar are refused by the byte budget.
        let big = format!(
            "a: &a \"{}\"\nb: [{}]\n",
            "x".repeat(100_000),
            vec!["*a"; 100].join(",")
        );
        assert!(parse(&big).unwrap_err().message.contains("bytes"));
    }

    #[test]
    fn depth_and_size_limits() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(&deep).unwrap_err().message.contains("nesting"));
        let huge = format!("a: \"{}\"\n", "x".repeat(MAX_INPUT_BYTES));
        assert!(parse(&huge).unwrap_err().message.contains("limit"));
        // A normal document with a few aliases still works.
        assert!(parse("a: &x [1, 2]\nb: *x\nc: *x\n").unwrap().is_some());
    }
}
