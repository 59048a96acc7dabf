//! `connect` seen at the tracepoint (crabpot-ebpf/src/connect.rs): the destination, before
//! any cgroup hook decided. With the connect rule off this is the network auditor's instant
//! path; otherwise the cgroup hook's decision (net_policy.rs) reports it.
use crabpot_common::ConnectEvent;

use crate::{
    model::event::{Ancestor, EventBody, KernelEvent},
    policy::{kernel_rules::KernelRules, rules::Policy, violations::Judgement},
    sources::bpf::record::ip_address,
};

pub(super) fn decode(e: &ConnectEvent) -> EventBody {
    EventBody::Connect {
        fd: e.fd,
        family: e.family,
        address: ip_address(e.family, &e.addr),
        port: e.port,
    }
}

pub(super) fn describe(family: u16, address: Option<std::net::IpAddr>, port: u16) -> String {
    match address {
        Some(address) => format!("connect {address} port {port}"),
        None => format!("connect family={family}"),
    }
}

pub(super) fn judge(
    rules: &mut KernelRules,
    event: &KernelEvent,
    lineage: &[Ancestor],
    policy: &Policy,
) -> Judgement {
    Judgement {
        watchdog: rules.connect_alert(event, lineage, policy),
        ..Judgement::default()
    }
}
