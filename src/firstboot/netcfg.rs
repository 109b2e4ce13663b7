//! Network configuration from instance data: cloud-init network-config v1 and v2 (NoCloud,
//! Hetzner), Debian `interfaces` text (Proxmox ConfigDrive `content/0000`), and OpenStack
//! `network_data.json`, parsed into one model and rendered as systemd-networkd `.network` files
//! or a netplan file.
//!
//! Only what a VM needs to come up reachable is modelled: per NIC (matched by MAC, else name)
//! static addresses, gateways, extra routes, DNS servers and search domains, MTU, DHCP.

use std::net::IpAddr;

use super::yaml::Node;
use crate::modules::users::MANAGED_HEADER;

/// One network interface's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Iface {
    /// Configuration id (v2 key, v1/ENI name) used in file names.
    pub id: String,
    /// Match by MAC address (lower case), preferred over the name.
    pub mac: Option<String>,
    /// Match by kernel name (when no MAC is given).
    pub name: Option<String>,
    /// Name the instance data wants the NIC to have (not applied: NICs are matched, not renamed).
    pub set_name: Option<String>,
    /// DHCPv4.
    pub dhcp4: bool,
    /// DHCPv6 / SLAAC.
    pub dhcp6: bool,
    /// Static addresses in CIDR notation.
    pub addresses: Vec<String>,
    /// IPv4 default gateway.
    pub gateway4: Option<String>,
    /// IPv6 default gateway.
    pub gateway6: Option<String>,
    /// Extra routes: (destination CIDR, gateway).
    pub routes: Vec<(String, String)>,
    /// DNS servers.
    pub dns: Vec<String>,
    /// DNS search domains.
    pub search: Vec<String>,
    /// MTU in bytes.
    pub mtu: Option<u32>,
}

/// A parsed network configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Interfaces in document order.
    pub ifaces: Vec<Iface>,
    /// Global DNS servers (v1 `nameserver`, OpenStack `services`).
    pub dns: Vec<String>,
    /// Global search domains.
    pub search: Vec<String>,
    /// Things the parser could not express (listed in a warning).
    pub unsupported: Vec<String>,
}

impl NetworkConfig {
    /// All DNS servers, global first, without duplicates.
    pub fn all_dns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in self
            .dns
            .iter()
            .chain(self.ifaces.iter().flat_map(|i| i.dns.iter()))
        {
            if !out.contains(d) {
                out.push(d.clone());
            }
        }
        out
    }

    /// All search domains, global first, without duplicates.
    pub fn all_search(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in self
            .search
            .iter()
            .chain(self.ifaces.iter().flat_map(|i| i.search.iter()))
        {
            if !out.contains(d) {
                out.push(d.clone());
            }
        }
        out
    }
}

/// Largest network configuration accepted (256 KiB; YAML is bounded by the YAML parser too).
pub const MAX_BYTES: usize = 256 * 1024;
/// Most interfaces in one network configuration.
pub const MAX_IFACES: usize = 64;

fn within_limit(what: &str, text: &str) -> Result<(), String> {
    if text.len() > MAX_BYTES {
        return Err(format!(
            "{what} is {} bytes, more than the limit of {MAX_BYTES}",
            text.len()
        ));
    }
    Ok(())
}

/// A DNS search domain as resolv.conf and networkd take it: labels of letters, digits, `-`,
/// `_`, dots between (`~` prefix for a routing domain), at most 253 bytes.
fn search_domain(s: &str) -> Result<(), String> {
    let d = s.strip_prefix('~').unwrap_or(s).trim_end_matches('.');
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a DNS search domain"))
    }
}

/// Checks what every parser produced before anything is rendered into networkd, netplan or
/// resolv.conf files: the interface count, DNS servers are IP addresses, search domains are
/// domain names (no newline can reach a rendered file), ids and names are interface names.
fn checked(nc: NetworkConfig) -> Result<NetworkConfig, String> {
    if nc.ifaces.len() > MAX_IFACES {
        return Err(format!(
            "{} interfaces, more than the limit of {MAX_IFACES}",
            nc.ifaces.len()
        ));
    }
    let all_dns = nc.dns.iter().chain(nc.ifaces.iter().flat_map(|i| &i.dns));
    for d in all_dns {
        ip(d).map_err(|e| format!("DNS server: {e}"))?;
    }
    let all_search = nc
        .search
        .iter()
        .chain(nc.ifaces.iter().flat_map(|i| &i.search));
    for d in all_search {
        search_domain(d)?;
    }
    for i in &nc.ifaces {
        for v in [Some(&i.id), i.name.as_ref(), i.set_name.as_ref()]
            .into_iter()
            .flatten()
        {
            if v.chars().any(|c| c.is_control() || c == '/' || c == '\\') || v.len() > 64 {
                return Err(format!("{v:?} is not a usable interface name or id"));
            }
        }
    }
    Ok(nc)
}

fn ip(s: &str) -> Result<IpAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an IP address"))
}

/// Checks `addr/prefix` (or a bare address, to which `prefix` is added).
fn cidr(addr: &str, netmask: Option<&str>) -> Result<String, String> {
    let (a, p) = match addr.split_once('/') {
        Some((a, p)) => (a, Some(p.to_string())),
        None => (addr, None),
    };
    let parsed = ip(a)?;
    let prefix = match (p, netmask) {
        (Some(p), _) => p,
        (None, Some(m)) => mask_to_prefix(m)?.to_string(),
        (None, None) => {
            if parsed.is_ipv4() {
                "32".into()
            } else {
                "128".into()
            }
        }
    };
    let n: u8 = prefix
        .parse()
        .map_err(|_| format!("bad prefix length in `{addr}`"))?;
    let max = if parsed.is_ipv4() { 32 } else { 128 };
    if n > max {
        return Err(format!("prefix /{n} is too long for {a}"));
    }
    Ok(format!("{parsed}/{n}"))
}

/// `255.255.255.0` → 24; a plain number is taken as a prefix length.
fn mask_to_prefix(m: &str) -> Result<u8, String> {
    if let Ok(n) = m.parse::<u8>() {
        return Ok(n);
    }
    match ip(m)? {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return Err(format!("netmask {m} is not contiguous"));
            }
            Ok(bits.leading_ones() as u8)
        }
        IpAddr::V6(v6) => Ok(u128::from(v6).leading_ones() as u8),
    }
}

fn mac(s: &str) -> Result<String, String> {
    let m = s.trim().to_ascii_lowercase();
    let ok = m.split(':').count() == 6
        && m.split(':')
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(m)
    } else {
        Err(format!("`{s}` is not a MAC address"))
    }
}

fn ifname(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("`{s}` is not a usable interface name"))
    }
}

fn at(n: &Node, what: &str, e: String) -> String {
    format!("{}:{}: {what}: {e}", n.line, n.col)
}

fn strs(n: Option<&Node>) -> Vec<String> {
    n.and_then(Node::strings).unwrap_or_default()
}

/// Parses YAML network-config (v1 or v2; a top-level `network:` wrapper is accepted).
///
/// # Errors
/// A message with line:column for invalid addresses, MACs or an unknown version.
pub fn parse_yaml(text: &str) -> Result<Option<NetworkConfig>, String> {
    let Some(doc) = super::yaml::parse(text).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    parse_node(&doc)
}

/// Parses a network-config node (v1 or v2, optionally wrapped in `network:`).
///
/// # Errors
/// As [`parse_yaml`].
pub fn parse_node(doc: &Node) -> Result<Option<NetworkConfig>, String> {
    let doc = doc.get("network").unwrap_or(doc);
    if doc.get("config").and_then(|c| c.as_scalar()) == Some("disabled") {
        return Ok(None);
    }
    match doc.get("version").and_then(Node::as_int) {
        Some(1) => parse_v1(doc).and_then(checked).map(Some),
        Some(2) => parse_v2(doc).and_then(checked).map(Some),
        Some(v) => Err(format!(
            "network-config version {v} is not supported (1 or 2)"
        )),
        None => Err("network-config has no `version: 1` or `version: 2`".into()),
    }
}

fn parse_v1(doc: &Node) -> Result<NetworkConfig, String> {
    let mut nc = NetworkConfig::default();
    for (i, item) in doc
        .get("config")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let kind = item.get("type").and_then(Node::as_str).unwrap_or("");
        match kind {
            "physical" => {
                let mut ifc = Iface {
                    id: item
                        .get("name")
                        .and_then(Node::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("nic{i}")),
                    ..Iface::default()
                };
                if let Some(m) = item.get("mac_address").and_then(Node::as_str) {
                    ifc.mac = Some(mac(m).map_err(|e| at(item, "mac_address", e))?);
                }
                if let Some(n) = item.get("name").and_then(Node::as_str) {
                    let n = ifname(n).map_err(|e| at(item, "name", e))?;
                    if ifc.mac.is_some() {
                        ifc.set_name = Some(n);
                    } else {
                        ifc.name = Some(n);
                    }
                }
                if let Some(m) = item.get("mtu").and_then(Node::as_int) {
                    ifc.mtu = Some(m as u32);
                }
                for s in item
                    .get("subnets")
                    .and_then(Node::as_seq)
                    .unwrap_or_default()
                {
                    let st = s.get("type").and_then(Node::as_str).unwrap_or("");
                    match st {
                        "dhcp" | "dhcp4" => ifc.dhcp4 = true,
                        "dhcp6"
                        | "ipv6_slaac"
                        | "ipv6_dhcpv6-stateless"
                        | "ipv6_dhcpv6-stateful" => ifc.dhcp6 = true,
                        "static" | "static6" => {
                            let addr =
                                s.get("address").and_then(Node::as_str).ok_or_else(|| {
                                    at(s, "subnet", "static subnet without `address`".into())
                                })?;
                            let c = cidr(addr, s.get("netmask").and_then(Node::as_str))
                                .map_err(|e| at(s, "address", e))?;
                            ifc.addresses.push(c);
                            if let Some(g) = s.get("gateway").and_then(Node::as_str) {
                                let g = ip(g).map_err(|e| at(s, "gateway", e))?;
                                if g.is_ipv4() {
                                    ifc.gateway4 = Some(g.to_string());
                                } else {
                                    ifc.gateway6 = Some(g.to_string());
                                }
                            }
                            for d in strs(s.get("dns_nameservers")) {
                                ip(&d).map_err(|e| at(s, "dns_nameservers", e))?;
                                ifc.dns.push(d);
                            }
                            ifc.search.extend(strs(s.get("dns_search")));
                            for r in s.get("routes").and_then(Node::as_seq).unwrap_or_default() {
                                let net = r.get("network").and_then(Node::as_str).unwrap_or("");
                                let gw = r.get("gateway").and_then(Node::as_str).unwrap_or("");
                                let dest = cidr(net, r.get("netmask").and_then(Node::as_str))
                                    .map_err(|e| at(r, "routes", e))?;
                                ip(gw).map_err(|e| at(r, "routes", e))?;
                                ifc.routes.push((dest, gw.to_string()));
                            }
                            if let Some(m) = s.get("mtu").and_then(Node::as_int) {
                                ifc.mtu = Some(m as u32);
                            }
                        }
                        "manual" | "" => {}
                        other => nc
                            .unsupported
                            .push(format!("v1 subnet type `{other}` on {}", ifc.id)),
                    }
                }
                nc.ifaces.push(ifc);
            }
            "nameserver" => {
                for d in strs(item.get("address")) {
                    ip(&d).map_err(|e| at(item, "nameserver", e))?;
                    nc.dns.push(d);
                }
                nc.search.extend(strs(item.get("search")));
            }
            "route" => {
                let dest = item.get("destination").and_then(Node::as_str).unwrap_or("");
                let gw = item.get("gateway").and_then(Node::as_str).unwrap_or("");
                let dest = cidr(dest, item.get("netmask").and_then(Node::as_str))
                    .map_err(|e| at(item, "route", e))?;
                ip(gw).map_err(|e| at(item, "route", e))?;
                match nc.ifaces.last_mut() {
                    Some(i) => i.routes.push((dest, gw.to_string())),
                    None => nc.unsupported.push("v1 route before any interface".into()),
                }
            }
            other => nc.unsupported.push(format!(
                "v1 config type `{other}` (bonds, bridges, VLANs are not supported)"
            )),
        }
    }
    Ok(nc)
}

fn parse_v2(doc: &Node) -> Result<NetworkConfig, String> {
    let mut nc = NetworkConfig::default();
    if let Some(map) = doc.as_map() {
        for (k, _) in map {
            let k = k.as_scalar().unwrap_or("");
            if !matches!(k, "version" | "ethernets" | "renderer") {
                nc.unsupported
                    .push(format!("v2 `{k}` (only `ethernets` is supported)"));
            }
        }
    }
    for (key, e) in doc
        .get("ethernets")
        .and_then(Node::as_map)
        .unwrap_or_default()
    {
        let id = key.as_scalar().unwrap_or("nic").to_string();
        let mut ifc = Iface {
            id: id.clone(),
            ..Iface::default()
        };
        if let Some(m) = e.get("match") {
            if let Some(a) = m.get("macaddress").and_then(Node::as_str) {
                ifc.mac = Some(mac(a).map_err(|er| at(m, "macaddress", er))?);
            }
            if let Some(n) = m.get("name").and_then(Node::as_str) {
                ifc.name = Some(n.to_string());
            }
        } else {
            ifc.name = Some(ifname(&id).map_err(|er| at(key, "ethernets", er))?);
        }
        if let Some(n) = e.get("set-name").and_then(Node::as_str) {
            ifc.set_name = Some(ifname(n).map_err(|er| at(e, "set-name", er))?);
        }
        ifc.dhcp4 = e.get("dhcp4").and_then(Node::as_bool).unwrap_or(false);
        ifc.dhcp6 = e.get("dhcp6").and_then(Node::as_bool).unwrap_or(false);
        for a in strs(e.get("addresses")) {
            ifc.addresses
                .push(cidr(&a, None).map_err(|er| at(e, "addresses", er))?);
        }
        if let Some(g) = e.get("gateway4").and_then(Node::as_str) {
            ifc.gateway4 = Some(ip(g).map_err(|er| at(e, "gateway4", er))?.to_string());
        }
        if let Some(g) = e.get("gateway6").and_then(Node::as_str) {
            ifc.gateway6 = Some(ip(g).map_err(|er| at(e, "gateway6", er))?.to_string());
        }
        for r in e.get("routes").and_then(Node::as_seq).unwrap_or_default() {
            let to = r.get("to").and_then(Node::as_str).unwrap_or("");
            let via = r.get("via").and_then(Node::as_str).unwrap_or("");
            let gw = ip(via).map_err(|er| at(r, "routes.via", er))?;
            if matches!(to, "default" | "0.0.0.0/0" | "::/0") {
                if gw.is_ipv4() {
                    ifc.gateway4 = Some(gw.to_string());
                } else {
                    ifc.gateway6 = Some(gw.to_string());
                }
            } else {
                ifc.routes.push((
                    cidr(to, None).map_err(|er| at(r, "routes.to", er))?,
                    gw.to_string(),
                ));
            }
        }
        if let Some(ns) = e.get("nameservers") {
            for d in strs(ns.get("addresses")) {
                ip(&d).map_err(|er| at(ns, "nameservers", er))?;
                ifc.dns.push(d);
            }
            ifc.search.extend(strs(ns.get("search")));
        }
        if let Some(m) = e.get("mtu").and_then(Node::as_int) {
            ifc.mtu = Some(m as u32);
        }
        nc.ifaces.push(ifc);
    }
    Ok(nc)
}

/// Parses Debian `interfaces` text as Proxmox writes it on a ConfigDrive.
///
/// # Errors
/// A message with the line number for invalid addresses.
pub fn parse_eni(text: &str) -> Result<NetworkConfig, String> {
    within_limit("interfaces", text)?;
    parse_eni_text(text).and_then(checked)
}

fn parse_eni_text(text: &str) -> Result<NetworkConfig, String> {
    let mut nc = NetworkConfig::default();
    let mut cur: Option<usize> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        let err = |e: String| format!("line {}: {e}", n + 1);
        match w[0] {
            "auto" | "allow-hotplug" => {}
            "iface" if w.len() >= 4 => {
                if w[1] == "lo" {
                    cur = None;
                    continue;
                }
                let idx = match nc.ifaces.iter().position(|i| i.id == w[1]) {
                    Some(i) => i,
                    None => {
                        nc.ifaces.push(Iface {
                            id: w[1].to_string(),
                            name: Some(ifname(w[1]).map_err(err)?),
                            ..Iface::default()
                        });
                        nc.ifaces.len() - 1
                    }
                };
                let ifc = &mut nc.ifaces[idx];
                match (w[2], w[3]) {
                    ("inet", "dhcp") => ifc.dhcp4 = true,
                    ("inet6", "dhcp" | "auto") => ifc.dhcp6 = true,
                    (_, "static" | "manual") => {}
                    (f, m) => nc.unsupported.push(format!("iface {} {f} {m}", w[1])),
                }
                cur = Some(idx);
            }
            key => {
                let val = w.get(1..).map(|v| v.join(" ")).unwrap_or_default();
                let target = match cur {
                    Some(i) => Some(&mut nc.ifaces[i]),
                    None => None,
                };
                match (key, target) {
                    ("dns_nameservers" | "dns-nameservers", t) => {
                        let mut list = Vec::new();
                        for d in val.split_whitespace() {
                            ip(d).map_err(err)?;
                            list.push(d.to_string());
                        }
                        match t {
                            Some(i) => i.dns.extend(list),
                            None => nc.dns.extend(list),
                        }
                    }
                    ("dns_search" | "dns-search", t) => {
                        let list = val.split_whitespace().map(str::to_string);
                        match t {
                            Some(i) => i.search.extend(list),
                            None => nc.search.extend(list),
                        }
                    }
                    ("address", Some(i)) => {
                        i.addresses.push(cidr(&val, None).map_err(err)?);
                    }
                    ("netmask", Some(i)) => {
                        if let Some(last) = i.addresses.last_mut() {
                            let a = last.split('/').next().unwrap_or_default().to_string();
                            *last = cidr(&a, Some(&val)).map_err(err)?;
                        }
                    }
                    ("gateway", Some(i)) => {
                        let g = ip(&val).map_err(err)?;
                        if g.is_ipv4() {
                            i.gateway4 = Some(g.to_string());
                        } else {
                            i.gateway6 = Some(g.to_string());
                        }
                    }
                    ("mtu", Some(i)) => i.mtu = val.parse().ok(),
                    ("hwaddress", Some(i)) => {
                        let m = val.trim_start_matches("ether ").trim();
                        i.mac = Some(mac(m).map_err(err)?);
                    }
                    (k, _) => nc.unsupported.push(format!("interfaces option `{k}`")),
                }
            }
        }
    }
    Ok(nc)
}

/// Parses OpenStack `network_data.json`.
///
/// # Errors
/// When the JSON is invalid or addresses are malformed.
pub fn parse_openstack(text: &str) -> Result<NetworkConfig, String> {
    within_limit("network_data.json", text)?;
    parse_openstack_text(text).and_then(checked)
}

fn parse_openstack_text(text: &str) -> Result<NetworkConfig, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("network_data.json: {e}"))?;
    let mut nc = NetworkConfig::default();
    let empty = Vec::new();
    let links = v["links"].as_array().unwrap_or(&empty);
    for l in links {
        let id = l["id"].as_str().unwrap_or("nic").to_string();
        let mut ifc = Iface {
            id: id.clone(),
            ..Iface::default()
        };
        if let Some(m) = l["ethernet_mac_address"].as_str() {
            ifc.mac = Some(mac(m)?);
        }
        ifc.mtu = l["mtu"].as_u64().map(|m| m as u32);
        match l["type"].as_str().unwrap_or("phy") {
            "phy" | "ethernet" | "ovs" | "bridge" | "tap" | "vif" | "hw_veb" | "vhostuser"
            | "dvs" | "hyperv" => {}
            other => nc
                .unsupported
                .push(format!("network_data.json link type `{other}`")),
        }
        nc.ifaces.push(ifc);
    }
    for n in v["networks"].as_array().unwrap_or(&empty) {
        let link = n["link"].as_str().unwrap_or("");
        let Some(ifc) = nc.ifaces.iter_mut().find(|i| i.id == link) else {
            nc.unsupported.push(format!(
                "network_data.json network on unknown link `{link}`"
            ));
            continue;
        };
        match n["type"].as_str().unwrap_or("") {
            "ipv4_dhcp" => ifc.dhcp4 = true,
            "ipv6_dhcp" | "ipv6_slaac" | "ipv6_dhcpv6-stateless" | "ipv6_dhcpv6-stateful" => {
                ifc.dhcp6 = true
            }
            "ipv4" | "ipv6" => {
                let a = n["ip_address"].as_str().unwrap_or("");
                ifc.addresses.push(cidr(a, n["netmask"].as_str())?);
                for r in n["routes"].as_array().unwrap_or(&empty) {
                    let net = r["network"].as_str().unwrap_or("");
                    let gw = r["gateway"].as_str().unwrap_or("");
                    let g = ip(gw)?;
                    if matches!(net, "0.0.0.0" | "::") {
                        if g.is_ipv4() {
                            ifc.gateway4 = Some(g.to_string());
                        } else {
                            ifc.gateway6 = Some(g.to_string());
                        }
                    } else {
                        ifc.routes
                            .push((cidr(net, r["netmask"].as_str())?, g.to_string()));
                    }
                }
                for d in n["dns_nameservers"].as_array().unwrap_or(&empty) {
                    if let Some(d) = d.as_str() {
                        ip(d)?;
                        ifc.dns.push(d.to_string());
                    }
                }
            }
            other => nc
                .unsupported
                .push(format!("network_data.json network type `{other}`")),
        }
    }
    for s in v["services"].as_array().unwrap_or(&empty) {
        if s["type"].as_str() == Some("dns")
            && let Some(a) = s["address"].as_str()
        {
            ip(a)?;
            nc.dns.push(a.to_string());
        }
    }
    Ok(nc)
}

fn file_id(i: &Iface) -> String {
    i.id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Renders one systemd-networkd `.network` file per interface: (file name, content).
pub fn render_networkd(nc: &NetworkConfig) -> Vec<(String, String)> {
    let dns = nc.all_dns();
    let search = nc.all_search();
    nc.ifaces
        .iter()
        .map(|i| {
            let mut s = format!(
                "{MANAGED_HEADER}\n# From instance network configuration ({}).\n[Match]\n",
                i.id
            );
            match (&i.mac, &i.name) {
                (Some(m), _) => s.push_str(&format!("MACAddress={m}\n")),
                (None, Some(n)) => s.push_str(&format!("Name={n}\n")),
                (None, None) => s.push_str(&format!("Name={}\n", i.id)),
            }
            if let Some(m) = i.mtu {
                s.push_str(&format!("\n[Link]\nMTUBytes={m}\n"));
            }
            s.push_str("\n[Network]\n");
            s.push_str(match (i.dhcp4, i.dhcp6) {
                (true, true) => "DHCP=yes\n",
                (true, false) => "DHCP=ipv4\n",
                (false, true) => "DHCP=ipv6\n",
                (false, false) => "DHCP=no\n",
            });
            if !i.dhcp6 {
                s.push_str("IPv6AcceptRA=no\n");
            }
            for a in &i.addresses {
                s.push_str(&format!("Address={a}\n"));
            }
            for g in i.gateway4.iter().chain(i.gateway6.iter()) {
                s.push_str(&format!("Gateway={g}\n"));
            }
            let has_static = !i.addresses.is_empty();
            if has_static {
                for d in &dns {
                    s.push_str(&format!("DNS={d}\n"));
                }
                if !search.is_empty() {
                    s.push_str(&format!("Domains={}\n", search.join(" ")));
                }
            }
            for (dest, gw) in &i.routes {
                s.push_str(&format!("\n[Route]\nDestination={dest}\nGateway={gw}\n"));
            }
            (format!("10-bollwerk-{}.network", file_id(i)), s)
        })
        .collect()
}

fn yq(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Renders a netplan (v2) file for the configuration.
pub fn render_netplan(nc: &NetworkConfig) -> String {
    let dns = nc.all_dns();
    let search = nc.all_search();
    let mut s = format!("{MANAGED_HEADER}\nnetwork:\n  version: 2\n  ethernets:\n");
    for i in &nc.ifaces {
        s.push_str(&format!("    {}:\n", yq(&file_id(i))));
        match (&i.mac, &i.name) {
            (Some(m), _) => s.push_str(&format!("      match:\n        macaddress: {}\n", yq(m))),
            (None, Some(n)) => s.push_str(&format!("      match:\n        name: {}\n", yq(n))),
            (None, None) => {}
        }
        s.push_str(&format!(
            "      dhcp4: {}\n      dhcp6: {}\n",
            i.dhcp4, i.dhcp6
        ));
        if let Some(m) = i.mtu {
            s.push_str(&format!("      mtu: {m}\n"));
        }
        if !i.addresses.is_empty() {
            s.push_str("      addresses:\n");
            for a in &i.addresses {
                s.push_str(&format!("        - {}\n", yq(a)));
            }
        }
        let mut routes: Vec<(String, String)> = Vec::new();
        if let Some(g) = &i.gateway4 {
            routes.push(("0.0.0.0/0".into(), g.clone()));
        }
        if let Some(g) = &i.gateway6 {
            routes.push(("::/0".into(), g.clone()));
        }
        routes.extend(i.routes.iter().cloned());
        if !routes.is_empty() {
            s.push_str("      routes:\n");
            for (to, via) in routes {
                s.push_str(&format!(
                    "        - to: {}\n          via: {}\n",
                    yq(&to),
                    yq(&via)
                ));
            }
        }
        if !i.addresses.is_empty() && (!dns.is_empty() || !search.is_empty()) {
            s.push_str("      nameservers:\n");
            if !dns.is_empty() {
                s.push_str(&format!(
                    "        addresses: [{}]\n",
                    dns.iter().map(|d| yq(d)).collect::<Vec<_>>().join(", ")
                ));
            }
            if !search.is_empty() {
                s.push_str(&format!(
                    "        search: [{}]\n",
                    search.iter().map(|d| yq(d)).collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    s
}

/// The fallback when instance data has no network configuration: DHCP on every Ethernet NIC.
pub fn dhcp_fallback() -> NetworkConfig {
    NetworkConfig {
        ifaces: vec![Iface {
            id: "dhcp".into(),
            name: Some("en* eth*".into()),
            dhcp4: true,
            dhcp6: true,
            ..Iface::default()
        }],
        ..NetworkConfig::default()
    }
}

/// `etc/resolv.conf` for static configurations on systems without a resolver daemon.
pub fn render_resolv_conf(nc: &NetworkConfig) -> Option<String> {
    let dns = nc.all_dns();
    if dns.is_empty() {
        return None;
    }
    let mut s = format!("{MANAGED_HEADER}\n");
    let search = nc.all_search();
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    for d in dns.iter().take(3) {
        s.push_str(&format!("nameserver {d}\n"));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// network-config v1 exactly as Proxmox VE's `nocloud_network` writes it.
    pub const PROXMOX_V1: &str = "version: 1\nconfig:\n    - type: physical\n      name: eth0\n      mac_address: 'bc:24:11:aa:bb:cc'\n      subnets:\n      - type: static\n        address: '192.0.2.10'\n        netmask: '255.255.255.0'\n        gateway: '192.0.2.1'\n    - type: nameserver\n      address:\n      - '192.0.2.53'\n      search:\n      - 'example.org'\n";

    #[test]
    fn proxmox_v1_to_networkd() {
        let nc = parse_yaml(PROXMOX_V1).unwrap().unwrap();
        assert_eq!(nc.ifaces.len(), 1);
        let i = &nc.ifaces[0];
        assert_eq!(i.mac.as_deref(), Some("bc:24:11:aa:bb:cc"));
        assert_eq!(i.set_name.as_deref(), Some("eth0"));
        assert_eq!(i.addresses, vec!["192.0.2.10/24"]);
        assert_eq!(i.gateway4.as_deref(), Some("192.0.2.1"));
        let files = render_networkd(&nc);
        assert_eq!(files[0].0, "10-bollwerk-eth0.network");
        let f = &files[0].1;
        assert!(f.contains("MACAddress=bc:24:11:aa:bb:cc\n"), "{f}");
        assert!(
            f.contains(
                "Address=192.0.2.10/24\nGateway=192.0.2.1\nDNS=192.0.2.53\nDomains=example.org\n"
            ),
            "{f}"
        );
        assert!(f.contains("DHCP=no\n"), "{f}");
    }

    #[test]
    fn v2_with_match_routes_and_mtu() {
        let t = "network:\n  version: 2\n  ethernets:\n    net0:\n      match:\n        macaddress: \"52:54:00:12:34:56\"\n      set-name: eth0\n      addresses: ['10.0.2.15/24', '2001:db8::5/64']\n      routes:\n        - to: default\n          via: 10.0.2.2\n        - to: 198.51.100.0/24\n          via: 10.0.2.1\n      gateway6: 2001:db8::1\n      nameservers:\n        addresses: [10.0.2.3]\n      mtu: 1450\n";
        let nc = parse_yaml(t).unwrap().unwrap();
        let i = &nc.ifaces[0];
        assert_eq!(i.gateway4.as_deref(), Some("10.0.2.2"));
        assert_eq!(i.gateway6.as_deref(), Some("2001:db8::1"));
        assert_eq!(
            i.routes,
            vec![("198.51.100.0/24".to_string(), "10.0.2.1".to_string())]
        );
        assert_eq!(i.mtu, Some(1450));
        let f = &render_networkd(&nc)[0].1;
        assert!(f.contains("[Link]\nMTUBytes=1450\n"), "{f}");
        assert!(
            f.contains("[Route]\nDestination=198.51.100.0/24\nGateway=10.0.2.1\n"),
            "{f}"
        );
        let np = render_netplan(&nc);
        assert!(np.contains("macaddress: \"52:54:00:12:34:56\""), "{np}");
        assert!(
            np.contains("- to: \"0.0.0.0/0\"\n          via: \"10.0.2.2\""),
            "{np}"
        );
        assert!(np.contains("mtu: 1450"), "{np}");
        // The netplan output is itself valid v2 and parses back to the same addresses.
        let back = parse_yaml(&np).unwrap().unwrap();
        assert_eq!(back.ifaces[0].addresses, i.addresses);
        assert_eq!(back.ifaces[0].gateway4, i.gateway4);
    }

    #[test]
    fn bad_values_are_errors_with_position() {
        let e = parse_yaml("version: 2\nethernets:\n  e:\n    addresses: [10.0.2.300/24]\n")
            .unwrap_err();
        assert!(e.contains("10.0.2.300"), "{e}");
        assert!(
            e.starts_with("2:") || e.starts_with("3:") || e.starts_with("4:"),
            "{e}"
        );
        assert!(parse_yaml("version: 3\n").is_err());
        assert!(
            parse_yaml("network: {config: disabled}\n")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn proxmox_configdrive_interfaces() {
        let t = "auto lo\niface lo inet loopback\n\n        dns_nameservers 192.0.2.53\n        dns_search example.org\nauto eth0\niface eth0 inet static\n        address 192.0.2.10\n        netmask 255.255.255.0\n        gateway 192.0.2.1\niface eth0 inet6 auto\n";
        let nc = parse_eni(t).unwrap();
        assert_eq!(nc.ifaces.len(), 1);
        assert_eq!(nc.ifaces[0].addresses, vec!["192.0.2.10/24"]);
        assert!(nc.ifaces[0].dhcp6);
        assert_eq!(nc.all_dns(), vec!["192.0.2.53"]);
        assert_eq!(nc.all_search(), vec!["example.org"]);
    }

    #[test]
    fn openstack_network_data() {
        let t = r#"{"links":[{"id":"tap1","type":"ovs","ethernet_mac_address":"FA:16:3E:00:00:01","mtu":1450}],
            "networks":[{"id":"n1","link":"tap1","type":"ipv4","ip_address":"203.0.113.5","netmask":"255.255.255.0",
            "routes":[{"network":"0.0.0.0","netmask":"0.0.0.0","gateway":"203.0.113.1"}]}],
            "services":[{"type":"dns","address":"203.0.113.53"}]}"#;
        let nc = parse_openstack(t).unwrap();
        let i = &nc.ifaces[0];
        assert_eq!(i.mac.as_deref(), Some("fa:16:3e:00:00:01"));
        assert_eq!(i.addresses, vec!["203.0.113.5/24"]);
        assert_eq!(i.gateway4.as_deref(), Some("203.0.113.1"));
        assert_eq!(i.mtu, Some(1450));
        assert_eq!(nc.dns, vec!["203.0.113.53"]);
        assert!(
            render_resolv_conf(&nc)
                .unwrap()
                .contains("nameserver 203.0.113.53\n")
        );
    }

    #[test]
    fn masks() {
        assert_eq!(mask_to_prefix("255.255.255.0").unwrap(), 24);
        assert_eq!(mask_to_prefix("255.255.0.0").unwrap(), 16);
        assert!(mask_to_prefix("255.0.255.0").is_err());
        assert_eq!(cidr("10.0.0.1", None).unwrap(), "10.0.0.1/32");
    }

    #[test]
    fn injected_values_and_oversized_input_are_refused() {
        let v1 = "version: 1\nconfig:\n  - type: nameserver\n    address: [10.0.0.2]\n    search: [\"example.org\\nnameserver 6.6.6.6\"]\n";
        let e = parse_yaml(v1).unwrap_err();
        assert!(e.contains("search domain"), "{e}");
        let eni = "auto eth0\niface eth0 inet dhcp\n    dns-search a.example b\u{1b}x\n";
        assert!(parse_eni(eni).is_err());
        let big = format!("# {}\n", "x".repeat(MAX_BYTES));
        assert!(parse_eni(&big).unwrap_err().contains("limit"));
        assert!(parse_openstack(&big).unwrap_err().contains("limit"));
        let many: String = (0..100)
            .map(|i| format!("auto e{i}\niface e{i} inet dhcp\n"))
            .collect();
        assert!(parse_eni(&many).unwrap_err().contains("interfaces"));
        let ok = "version: 1\nconfig:\n  - type: nameserver\n    address: [10.0.0.2]\n    search: [example.org, ~corp]\n";
        assert!(parse_yaml(ok).is_ok());
    }
}
