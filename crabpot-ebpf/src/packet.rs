//! Every packet that leaves the container, whatever socket sent it: a `cgroup_skb/egress`
//! program on the container's cgroup (children inherit it) checks the destination against
//! the connect allowlist. The connect and sendmsg hooks judge TCP and UDP sockets when they
//! pick a destination (their later packets, replies to inbound connections included, pass
//! here untouched so established flows keep working); everything else is judged per packet:
//! ICMP through ping sockets, raw IP sockets, SCTP, other protocols. Loopback (the device,
//! so the container's own addresses too, and the 127/8 and ::1 destinations) always passes.
//! A refused destination is reported at most once a second (with the count in between).
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_sk_fullsock, bpf_skb_cgroup_id},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use crabpot_common::{EventKind, PacketEvent, mode, rule, verdict};

use crate::{
    common::count_drop,
    maps::{EVENTS, PACKET_REPORTS, RateSlot, rule_mode},
    net_policy::{v4_allowed, v6_allowed},
};

const PASS: i32 = 1;
const DROP: i32 = 0;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
const IPPROTO_ICMPV6: u32 = 58;
const IPPROTO_SCTP: u32 = 132;
const IPPROTO_UDPLITE: u32 = 136;
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const IPV6_HEADER: usize = 40;
const REPORT_EVERY_NS: u64 = 1_000_000_000;
const LOOPBACK_IFINDEX: u32 = 1;

struct Packet {
    version: u32,
    protocol: u32,
    port: u16,
    addr: [u8; 16],
}

/// Protocols with a destination port in the two bytes after the source port.
#[inline(always)]
fn has_ports(protocol: u32) -> bool {
    matches!(
        protocol,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP
    )
}

#[inline(always)]
fn parse(ctx: &SkBuffContext) -> Option<Packet> {
    let first: u8 = ctx.load(0).ok()?;
    let mut addr = [0u8; 16];
    match first >> 4 {
        4 => {
            let protocol = u32::from(ctx.load::<u8>(9).ok()?);
            let fragment = u16::from_be(ctx.load::<u16>(6).ok()?);
            let v4: [u8; 4] = ctx.load(16).ok()?;
            addr[..4].copy_from_slice(&v4);
            // Later fragments carry no port: they pass only where the address does on any.
            let port = if fragment & 0x1fff == 0 && has_ports(protocol) {
                let at = usize::from(first & 0x0f) * 4 + 2;
                u16::from_be(ctx.load::<u16>(at).ok()?)
            } else {
                0
            };
            Some(Packet {
                version: 4,
                protocol,
                port,
                addr,
            })
        }
        6 => {
            let protocol = u32::from(ctx.load::<u8>(6).ok()?);
            addr = ctx.load(24).ok()?;
            let port = if has_ports(protocol) {
                u16::from_be(ctx.load::<u16>(IPV6_HEADER + 2).ok()?)
            } else {
                0
            };
            Some(Packet {
                version: 6,
                protocol,
                port,
                addr,
            })
        }
        _ => None,
    }
}

/// The sending socket's type, and whether the connect/sendmsg hooks already judge its
/// destinations (TCP and UDP sockets).
#[inline(always)]
fn sending_socket(ctx: &SkBuffContext) -> (u32, bool) {
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return (0, false);
    }
    let full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return (0, false);
    }
    let (sock_type, protocol) = unsafe { ((*full).type_, (*full).protocol) };
    let judged = (sock_type == SOCK_STREAM && protocol == IPPROTO_TCP)
        || (sock_type == SOCK_DGRAM && (protocol == IPPROTO_UDP || protocol == IPPROTO_UDPLITE));
    (sock_type, judged)
}

#[inline(always)]
fn allowed(packet: &Packet) -> bool {
    if packet.version == 4 {
        return v4_allowed(
            [
                packet.addr[0],
                packet.addr[1],
                packet.addr[2],
                packet.addr[3],
            ],
            packet.port,
        );
    }
    // Neighbour discovery and MLD stay on the link: ICMPv6 to link-local or
    // link-scope multicast addresses.
    let link_local = (packet.addr[0] == 0xfe && packet.addr[1] & 0xc0 == 0x80)
        || (packet.addr[0] == 0xff && packet.addr[1] & 0x0f == 0x02);
    (packet.protocol == IPPROTO_ICMPV6 && link_local) || v6_allowed(&packet.addr, packet.port)
}

#[cgroup_skb(egress)]
pub fn packet_egress(ctx: SkBuffContext) -> i32 {
    let (sock_type, judged) = sending_socket(&ctx);
    if judged {
        return PASS;
    }
    // Out through the loopback device (index 1 in every network namespace): delivered
    // inside the container, to 127/8, ::1 or one of its own addresses; nothing leaves.
    if unsafe { (*ctx.skb.skb).ifindex } == LOOPBACK_IFINDEX {
        return PASS;
    }
    let Some(packet) = parse(&ctx) else {
        return PASS; // not IP: the cgroup hook only sees IP
    };
    if allowed(&packet) {
        return PASS;
    }
    let (result, verdict) = match rule_mode(rule::CONNECT) {
        mode::OFF => return PASS,
        mode::LOG => (PASS, verdict::LOG),
        mode::ALERT => (PASS, verdict::ALERT),
        mode::AUDIT => (PASS, verdict::AUDIT),
        _ => (DROP, verdict::BLOCKED),
    };
    if let Some(suppressed) = due(&packet) {
        report(&ctx, &packet, sock_type, verdict, suppressed);
    }
    result
}

/// `Some(packets not reported since)` when this destination may be reported now.
#[inline(always)]
fn due(packet: &Packet) -> Option<u32> {
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(&packet.addr);
    key[16] = packet.version as u8;
    key[17] = packet.protocol as u8;
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(slot) = PACKET_REPORTS.get_ptr_mut(key) {
        unsafe {
            if now.wrapping_sub((*slot).last_ns) < REPORT_EVERY_NS {
                (*slot).suppressed = (*slot).suppressed.saturating_add(1);
                return None;
            }
            let suppressed = (*slot).suppressed;
            (*slot).last_ns = now;
            (*slot).suppressed = 0;
            return Some(suppressed);
        }
    }
    let slot = RateSlot {
        last_ns: now,
        suppressed: 0,
        _pad: 0,
    };
    let _ = PACKET_REPORTS.insert(key, slot, 0);
    Some(0)
}

#[inline(always)]
fn report(ctx: &SkBuffContext, packet: &Packet, sock_type: u32, verdict: u32, suppressed: u32) {
    let Some(mut entry) = EVENTS.reserve::<PacketEvent>(0) else {
        count_drop(EventKind::Packet);
        return;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        let header = &raw mut (*event).header;
        // Possibly softirq context (a retransmission): no task fields, the socket's cgroup.
        (*header).kind = EventKind::Packet as u32;
        (*header).size = core::mem::size_of::<PacketEvent>() as u32;
        (*header).ts_ns = bpf_ktime_get_ns();
        (*header).pid = 0;
        (*header).tgid = 0;
        (*header).ppid = 0;
        (*header).uid = 0;
        (*header).cgroup_id = bpf_skb_cgroup_id(ctx.skb.skb);
        (*header).comm = [0; 16];
        (*event).verdict = verdict;
        (*event).ip_version = packet.version;
        (*event).protocol = packet.protocol;
        (*event).sock_type = sock_type;
        (*event).port = packet.port;
        (*event)._pad = 0;
        (*event).suppressed = suppressed;
        (*event).addr = packet.addr;
    }
    entry.submit(crate::common::URGENT);
}
