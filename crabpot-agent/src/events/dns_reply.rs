//! A DNS reply delivered to the container (crabpot-ebpf/src/dns.rs): learned from by the
//! DNS table (actions/dns_learn.rs) before judging; never an alert in itself.
use std::net::IpAddr;

use crabpot_common::DnsReplyEvent;

use crate::{
    model::event::EventBody,
    sources::bpf::record::{AF_INET, AF_INET6, LOOPBACK_IFINDEX, ip_address},
};

pub(super) fn decode(e: &DnsReplyEvent) -> EventBody {
    // The kernel never claims more than the array, but the record is untrusted bytes.
    let len = (e.payload_len as usize).min(e.payload.len());
    let family = if e.ip_version == 6 { AF_INET6 } else { AF_INET };
    EventBody::DnsReply {
        resolver: ip_address(family, &e.source),
        via_loopback: e.ingress_ifindex == LOOPBACK_IFINDEX,
        payload: e.payload[..len].to_vec(),
    }
}

pub(super) fn describe(resolver: Option<IpAddr>, payload: &[u8]) -> String {
    match resolver {
        Some(resolver) => format!("dns reply from {resolver} ({} bytes)", payload.len()),
        None => format!("dns reply ({} bytes)", payload.len()),
    }
}
