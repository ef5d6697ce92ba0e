//! Which addresses outbound federation requests may reach.
//!
//! A remote server controls its own DNS, so without a filter it could point us at our own
//! internal network (SSRF). The denied ranges follow Synapse's recommended
//! `ip_range_blacklist`: loopback, private, link-local, CGNAT, documentation, benchmarking,
//! multicast and unspecified addresses. Tests on loopback turn the filter off.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is outside the public internet (and so denied unless private targets are
/// allowed).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            // `::ffff:10.0.0.1` reaches 10.0.0.1: judge the IPv4 address.
            Some(v4) => is_private_v4(v4),
            None => is_private_v6(v6),
        },
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    const RANGES: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),
        ([10, 0, 0, 0], 8),
        ([100, 64, 0, 0], 10),
        ([127, 0, 0, 0], 8),
        ([169, 254, 0, 0], 16),
        ([172, 16, 0, 0], 12),
        ([192, 0, 0, 0], 24),
        ([192, 0, 2, 0], 24),
        ([192, 88, 99, 0], 24),
        ([192, 168, 0, 0], 16),
        ([198, 18, 0, 0], 15),
        ([198, 51, 100, 0], 24),
        ([203, 0, 113, 0], 24),
        ([224, 0, 0, 0], 4),
        ([240, 0, 0, 0], 4),
    ];
    RANGES.iter().any(|&(net, prefix)| in_v4(ip, net, prefix))
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fe80::/10 link-local, fec0::/10 deprecated site-local
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        // fc00::/7 unique local
        || (s[0] & 0xfe00) == 0xfc00
        // 2001:db8::/32 documentation
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        // 64:ff9b::/96 NAT64 embeds an IPv4 address: judge that address.
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] && {
            let [a, b] = s[6].to_be_bytes();
            let [c, d] = s[7].to_be_bytes();
            is_private_v4(Ipv4Addr::new(a, b, c, d))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("bad test ip {s}"))
    }

    #[test]
    fn private_ranges_are_denied() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "2001:db8::1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_private(ip(s)), "{s} should be private");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!is_private(ip(s)), "{s} should be public");
        }
    }
}
