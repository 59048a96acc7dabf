//! DNS replies delivered to the guarded container, copied for the agent so it can learn
//! which addresses the allowlisted host names stand for (and name the others in alerts).
//!
//! A `cgroup_skb/ingress` program on the container's cgroup: it sees each packet as it is
//! delivered to a socket of the container, from the IP header on. It never drops anything
//! (returns 1) — it is an observer; the connect hooks do the enforcing.
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use crabpot_common::{DNS_PAYLOAD_LEN, DnsReplyEvent, EventKind};

use crate::{
    common::{URGENT, count_drop},
    maps::EVENTS,
};

const PASS: i32 = 1;
const IPPROTO_UDP: u8 = 17;
const DNS_PORT: u16 = 53;
const UDP_HEADER: u32 = 8;
/// A DNS message is at least its 12-byte header.
const DNS_HEADER: u32 = 12;
const IPV6_HEADER: u32 = 40;

/// Where the UDP header starts and the resolver's address, for a UDP packet; `None` for
/// anything else (other protocols, IPv4 fragments past the first, IPv6 extension headers).
#[inline(always)]
fn udp_offset(ctx: &SkBuffContext) -> Option<(u32, u32, [u8; 16])> {
    let first: u8 = ctx.load(0).ok()?;
    let mut source = [0u8; 16];
    match first >> 4 {
        4 => {
            let protocol: u8 = ctx.load(9).ok()?;
            let fragment: u16 = ctx.load(6).ok()?;
            // Only the first fragment carries the UDP header (offset bits are 0).
            if protocol != IPPROTO_UDP || u16::from_be(fragment) & 0x1fff != 0 {
                return None;
            }
            let v4: [u8; 4] = ctx.load(12).ok()?;
            source[..4].copy_from_slice(&v4);
            Some((4, u32::from(first & 0x0f) * 4, source))
        }
        6 => {
            let next: u8 = ctx.load(6).ok()?;
            if next != IPPROTO_UDP {
                return None;
            }
            source = ctx.load(8).ok()?;
            Some((6, IPV6_HEADER, source))
        }
        _ => None,
    }
}

#[cgroup_skb(ingress)]
pub fn dns_ingress(ctx: SkBuffContext) -> i32 {
    let _ = copy_reply(&ctx);
    PASS
}

#[inline(always)]
fn copy_reply(ctx: &SkBuffContext) -> Option<()> {
    let (ip_version, udp, source) = udp_offset(ctx)?;
    let source_port: u16 = ctx.load(udp as usize).ok()?;
    if u16::from_be(source_port) != DNS_PORT {
        return None;
    }
    let start = udp + UDP_HEADER;
    let available = ctx.len().checked_sub(start)?;
    if available < DNS_HEADER {
        return None;
    }
    let len = if available > DNS_PAYLOAD_LEN as u32 {
        DNS_PAYLOAD_LEN as u32
    } else {
        available
    };
    // The compiler's min loses the lower bound on its way to the verifier, which refuses a
    // possibly empty read: this identity on [1, 512] is one it can follow.
    let len = ((len - 1) & (DNS_PAYLOAD_LEN as u32 - 1)) + 1;
    let Some(mut entry) = EVENTS.reserve::<DnsReplyEvent>(0) else {
        count_drop(EventKind::DnsReply);
        return None;
    };
    let event = entry.as_mut_ptr();
    let loaded = unsafe {
        let header = &raw mut (*event).header;
        // Softirq context: no task of the container is current, so the task fields stay 0.
        (*header).kind = EventKind::DnsReply as u32;
        (*header).size = core::mem::size_of::<DnsReplyEvent>() as u32;
        (*header).ts_ns = bpf_ktime_get_ns();
        (*header).pid = 0;
        (*header).tgid = 0;
        (*header).ppid = 0;
        (*header).uid = 0;
        (*header).cgroup_id = 0;
        (*header).comm = [0; 16];
        (*event).ip_version = ip_version;
        (*event).payload_len = len;
        (*event).ingress_ifindex = (*ctx.skb.skb).ingress_ifindex;
        (*event)._pad = 0;
        (*event).source = source;
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            start,
            (&raw mut (*event).payload) as *mut _,
            len,
        )
    };
    if loaded != 0 {
        entry.discard(0);
        return None;
    }
    // The application connects as soon as it reads this reply: wake the agent now so the
    // answered addresses reach the allowlist first.
    entry.submit(URGENT);
    Some(())
}
