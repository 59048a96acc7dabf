//! Allowlist entries: a CIDR (any port), or one address with a port.
use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
