//! The outbound-destination allowlist.
use std::net::IpAddr;

use ipnet::IpNet;

/// Whether `address` is allowed; IPv4-mapped IPv6 addresses are judged as IPv4.
pub(crate) fn is_allowed(address: IpAddr, allow: &[IpNet]) -> bool {
    let address = match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    allow.iter().any(|net| net.contains(&address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_ALLOW;

    fn allow() -> Vec<IpNet> {
        DEFAULT_ALLOW
            .iter()
            .map(|s| s.parse().expect("cidr"))
            .collect()
    }

    #[test]
    fn loopback_and_unspecified_are_allowed_by_default() {
        for ok in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "0.0.0.0",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_allowed(ok.parse().expect("ip"), &allow()), "{ok}");
        }
        for bad in ["172.17.0.1", "8.8.8.8", "::ffff:8.8.8.8", "2001:db8::1"] {
            assert!(!is_allowed(bad.parse().expect("ip"), &allow()), "{bad}");
        }
    }

    #[test]
    fn configured_cidrs_extend_the_list() {
        let mut allow = allow();
        allow.push("172.17.0.0/16".parse().expect("cidr"));
        assert!(is_allowed("172.17.0.1".parse().expect("ip"), &allow));
        assert!(!is_allowed("172.18.0.1".parse().expect("ip"), &allow));
    }
}
