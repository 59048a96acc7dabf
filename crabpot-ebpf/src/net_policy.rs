//! The connect allowlist and the socket-family rule, enforced by cgroup hooks attached to
//! the container's cgroup2 directory: only its processes pay, and connects issued through
//! io_uring pass here too. Return 1 to allow, 0 to refuse (the caller gets EPERM).
use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_send_signal},
    macros::{cgroup_sock, cgroup_sock_addr, tracepoint},
    maps::lpm_trie::Key,
    programs::{SockAddrContext, SockContext, TracePointContext},
};
use crabpot_common::{EventKind, NetPolicyEvent, mode, net_op, rule, verdict};

use crate::{
    common::{URGENT, arg, count_drop, fill_header, monitored_cgroup},
    maps::{ALLOW_V4, ALLOW_V6, EVENTS, entry_verdict, rule_mode},
};

const SIGKILL: u32 = 9;

const AF_UNIX: u32 = 1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const AF_NETLINK: u32 = 16;
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;

const ALLOW: i32 = 1;
const REFUSE: i32 = 0;

struct Attempt {
    rule: u32,
    op: u32,
    family: u32,
    sock_type: u32,
    protocol: u32,
    port: u16,
    addr: [u8; 16],
}

/// Report a rule match according to its mode and say whether the call may proceed.
#[inline(always)]
fn judge(attempt: &Attempt) -> i32 {
    let (result, verdict) = match rule_mode(attempt.rule) {
        mode::OFF => return ALLOW,
        mode::LOG => (ALLOW, verdict::LOG),
        mode::ALERT => (ALLOW, verdict::ALERT),
        mode::AUDIT => (ALLOW, verdict::AUDIT),
        _ => (REFUSE, verdict::BLOCKED),
    };
    report(attempt, verdict);
    result
}

#[inline(always)]
fn report(attempt: &Attempt, verdict: u32) {
    let Some(mut entry) = EVENTS.reserve::<NetPolicyEvent>(0) else {
        count_drop(EventKind::NetPolicy);
        return;
    };
    let event = entry.as_mut_ptr();
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    unsafe {
        fill_header(
            &raw mut (*event).header,
            EventKind::NetPolicy,
            core::mem::size_of::<NetPolicyEvent>(),
            cgroup_id,
        );
        (*event).rule = attempt.rule;
        (*event).verdict = verdict;
        (*event).op = attempt.op;
        (*event).family = attempt.family;
        (*event).sock_type = attempt.sock_type;
        (*event).protocol = attempt.protocol;
        (*event).port = attempt.port;
        (*event)._pad = 0;
        (*event)._pad2 = 0;
        (*event).addr = attempt.addr;
    }
    entry.submit(URGENT);
}

/// Whether the allowlist (or loopback) covers `ip` on `port`; shared with the egress hook.
#[inline(always)]
pub(crate) fn v4_allowed(ip: [u8; 4], port: u16) -> bool {
    if ip[0] == 127 {
        return true; // loopback is always allowed
    }
    let p = port.to_be_bytes();
    let key = Key::new(48, [ip[0], ip[1], ip[2], ip[3], p[0], p[1]]);
    ALLOW_V4.get(key).is_some()
}

#[inline(always)]
fn check_v4(ctx: &SockAddrContext, op: u32) -> i32 {
    let sa = ctx.sock_addr;
    let (ip, raw_port, sock_type, protocol) =
        unsafe { ((*sa).user_ip4, (*sa).user_port, (*sa).type_, (*sa).protocol) };
    let ip = ip.to_ne_bytes();
    let port = u16::from_be(raw_port as u16);
    if v4_allowed(ip, port) {
        return ALLOW;
    }
    let mut addr = [0u8; 16];
    addr[0] = ip[0];
    addr[1] = ip[1];
    addr[2] = ip[2];
    addr[3] = ip[3];
    judge(&Attempt {
        rule: rule::CONNECT,
        op,
        family: AF_INET,
        sock_type,
        protocol,
        port,
        addr,
    })
}

#[inline(always)]
fn check_v6(ctx: &SockAddrContext, op: u32) -> i32 {
    let sa = ctx.sock_addr;
    // The context allows only 4-byte loads of user_ip6.
    let words = unsafe {
        [
            (*sa).user_ip6[0],
            (*sa).user_ip6[1],
            (*sa).user_ip6[2],
            (*sa).user_ip6[3],
        ]
    };
    let (raw_port, sock_type, protocol) = unsafe { ((*sa).user_port, (*sa).type_, (*sa).protocol) };
    let port = u16::from_be(raw_port as u16);
    let mut addr = [0u8; 16];
    for (i, word) in words.iter().enumerate() {
        let bytes = word.to_ne_bytes();
        addr[i * 4] = bytes[0];
        addr[i * 4 + 1] = bytes[1];
        addr[i * 4 + 2] = bytes[2];
        addr[i * 4 + 3] = bytes[3];
    }
    if v6_allowed(&addr, port) {
        return ALLOW;
    }
    judge(&Attempt {
        rule: rule::CONNECT,
        op,
        family: AF_INET6,
        sock_type,
        protocol,
        port,
        addr,
    })
}

/// Whether the allowlist (or loopback, or the IPv4 allowlist for a mapped address) covers
/// the IPv6 `addr` on `port`; shared with the egress hook.
#[inline(always)]
pub(crate) fn v6_allowed(addr: &[u8; 16], port: u16) -> bool {
    let zero_64 = addr[..8] == [0; 8];
    if zero_64 && addr[8..12] == [0, 0, 0xff, 0xff] {
        return v4_allowed([addr[12], addr[13], addr[14], addr[15]], port);
    }
    if zero_64 && addr[8..15] == [0; 7] && addr[15] == 1 {
        return true; // ::1
    }
    let p = port.to_be_bytes();
    let mut data = [0u8; 18];
    data[..16].copy_from_slice(addr);
    data[16] = p[0];
    data[17] = p[1];
    ALLOW_V6.get(Key::new(144, data)).is_some()
}

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    check_v4(&ctx, net_op::CONNECT4)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    check_v6(&ctx, net_op::CONNECT6)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    check_v4(&ctx, net_op::SENDMSG4)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    check_v6(&ctx, net_op::SENDMSG6)
}

/// Families the cgroup `sock_create` hook never sees (it runs for IP sockets only): packet
/// sockets and every family but unix, netlink and IP. Without a hook that can refuse them,
/// a blocking rule kills the caller here.
#[tracepoint]
pub fn sys_enter_socket(ctx: TracePointContext) -> u32 {
    if monitored_cgroup().is_none() {
        return 0;
    }
    let family: i64 = arg(&ctx, 0) as _;
    let family = family as u32;
    if matches!(family, AF_UNIX | AF_NETLINK | AF_INET | AF_INET6) {
        return 0;
    }
    let sock_type: i64 = arg(&ctx, 1) as _;
    let protocol: i64 = arg(&ctx, 2) as _;
    let (verdict, kill) = entry_verdict(rule::SOCKET);
    if verdict == verdict::NONE {
        return 0;
    }
    if kill {
        unsafe { bpf_send_signal(SIGKILL) };
    }
    report(
        &Attempt {
            rule: rule::SOCKET,
            op: net_op::SOCK_CREATE,
            family,
            sock_type: (sock_type as u32) & 0xf, // without SOCK_CLOEXEC/SOCK_NONBLOCK
            protocol: protocol as u32,
            port: 0,
            addr: [0; 16],
        },
        verdict,
    );
    0
}

/// IP sockets that reach past the connect allowlist: raw sockets (stream and datagram IP
/// sockets are governed by the connect rule).
#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    let (family, sock_type, protocol) =
        unsafe { ((*ctx.sock).family, (*ctx.sock).type_, (*ctx.sock).protocol) };
    let local = match family {
        AF_UNIX | AF_NETLINK => true,
        AF_INET | AF_INET6 => sock_type == SOCK_STREAM || sock_type == SOCK_DGRAM,
        _ => false,
    };
    if local {
        return ALLOW;
    }
    judge(&Attempt {
        rule: rule::SOCKET,
        op: net_op::SOCK_CREATE,
        family,
        sock_type,
        protocol,
        port: 0,
        addr: [0; 16],
    })
}
