//! Splitting a server name (or an `m.server` delegated name) into the host and port the
//! resolution steps branch on.

use std::fmt;
use std::net::IpAddr;

use ruma::ServerName;

/// The host part of a server name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 literal, or an IPv6 literal without its brackets.
    Ip(IpAddr),
    /// A DNS name, lower-cased (DNS names compare case-insensitively, and the lower-cased
    /// form is what the caches key on).
    Name(String),
}

/// A parsed server name: `<host>[:<port>]` as the appendix's grammar defines it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ParsedServerName {
    pub host: Host,
    pub port: Option<u16>,
}

/// Why a string is not a server name.
#[derive(Debug, thiserror::Error)]
#[error("invalid server name {0:?}")]
pub struct InvalidServerName(pub String);

impl ParsedServerName {
    /// Parses with ruma's grammar check, then splits the host into an IP literal or a name.
    pub fn parse(input: &str) -> Result<Self, InvalidServerName> {
        let invalid = || InvalidServerName(input.to_owned());
        let name = <&ServerName>::try_from(input).map_err(|_| invalid())?;
        let host = name.host();
        let host = if let Some(inner) = host.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or_else(invalid)?;
            // The grammar only allows IPv6 inside brackets.
            Host::Ip(IpAddr::V6(inner.parse().map_err(|_| invalid())?))
        } else if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            Host::Ip(IpAddr::V4(ip))
        } else {
            // ruma accepts a trailing dot-free DNS name; an all-numeric name that is not a
            // valid IPv4 address (e.g. `1.2.3.999`) is still a DNS name to us.
            Host::Name(host.to_ascii_lowercase())
        };
        Ok(Self {
            host,
            port: name.port(),
        })
    }

    /// The `Host` header / authority form: IPv6 in brackets, port only if one was given.
    pub fn authority(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for ParsedServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ParsedServerName {
        match ParsedServerName::parse(s) {
            Ok(p) => p,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn hostname_without_port() {
        let p = parse("Matrix.Example.org");
        assert_eq!(p.host, Host::Name("matrix.example.org".into()));
        assert_eq!(p.port, None);
        assert_eq!(p.authority(), "matrix.example.org");
    }

    #[test]
    fn hostname_with_port() {
        let p = parse("example.org:8449");
        assert_eq!(p.host, Host::Name("example.org".into()));
        assert_eq!(p.port, Some(8449));
        assert_eq!(p.authority(), "example.org:8449");
    }

    #[test]
    fn ipv4_literal() {
        let p = parse("1.2.3.4");
        assert_eq!(
            p.host,
            Host::Ip("1.2.3.4".parse().unwrap_or_else(|_| unreachable!()))
        );
        assert_eq!(p.port, None);
        let p = parse("1.2.3.4:1234");
        assert_eq!(p.port, Some(1234));
        assert_eq!(p.authority(), "1.2.3.4:1234");
    }

    #[test]
    fn ipv6_literal() {
        let p = parse("[1234:5678::abcd]");
        assert!(matches!(p.host, Host::Ip(IpAddr::V6(_))));
        assert_eq!(p.port, None);
        assert_eq!(p.authority(), "[1234:5678::abcd]");
        let p = parse("[::1]:5678");
        assert_eq!(
            p.host,
            Host::Ip("::1".parse().unwrap_or_else(|_| unreachable!()))
        );
        assert_eq!(p.port, Some(5678));
        assert_eq!(p.authority(), "[::1]:5678");
    }

    #[test]
    fn rejects_invalid_names() {
        for bad in [
            "",
            "example.org:",
            "example.org:99999",
            "[::1",
            "::1",
            "exa mple.org",
            "example.org/path",
            "[not-ip]:80",
        ] {
            assert!(ParsedServerName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
