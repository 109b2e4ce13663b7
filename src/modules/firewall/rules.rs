//! The `[firewall]` profile section and the backend-neutral rule model both backends render.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::modules::netcommon::Cidr;
use crate::profile::{Layer, ProfileError};

/// `firewall.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// ufw when it is installed and enabled, nftables otherwise.
    Auto,
    /// bollwerk's own nftables table.
    Nftables,
    /// ufw.
    Ufw,
}

/// The backend in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// nftables.
    Nftables,
    /// ufw.
    Ufw,
}

/// A default policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Drop silently.
    Deny,
    /// Accept.
    Allow,
    /// Refuse (TCP reset / ICMP unreachable).
    Reject,
}

impl Policy {
    /// The word ufw uses.
    pub fn ufw(&self) -> &'static str {
        match self {
            Policy::Deny => "deny",
            Policy::Allow => "allow",
            Policy::Reject => "reject",
        }
    }

    /// The iptables target ufw writes into `etc/default/ufw`.
    pub fn ufw_default(&self) -> &'static str {
        match self {
            Policy::Deny => "DROP",
            Policy::Allow => "ACCEPT",
            Policy::Reject => "REJECT",
        }
    }
}

/// Transport protocols of a port rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Both.
    Any,
}

impl Proto {
    /// `tcp`, `udp` or `any` (ufw's word).
    pub fn as_str(&self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Any => "any",
        }
    }
}

/// Which ports a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ports {
    /// The port(s) sshd listens on (`ssh`), resolved at plan time.
    Ssh,
    /// A port or an inclusive range.
    Range(u16, u16),
}

/// Service names accepted in port specs besides `ssh`.
pub const SERVICES: &[(&str, u16, Proto)] = &[
    ("http", 80, Proto::Tcp),
    ("https", 443, Proto::Tcp),
    ("smtp", 25, Proto::Tcp),
    ("submission", 587, Proto::Tcp),
    ("smtps", 465, Proto::Tcp),
    ("imaps", 993, Proto::Tcp),
    ("pop3s", 995, Proto::Tcp),
    ("dns", 53, Proto::Any),
    ("domain", 53, Proto::Any),
    ("ntp", 123, Proto::Udp),
    ("postgresql", 5432, Proto::Tcp),
    ("mysql", 3306, Proto::Tcp),
    ("wireguard", 51820, Proto::Udp),
];

/// A port spec: `80/tcp`, `53` (tcp and udp), `6000:6007/udp` (also `6000-6007`), `ssh`
/// (the port sshd listens on), or a service name (`https`, `dns`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortSpec {
    text: String,
    /// The ports.
    pub ports: Ports,
    /// The protocol(s).
    pub proto: Proto,
}

impl TryFrom<String> for PortSpec {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "`{s}` is not a port spec ({why}): write \"80/tcp\", \"53\", \"6000:6007/udp\", \"ssh\" or a service name"
            )
        };
        let t = s.trim().to_ascii_lowercase();
        let (body, proto) = match t.rsplit_once('/') {
            Some((b, "tcp")) => (b.to_string(), Some(Proto::Tcp)),
            Some((b, "udp")) => (b.to_string(), Some(Proto::Udp)),
            Some((_, p)) => return Err(bad(&format!("unknown protocol `{p}`"))),
            None => (t.clone(), None),
        };
        if body == "ssh" {
            if proto == Some(Proto::Udp) {
                return Err(bad("ssh is TCP"));
            }
            return Ok(PortSpec {
                text: s.trim().to_string(),
                ports: Ports::Ssh,
                proto: Proto::Tcp,
            });
        }
        if let Some((_, port, p)) = SERVICES.iter().find(|(n, _, _)| *n == body) {
            return Ok(PortSpec {
                text: s.trim().to_string(),
                ports: Ports::Range(*port, *port),
                proto: proto.unwrap_or(*p),
            });
        }
        let num = |x: &str| -> Result<u16, String> {
            x.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad(&format!("`{x}` is not a port 1-65535 or a known service")))
        };
        let (lo, hi) = match body.split_once([':', '-']) {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let p = num(&body)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(bad("the range is reversed"));
        }
        if lo != hi && proto.is_none() {
            return Err(bad("a port range needs /tcp or /udp (as in ufw)"));
        }
        Ok(PortSpec {
            text: s.trim().to_string(),
            ports: Ports::Range(lo, hi),
            proto: proto.unwrap_or(Proto::Any),
        })
    }
}

impl From<PortSpec> for String {
    fn from(p: PortSpec) -> String {
        p.text
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonSchema for PortSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PortSpec".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "description": "\"80/tcp\", \"53\" (tcp+udp), \"6000:6007/udp\", \"ssh\" (sshd's port) or a service name (http, https, dns, …)"})
    }
}

/// One `allow`/`limit` entry: a port spec, or a table with `port`, `from` and `comment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RuleSpec {
    /// `"443/tcp"`.
    Port(PortSpec),
    /// `{ port = "5432/tcp", from = "10.0.0.0/8", comment = "app network" }`.
    Table(RuleTable),
}

impl<'de> Deserialize<'de> for RuleSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RuleSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port spec like \"443/tcp\" or a table { port, from, comment }")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RuleSpec, E> {
                PortSpec::try_from(s.to_string())
                    .map(RuleSpec::Port)
                    .map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<RuleSpec, A::Error> {
                RuleTable::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(RuleSpec::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// The table form of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleTable {
    /// Port spec.
    pub port: PortSpec,
    /// Source address or network (default: anywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Cidr>,
    /// Comment stored with the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl RuleSpec {
    /// The port spec.
    pub fn port(&self) -> &PortSpec {
        match self {
            RuleSpec::Port(p) => p,
            RuleSpec::Table(t) => &t.port,
        }
    }

    /// The source network, if restricted.
    pub fn from(&self) -> Option<&Cidr> {
        match self {
            RuleSpec::Port(_) => None,
            RuleSpec::Table(t) => t.from.as_ref(),
        }
    }

    /// The comment, if any.
    pub fn comment(&self) -> Option<&str> {
        match self {
            RuleSpec::Port(_) => None,
            RuleSpec::Table(t) => t.comment.as_deref(),
        }
    }
}

/// `[firewall]`: host firewall. Unset keys take the defaults shown.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirewallSection {
    /// "auto" (ufw when installed and enabled, else nftables), "nftables" or "ufw".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendChoice>,
    /// Policy for incoming connections: "deny" (default), "reject" or "allow".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_incoming: Option<Policy>,
    /// Policy for outgoing connections: "allow" (default), "deny" or "reject".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_outgoing: Option<Policy>,
    /// Policy for forwarded packets: "deny" (default; "allow" when Docker is installed and
    /// this key is unset, since Docker needs forwarding), "reject" or "allow".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_forward: Option<Policy>,
    /// Incoming ports to open: "80/tcp", "ssh", or { port, from, comment }. The SSH port is
    /// always open (anti-lockout), whether listed or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<RuleSpec>>,
    /// Incoming ports to open with a rate limit on new connections per source (ufw `limit`:
    /// 6 in 30 s; nftables: a meter with the same numbers), e.g. ["ssh"].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Vec<RuleSpec>>,
    /// Sources allowed to reach the SSH port (default: anywhere). Narrowing it can lock you
    /// out: on the live host, apply refuses when your SSH client is not inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_from: Option<Vec<Cidr>>,
    /// Filter IPv6 too (default true). false leaves IPv6 traffic unfiltered (as ufw's IPV6=no).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    /// Remove the firewall utility not chosen (ufw when the backend is nftables, nftables when
    /// it is ufw), so only one can ever be active (CIS 4.1.1). An enabled one is left until it
    /// is disabled (the plan says so): removing it would leave the host briefly unfiltered.
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_other: Option<bool>,
    /// ufw: remove rules bollwerk did not create (default false: they are kept and reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<bool>,
}

impl FirewallSection {
    /// Incoming policy (default deny).
    pub fn incoming(&self) -> Policy {
        self.default_incoming.unwrap_or(Policy::Deny)
    }

    /// Outgoing policy (default allow).
    pub fn outgoing(&self) -> Policy {
        self.default_outgoing.unwrap_or(Policy::Allow)
    }

    /// IPv6 filtering (default true).
    pub fn ipv6(&self) -> bool {
        self.ipv6.unwrap_or(true)
    }
}

/// Checks of `[firewall]` a single key's type cannot express.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &FirewallSection, layers: &[Layer]) -> Result<(), ProfileError> {
    let err = |key: &[&str], msg: String, hint: &str| {
        let mut path = vec!["firewall"];
        path.extend_from_slice(key);
        Err(crate::profile::error_at(layers, &path, msg).with_hint(hint.to_string()))
    };
    for (key, list) in [("allow", &s.allow), ("limit", &s.limit)] {
        for r in list.iter().flatten() {
            if let Some(c) = r.comment()
                && (c.is_empty()
                    || c.len() > 200
                    || c.chars()
                        .any(|ch| ch.is_control() || ch == '"' || ch == '\''))
            {
                return err(
                    &[key],
                    format!(
                        "comment {c:?} is empty, too long or contains quotes or control characters"
                    ),
                    "use a short plain comment such as \"app network\"",
                );
            }
            if r.from().is_some_and(|f| f.is_v6()) && !s.ipv6() {
                return err(
                    &[key],
                    format!("rule {} allows an IPv6 source, but ipv6 = false", r.port()),
                    "set firewall.ipv6 = true or use an IPv4 source",
                );
            }
        }
    }
    if let Some(nets) = &s.ssh_from {
        if nets.is_empty() {
            return err(
                &["ssh_from"],
                "ssh_from is empty: nobody could reach SSH".into(),
                "leave ssh_from out (anywhere) or list your admin networks",
            );
        }
        if !s.ipv6() && nets.iter().all(|n| n.is_v6()) {
            return err(
                &["ssh_from"],
                "ssh_from lists only IPv6 networks, but ipv6 = false".into(),
                "add your IPv4 admin network or set firewall.ipv6 = true",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Result<PortSpec, String> {
        PortSpec::try_from(s.to_string())
    }

    #[test]
    fn port_specs() {
        let p = spec("80/tcp").unwrap();
        assert_eq!((p.ports, p.proto), (Ports::Range(80, 80), Proto::Tcp));
        let p = spec("53").unwrap();
        assert_eq!(p.proto, Proto::Any);
        let p = spec("6000:6007/udp").unwrap();
        assert_eq!((p.ports, p.proto), (Ports::Range(6000, 6007), Proto::Udp));
        assert_eq!(
            spec("6000-6007/tcp").unwrap().ports,
            Ports::Range(6000, 6007)
        );
        assert_eq!(spec("ssh").unwrap().ports, Ports::Ssh);
        assert_eq!(spec("https").unwrap().ports, Ports::Range(443, 443));
        for bad in [
            "0",
            "70000",
            "80/icmp",
            "ssh/udp",
            "6000:6007",
            "9:8/tcp",
            "htps",
            "",
        ] {
            assert!(spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rule_forms() {
        #[derive(Deserialize)]
        struct T {
            allow: Vec<RuleSpec>,
        }
        let t: T = toml::from_str(
            "allow = [\"80/tcp\", { port = \"5432/tcp\", from = \"10.0.0.0/8\", comment = \"app network\" }]",
        )
        .unwrap();
        assert_eq!(t.allow[0].port().to_string(), "80/tcp");
        assert_eq!(t.allow[1].from().unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(t.allow[1].comment(), Some("app network"));
    }
}
