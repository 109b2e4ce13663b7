//! Listening sockets of the running system, from the kernel's `/proc/net/{tcp,tcp6,udp,udp6}`
//! tables: one parser for the lockout guard (is the new SSH port taken?), the `port` probe of
//! custom checks and the open-ports audit check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    /// The local address.
    pub addr: IpAddr,
    /// The local port.
    pub port: u16,
    /// The socket inode (column 10; empty when the line is shorter), to find its process.
    pub inode: String,
}

/// A `/proc/net` address: the kernel prints each 32-bit word in host (little-endian) order.
pub fn hex_ip(h: &str) -> Option<IpAddr> {
    match h.len() {
        8 => {
            let n = u32::from_str_radix(h, 16).ok()?;
            Some(Ipv4Addr::from(n.swap_bytes()).into())
        }
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_mut(4).enumerate() {
                let w = u32::from_str_radix(h.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&w.to_le_bytes());
            }
            Some(Ipv6Addr::from(b).into())
        }
        _ => None,
    }
}

/// True for `127.0.0.0/8`, `::1` and `::ffff:127.x.y.z`.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|m| m.is_loopback()),
    }
}

/// The listening sockets of one table's text. `udp`: unconnected sockets (state `07`, no
/// remote port); otherwise TCP state `0A` (LISTEN).
pub fn listening(text: &str, udp: bool) -> Vec<Socket> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 4 {
            continue;
        }
        let Some((la, lp)) = w[1].split_once(':') else {
            continue;
        };
        let listens = if udp {
            w[3] == "07" && w[2].split_once(':').is_some_and(|(_, rp)| rp == "0000")
        } else {
            w[3] == "0A"
        };
        let (Some(addr), Ok(port)) = (hex_ip(la), u16::from_str_radix(lp, 16)) else {
            continue;
        };
        if listens {
            let inode = w.get(9).map(|s| s.to_string()).unwrap_or_default();
            out.push(Socket { addr, port, inode });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_and_tcp6_listeners() {
        let v4 = "  sl  local_address rem_address   st\n   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1\n   1: 00000000:01BB 00000000:0000 01 x x x 0 0 99 1\n";
        let s = listening(v4, false);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((s[0].port, s[0].inode.as_str()), (22, "1234"));
        assert!(is_loopback(s[0].addr));
        let v6 = "h\n 0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A\n";
        let s = listening(v6, false);
        assert_eq!(s[0].addr, "::1".parse::<IpAddr>().unwrap());
        assert_eq!((s[0].port, s[0].inode.as_str()), (80, ""));
        assert!(listening(v6, true).is_empty());
    }
}
