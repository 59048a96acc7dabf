//! A packet to a destination outside the allowlist, seen at the container's cgroup egress
//! (crabpot-ebpf/src/packet.rs): ICMP through a ping socket, a raw IP socket, any protocol
//! the connect and sendmsg hooks do not see. Judged like a connect (the same rule and
//! allowlist).
use std::net::IpAddr;

use crabpot_common::PacketEvent;

use crate::{
    model::{
        alert::Severity,
        event::{EventBody, RuleName, Verdict},
    },
    policy::violations::{Judgement, record, route},
    sources::bpf::record::{AF_INET, AF_INET6, ip_address},
};

pub(super) fn decode(e: &PacketEvent) -> EventBody {
    let family = if e.ip_version == 6 { AF_INET6 } else { AF_INET };
    EventBody::Packet {
        verdict: Verdict::from_raw(e.verdict),
        protocol: e.protocol,
        sock_type: e.sock_type,
        address: ip_address(family, &e.addr),
        port: e.port,
        suppressed: e.suppressed,
    }
}

/// The usual name of an IP protocol number.
pub(super) fn protocol_name(protocol: u32) -> String {
    match protocol {
        1 => "icmp".into(),
        2 => "igmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        47 => "gre".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        136 => "udplite".into(),
        255 => "raw".into(),
        other => format!("ip-proto-{other}"),
    }
}

pub(super) fn describe(
    protocol: u32,
    address: Option<IpAddr>,
    port: u16,
    verdict: Verdict,
) -> String {
    format!(
        "packet {} to {} port {port} {}",
        protocol_name(protocol),
        address.map(|a| a.to_string()).unwrap_or_default(),
        verdict.as_str()
    )
}

pub(super) fn judge(body: &EventBody) -> Judgement {
    let EventBody::Packet {
        verdict,
        protocol,
        sock_type,
        address,
        port,
        suppressed,
    } = body
    else {
        return Judgement::default();
    };
    let name = protocol_name(*protocol);
    let destination = match (address, port) {
        (Some(address), 0) => address.to_string(),
        (Some(address), port) => std::net::SocketAddr::new(*address, *port).to_string(),
        (None, _) => "an unknown address".to_string(),
    };
    let message = format!(
        "{name} packet to {destination} {} (not in the allowlist)",
        verdict.as_str()
    );
    let mut alert = record(
        Severity::Warning,
        RuleName::Connect,
        verdict.as_str(),
        message,
    )
    .with("op", "packet")
    .with("protocol", name)
    .with("ip_protocol", *protocol)
    .with("sock_type", *sock_type)
    .with("port", *port)
    .with("suppressed", *suppressed);
    if let Some(address) = address {
        alert = alert.with("address", address.to_string());
    }
    route(*verdict, alert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_ping_names_protocol_and_destination() {
        let j = judge(&EventBody::Packet {
            verdict: Verdict::Blocked,
            protocol: 1,
            sock_type: 2,
            address: Some("192.0.2.7".parse().expect("ip")),
            port: 0,
            suppressed: 3,
        });
        let alert = j.alert.expect("alert");
        assert_eq!(
            alert.message,
            "icmp packet to 192.0.2.7 blocked (not in the allowlist)"
        );
        assert_eq!(alert.details["protocol"], "icmp");
        assert_eq!(alert.details["address"], "192.0.2.7");
        assert_eq!(alert.details["rule"], "connect");
        assert!(j.violation);
    }
}
