//! A cgroup hook's decision on a connect, UDP send or socket creation
//! (crabpot-ebpf/src/net_policy.rs): the allowlist and the socket rule, enforced in the
//! kernel.
use std::net::IpAddr;

use crabpot_common::{NetPolicyEvent, net_op};

use crate::{
    model::{
        alert::Severity,
        event::{EventBody, RuleName, Verdict},
    },
    policy::violations::{Judgement, net_message, record, route},
    sources::bpf::record::{AF_INET6, DecodeError, ip_address, rule},
};

pub(super) fn decode(e: &NetPolicyEvent) -> Result<EventBody, DecodeError> {
    let family = if matches!(e.op, net_op::CONNECT6 | net_op::SENDMSG6) {
        AF_INET6
    } else {
        e.family as u16
    };
    Ok(EventBody::NetPolicy {
        rule: rule(e.rule)?,
        verdict: Verdict::from_raw(e.verdict),
        op: match e.op {
            net_op::CONNECT4 | net_op::CONNECT6 => "connect",
            net_op::SENDMSG4 | net_op::SENDMSG6 => "sendmsg",
            _ => "socket",
        },
        family: e.family,
        sock_type: e.sock_type,
        protocol: e.protocol,
        address: (e.op != net_op::SOCK_CREATE)
            .then(|| ip_address(family, &e.addr))
            .flatten(),
        port: e.port,
    })
}

/// What a [`EventBody::NetPolicy`] says, for the judge and the printer.
pub(super) struct NetPolicy<'a> {
    pub(super) rule: RuleName,
    pub(super) verdict: Verdict,
    pub(super) op: &'a str,
    pub(super) family: u32,
    pub(super) sock_type: u32,
    pub(super) address: Option<IpAddr>,
    pub(super) port: u16,
}

pub(super) fn describe(n: &NetPolicy<'_>) -> String {
    let (rule, verdict, op) = (n.rule.as_str(), n.verdict.as_str(), n.op);
    match n.address {
        Some(address) => format!("{rule} {op} {address} port {} {verdict}", n.port),
        None => format!("{rule} {op} family={} {verdict}", n.family),
    }
}

pub(super) fn judge(n: &NetPolicy<'_>) -> Judgement {
    let message = match n.address {
        Some(address) => net_message(n.op, address, n.port, None, n.verdict),
        None => format!(
            "socket of family {} type {} {}",
            n.family,
            n.sock_type,
            n.verdict.as_str()
        ),
    };
    let mut alert = record(Severity::Warning, n.rule, n.verdict.as_str(), message)
        .with("op", n.op)
        .with("family", n.family)
        .with("sock_type", n.sock_type);
    if let Some(address) = n.address {
        alert = alert
            .with("address", address.to_string())
            .with("port", n.port);
    }
    route(n.verdict, alert)
}
