//! The `open_ports` probe (CIS 4.1.6 for the host, issue 14 for containers): on the running
//! system, every socket listening on a non-loopback address (`/proc/net/{tcp,tcp6,udp,udp6}`,
//! its process found through `/proc/<pid>/fd`) has an accepting rule in the firewall's input
//! rules, and every port a container publishes on a non-loopback address (`docker ps`) is let
//! in by bollwerk's published-port filter (`docker_published` chain or the DOCKER-USER rules) —
//! without one, Docker's NAT and forward rules accept it before the host's input chain. The
//! evidence names the process or container. Offline the probe is skipped with the reason.

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;

use super::expect::Outcome;
use super::facts::{AuditCx, FirewallState};
use crate::state::firewall as fw;

/// bollwerk's DOCKER-USER rules (ufw backend; see `modules/firewall/docker.rs`).
const DOCKER_USER_RULES: &str = "etc/bollwerk/docker-user.rules";
/// Engine packages: Docker is installed when one of them is.
const ENGINES: &[&str] = &["docker-ce", "docker.io", "moby-engine"];

/// One open port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPort {
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// Local address as text.
    pub addr: String,
    /// Port.
    pub port: u16,
    /// Who holds it: `sshd (pid 412)`, `container web`.
    pub owner: String,
}

/// Listening sockets of one `/proc/net/<file>` table not bound to loopback: (proto, addr,
/// port, inode). TCP: state `0A` (LISTEN); UDP: unconnected sockets (state `07`, no remote).
pub fn parse_net(text: &str, proto: &'static str) -> Vec<(&'static str, String, u16, String)> {
    use crate::state::sockets::{is_loopback, listening};
    listening(text, proto == "udp")
        .into_iter()
        .filter(|s| s.port != 0 && !is_loopback(s.addr))
        .map(|s| (proto, s.addr.to_string(), s.port, s.inode))
        .collect()
}

/// Socket inode → `name (pid N)`, from `<proc>/<pid>/fd/*` links `socket:[inode]`.
pub fn socket_owners(proc_dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(proc_dir) else {
        return out;
    };
    for e in rd.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(e.path().join("comm"))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        let Ok(fds) = std::fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(t) = std::fs::read_link(fd.path())
                && let Some(inode) = t
                    .to_string_lossy()
                    .strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
            {
                out.entry(inode.to_string())
                    .or_insert_with(|| format!("{comm} (pid {pid})"));
            }
        }
    }
    out
}

/// Ports published by running containers on non-loopback addresses, from `docker ps --format
/// '{{json .}}'` lines (`"Ports":"0.0.0.0:8080->80/tcp, :::8080->80/tcp"`).
pub fn parse_docker_ps(text: &str) -> Vec<OpenPort> {
    let mut out: Vec<OpenPort> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let name = v["Names"].as_str().unwrap_or("?").to_string();
        for part in v["Ports"].as_str().unwrap_or("").split(',') {
            let Some((host, inner)) = part.trim().split_once("->") else {
                continue; // exposed, not published
            };
            let proto = if inner.ends_with("/udp") {
                "udp"
            } else {
                "tcp"
            };
            let Some((addr, port)) = host.rsplit_once(':') else {
                continue;
            };
            let addr = addr.trim_matches(|c| c == '[' || c == ']');
            let loopback = addr
                .parse::<std::net::IpAddr>()
                .is_ok_and(crate::state::sockets::is_loopback);
            // `8000-8001->80-81/tcp` publishes a range: every port of it.
            let (lo, hi) = match port.split_once('-') {
                Some((a, b)) => (a.parse().unwrap_or(0), b.parse().unwrap_or(0)),
                None => {
                    let p: u16 = port.parse().unwrap_or(0);
                    (p, p)
                }
            };
            if loopback || lo == 0 {
                continue;
            }
            for p in lo..=hi.max(lo) {
                let o = OpenPort {
                    proto,
                    addr: if addr.is_empty() {
                        "*".into()
                    } else {
                        addr.to_string()
                    },
                    port: p,
                    owner: format!("container {name} ({})", part.trim()),
                };
                // IPv4 and IPv6 bindings of one mapping count once.
                if !out.iter().any(|x| {
                    x.proto == o.proto
                        && x.port == o.port
                        && x.owner.starts_with(&format!("container {name} "))
                }) {
                    out.push(o);
                }
            }
        }
    }
    out
}

/// Port sets an nftables/iptables rule names: `22`, `6000-6007`, `{ 22, 443 }`, `6000:6007`.
fn ports_in(expr: &str) -> Vec<(u16, u16)> {
    expr.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter_map(|p| {
            let p = p.trim();
            match p.split_once(['-', ':']) {
                Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
                None => p.parse().ok().map(|x| (x, x)),
            }
        })
        .collect()
}

fn covers(list: &[(&'static str, u16, u16)], proto: &str, port: u16) -> bool {
    list.iter()
        .any(|(p, lo, hi)| (*p == proto || *p == "any") && (*lo..=*hi).contains(&port))
}

/// Ports with an accepting input rule: (proto or `any`, lo, hi).
pub fn input_allowed(f: &FirewallState) -> Vec<(&'static str, u16, u16)> {
    let mut out = Vec::new();
    if f.ufw {
        let Ok(re) = Regex::new(r"-p (tcp|udp)\b.*--dports? (\S+)") else {
            return out;
        };
        for r in f.ufw_rules.iter().filter(|r| {
            r.contains("-user-input")
                && (r.ends_with("-j ACCEPT") || r.contains("user-limit-accept"))
        }) {
            if let Some(c) = re.captures(r) {
                let proto = if &c[1] == "udp" { "udp" } else { "tcp" };
                out.extend(ports_in(&c[2]).into_iter().map(|(lo, hi)| (proto, lo, hi)));
            }
        }
    }
    if f.nftables {
        for chain in fw::parse_ruleset(&f.nft_text)
            .iter()
            .filter(|c| c.hook.as_deref() == Some("input"))
        {
            for rule in chain.rules.iter().filter(|r| r.verdict() == Some("accept")) {
                let proto = rule.transport();
                out.extend(
                    rule.ports_after("dport")
                        .into_iter()
                        .map(|(lo, hi)| (proto, lo, hi)),
                );
            }
        }
    }
    out
}

/// Published ports bollwerk's filter lets in, or `None` when no filter exists (then Docker
/// accepts every published port before the host firewall).
pub fn published_allowed(cx: &AuditCx, f: &FirewallState) -> Option<Vec<(&'static str, u16, u16)>> {
    let mut found = false;
    let mut out = Vec::new();
    if f.nftables
        && let Some(chain) = fw::parse_ruleset(&f.nft_text)
            .into_iter()
            .find(|c| c.name == "docker_published" && c.hook.as_deref() == Some("forward"))
    {
        found = true;
        for rule in chain
            .rules
            .iter()
            .filter(|r| r.verdict() == Some("accept") && r.matches().iter().any(|w| w == "dnat"))
        {
            let proto = rule.transport();
            out.extend(
                rule.ports_after("proto-dst")
                    .into_iter()
                    .map(|(lo, hi)| (proto, lo, hi)),
            );
        }
    }
    if let Ok(Some(t)) = cx.read(DOCKER_USER_RULES) {
        found = true;
        let re = Regex::new(r"-p (tcp|udp) .*--ctorigdstport (\S+) .*-j RETURN").ok()?;
        for c in t.lines().filter_map(|l| re.captures(l)) {
            let proto = if &c[1] == "udp" { "udp" } else { "tcp" };
            out.extend(ports_in(&c[2]).into_iter().map(|(lo, hi)| (proto, lo, hi)));
        }
    }
    found.then_some(out)
}

/// Evaluates the `open_ports` probe.
pub fn open_ports_probe(cx: &AuditCx) -> Outcome {
    let Some(proc_dir) = cx.proc_dir.as_deref() else {
        return Outcome::skipped(
            "not evaluated: listening sockets (/proc/net/tcp*) and published container ports (docker ps) exist only on the running system, and --root is not /",
        );
    };
    let f = match cx.firewall() {
        Ok(f) => f,
        Err(e) => return Outcome::error(e),
    };
    let mut sockets = Vec::new();
    for (file, proto) in [
        ("tcp", "tcp"),
        ("tcp6", "tcp"),
        ("udp", "udp"),
        ("udp6", "udp"),
    ] {
        if let Ok(t) = std::fs::read_to_string(proc_dir.join("net").join(file)) {
            sockets.extend(parse_net(&t, proto));
        }
    }
    let owners = socket_owners(proc_dir);
    let mut host: Vec<OpenPort> = Vec::new();
    for (proto, addr, port, inode) in sockets {
        let owner = owners
            .get(&inode)
            .cloned()
            .unwrap_or_else(|| format!("process unknown (socket inode {inode})"));
        // docker-proxy holds published ports: judged with the containers below.
        if owner.starts_with("docker-proxy ") {
            continue;
        }
        if !host
            .iter()
            .any(|h| h.proto == proto && h.port == port && h.owner == owner)
        {
            host.push(OpenPort {
                proto,
                addr,
                port,
                owner,
            });
        }
    }
    let mut containers = Vec::new();
    let docker = ENGINES.iter().any(|p| !cx.installed(p).is_empty());
    if docker {
        let cmd = crate::exec::Cmd::in_root("/usr/bin/docker", &["ps", "--format", "{{json .}}"]);
        match cx.runner.run(&cx.root, &cmd) {
            Ok(o) if o.success() => containers = parse_docker_ps(&o.stdout),
            Ok(o) => {
                return Outcome::error(format!("`{}` failed: {}", cmd.display(), o.combined()));
            }
            Err(e) => return Outcome::error(format!("`{}`: {e}", cmd.display())),
        }
    }
    // With `userland-proxy: false` dockerd itself holds a listening socket on each published
    // port (to reserve it): the port is the container's, judged below, not a host service.
    host.retain(|h| {
        !(h.owner.starts_with("dockerd ")
            && containers
                .iter()
                .any(|c| c.proto == h.proto && c.port == h.port))
    });
    let anything_open = !host.is_empty() || !containers.is_empty();
    if !f.ufw && !f.nftables && anything_open {
        let all: Vec<String> = host.iter().chain(&containers).map(describe).collect();
        return Outcome::fail(format!(
            "no firewall enabled; open: {}",
            super::probe::list_some(&all)
        ));
    }
    let input = input_allowed(f);
    let published = published_allowed(cx, f);
    let mut bad = Vec::new();
    let mut good = Vec::new();
    for h in &host {
        if covers(&input, h.proto, h.port) {
            good.push(describe(h));
        } else {
            bad.push(format!("{} (no input rule)", describe(h)));
        }
    }
    for c in &containers {
        match &published {
            Some(list) if covers(list, c.proto, c.port) => good.push(describe(c)),
            Some(_) => bad.push(format!("{} (not in docker.allow_published)", describe(c))),
            None => bad.push(format!(
                "{} (no published-port filter: Docker's NAT and forward rules accept it before the host firewall)",
                describe(c)
            )),
        }
    }
    let source = format!(
        "/proc/net/tcp*, udp*{}",
        if docker { "; docker ps" } else { "" }
    );
    if bad.is_empty() {
        Outcome::pass(if good.is_empty() {
            format!("nothing listens on a non-loopback address ({source})")
        } else {
            format!("allowed: {} ({source})", super::probe::list_some(&good))
        })
    } else {
        Outcome::fail(format!(
            "not allowed: {} ({source})",
            super::probe::list_some(&bad)
        ))
    }
}

fn describe(p: &OpenPort) -> String {
    format!("{}/{} on {} by {}", p.port, p.proto, p.addr, p.owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 2222 1 0000000000000000 100 0 0 10 0\n   2: 0F02000A:0016 0202000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 100 0 0 10 0\n";

    #[test]
    fn listening_non_loopback_sockets_with_their_process() {
        let got = parse_net(TCP, "tcp");
        assert_eq!(
            got,
            vec![("tcp", "0.0.0.0".to_string(), 22, "1111".to_string())]
        );
        let v6 = "  sl  local_address remote_address st\n   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 108 0 4444 1\n   1: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 5555 1\n";
        assert_eq!(
            parse_net(v6, "tcp"),
            vec![("tcp", "::".to_string(), 443, "5555".to_string())]
        );
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("412/fd")).unwrap();
        std::fs::write(d.path().join("412/comm"), "sshd\n").unwrap();
        std::os::unix::fs::symlink("socket:[1111]", d.path().join("412/fd/3")).unwrap();
        std::os::unix::fs::symlink("/dev/null", d.path().join("412/fd/0")).unwrap();
        let o = socket_owners(d.path());
        assert_eq!(o.get("1111").map(String::as_str), Some("sshd (pid 412)"));
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn published_ports_from_docker_ps() {
        let ps = "{\"Names\":\"web\",\"Ports\":\"0.0.0.0:8080->80/tcp, :::8080->80/tcp, 127.0.0.1:9000->9000/tcp\"}\n{\"Names\":\"db\",\"Ports\":\"5432/tcp\"}\n{\"Names\":\"dns\",\"Ports\":\"0.0.0.0:5353-5354->53-54/udp\"}\n";
        let got = parse_docker_ps(ps);
        let brief: Vec<(u16, &str, &str)> = got
            .iter()
            .map(|p| (p.port, p.proto, p.owner.split(' ').nth(1).unwrap()))
            .collect();
        assert_eq!(
            brief,
            vec![
                (8080, "tcp", "web"),
                (5353, "udp", "dns"),
                (5354, "udp", "dns")
            ]
        );
    }

    #[test]
    fn port_expressions() {
        assert_eq!(ports_in("{ 22, 443 }"), vec![(22, 22), (443, 443)]);
        assert_eq!(ports_in("6000-6007"), vec![(6000, 6007)]);
        assert_eq!(ports_in("6000:6007"), vec![(6000, 6007)]);
        assert!(covers(&[("any", 53, 53)], "udp", 53));
        assert!(!covers(&[("tcp", 53, 53)], "udp", 53));
    }
}
