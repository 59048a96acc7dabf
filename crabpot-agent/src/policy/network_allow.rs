//! The outbound-destination allowlist.
use std::net::IpAddr;

use ipnet::IpNet;

/// Always allowed: loopback, and the unspecified address (a connect to it reaches the
/// container itself).
pub(crate) const ALWAYS_ALLOWED: [&str; 4] = ["127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128"];

/// [`ALWAYS_ALLOWED`] parsed.
pub(crate) fn always_allowed() -> Vec<IpNet> {
    ALWAYS_ALLOWED
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
}

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
    fn allow() -> Vec<IpNet> {
        let allow = always_allowed();
        assert_eq!(allow.len(), ALWAYS_ALLOWED.len());
        allow
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
