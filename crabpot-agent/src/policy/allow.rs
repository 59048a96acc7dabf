//! Allowlist entries: a CIDR (any port), or one address with a port.
use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllowEntry {
    pub net: IpNet,
    /// Only for a single address.
    pub port: Option<u16>,
}

impl FromStr for AllowEntry {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(AllowEntry { net, port: None });
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(AllowEntry {
                net: IpNet::from(ip),
                port: None,
            });
        }
        if let Ok(socket) = text.parse::<std::net::SocketAddr>() {
            return Ok(AllowEntry {
                net: IpNet::from(socket.ip()),
                port: Some(socket.port()),
            });
        }
        Err(format!(
            "`{text}` is not an allowlist entry: use a CIDR (10.0.0.0/8, fd00::/8), an address \
             (192.0.2.7) or an address with a port (192.0.2.7:443, [2001:db8::1]:443)"
        ))
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.port, self.net) {
            (Some(port), IpNet::V6(net)) => write!(f, "[{}]:{port}", net.addr()),
            (Some(port), net) => write!(f, "{}:{port}", net.addr()),
            (None, net) => write!(f, "{net}"),
        }
    }
}

impl TryFrom<String> for AllowEntry {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

/// A host name to allow: resolved by the agent and refreshed periodically, and learned from
/// the DNS replies the container receives. `*.example.com` matches every name under
/// example.com (not example.com itself) and is learned from replies only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub name: String,
    pub port: Option<u16>,
}

impl HostEntry {
    /// `*.suffix`: learned from DNS replies only, never resolved by the agent.
    pub fn is_pattern(&self) -> bool {
        self.name.starts_with("*.")
    }

    /// Whether `name` (lower case, no final dot) is this entry's name or under its pattern.
    pub fn matches(&self, name: &str) -> bool {
        match self.name.strip_prefix('*') {
            // The suffix keeps its leading dot: "*.example.com" needs ".example.com".
            Some(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
            None => name == self.name,
        }
    }
}

/// One allowlist line: an address form, or a host name (with an optional port).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum AllowSpec {
    Address(AllowEntry),
    Host(HostEntry),
}

fn valid_host(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl FromStr for AllowSpec {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(entry) = text.parse::<AllowEntry>() {
            return Ok(AllowSpec::Address(entry));
        }
        let text = text.trim();
        let (name, port) = match text.rsplit_once(':') {
            Some((name, port)) => (
                name,
                Some(
                    port.parse::<u16>()
                        .map_err(|_| format!("`{port}` in `{text}` is not a port number"))?,
                ),
            ),
            None => (text, None),
        };
        if !valid_host(name.strip_prefix("*.").unwrap_or(name)) {
            return Err(format!(
                "`{text}` is not an allowlist entry: use a CIDR (10.0.0.0/8), an address \
                 (192.0.2.7), an address with a port (192.0.2.7:443, [2001:db8::1]:443), a \
                 host name (api.example.com, api.example.com:443) or a pattern (*.example.com)"
            ));
        }
        Ok(AllowSpec::Host(HostEntry {
            name: name.to_ascii_lowercase(),
            port,
        }))
    }
}

impl TryFrom<String> for AllowSpec {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_allowlist_entries_too() {
        assert_eq!(
            "Api.Example.com:443".parse::<AllowSpec>(),
            Ok(AllowSpec::Host(HostEntry {
                name: "api.example.com".into(),
                port: Some(443)
            }))
        );
        assert!(matches!(
            "10.0.0.0/8".parse::<AllowSpec>(),
            Ok(AllowSpec::Address(_))
        ));
        assert!("bad_host!".parse::<AllowSpec>().is_err());
        assert!("*".parse::<AllowSpec>().is_err());
        assert!("a.*.com".parse::<AllowSpec>().is_err());
        assert!("host:99999".parse::<AllowSpec>().is_err());
        assert!("10.0.0.0/33".parse::<AllowSpec>().is_err());
    }

    #[test]
    fn patterns_match_names_under_them_only() {
        let Ok(AllowSpec::Host(pattern)) = "*.OpenClaw.ai:443".parse::<AllowSpec>() else {
            panic!("a pattern is an allowlist entry");
        };
        assert!(pattern.is_pattern());
        assert_eq!(pattern.port, Some(443));
        assert!(pattern.matches("catalog.openclaw.ai"));
        assert!(pattern.matches("a.b.openclaw.ai"));
        assert!(!pattern.matches("openclaw.ai"));
        assert!(!pattern.matches("evilopenclaw.ai"));
        let Ok(AllowSpec::Host(exact)) = "clawhub.ai".parse::<AllowSpec>() else {
            panic!("a host name is an allowlist entry");
        };
        assert!(exact.matches("clawhub.ai") && !exact.matches("x.clawhub.ai"));
    }

    #[test]
    fn parses_cidrs_addresses_and_ports() {
        let e: AllowEntry = "10.0.0.0/8".parse().expect("cidr");
        assert_eq!((e.net.prefix_len(), e.port), (8, None));
        let e: AllowEntry = "192.0.2.7:443".parse().expect("addr:port");
        assert_eq!((e.net.prefix_len(), e.port), (32, Some(443)));
        let e: AllowEntry = "[2001:db8::1]:443".parse().expect("v6:port");
        assert_eq!((e.net.prefix_len(), e.port), (128, Some(443)));
        assert_eq!(e.to_string(), "[2001:db8::1]:443");
        assert!("example.com".parse::<AllowEntry>().is_err());
        assert!("10.0.0.0/33".parse::<AllowEntry>().is_err());
    }
}
