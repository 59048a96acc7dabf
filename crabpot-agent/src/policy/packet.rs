//! A packet to a destination outside the allowlist, seen at the container's cgroup egress:
//! ICMP through a ping socket, a raw IP socket, any protocol the connect and sendmsg hooks
//! do not see. Judged like a connect (the same rule and allowlist).
use crate::{
    alert::Severity,
    policy::violations::{Judgement, record, route},
    sources::bpf::decode::{EventBody, RuleName, protocol_name},
};

pub(crate) fn judge(body: &EventBody) -> Judgement {
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
    use crate::sources::bpf::decode::Verdict;

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
