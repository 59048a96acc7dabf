//! connect: the destination family, address and port. A connect the allowlist covers
//! (loopback, allowlisted) is not news: it is only counted (`FILTERED`), unless `--events`
//! asks for every connect, and then waits for the agent's next drain like an open; any other
//! destination is sent and wakes the agent at once.
use aya_ebpf::{helpers::bpf_probe_read_user, macros::tracepoint, programs::TracePointContext};
use crabpot_common::{ConnectEvent, EventKind, control, filtered};

use crate::{
    common::{
        URGENT, arg, batched_wakeup, count_drop, count_filtered, fill_header, monitored_cgroup,
    },
    maps::EVENTS,
    net_policy::{v4_allowed, v6_allowed},
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[tracepoint]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    let sockaddr: *const u8 = arg(&ctx, 1) as _;
    let family: u16 = if sockaddr.is_null() {
        0
    } else {
        unsafe { bpf_probe_read_user(sockaddr as *const u16) }.unwrap_or(0)
    };
    let (addr, port) = unsafe { destination(sockaddr, family) };
    let allowed = match family {
        AF_INET => v4_allowed([addr[0], addr[1], addr[2], addr[3]], port),
        AF_INET6 => v6_allowed(&addr, port),
        // Unix sockets and other families are no destination the policy judges.
        _ => true,
    };
    if allowed && crate::maps::control(control::CONNECT_FILTER) == 1 {
        count_filtered(filtered::CONNECT);
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<ConnectEvent>(0) else {
        count_drop(EventKind::Connect);
        return 0;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        fill_header(
            &raw mut (*event).header,
            EventKind::Connect,
            core::mem::size_of::<ConnectEvent>(),
            cgroup_id,
        );
        (*event).fd = arg(&ctx, 0) as i32;
        (*event).addrlen = arg(&ctx, 2) as u32;
        (*event)._pad = 0;
        (*event).family = family;
        (*event).addr = addr;
        (*event).port = port;
    }
    entry.submit(if allowed { batched_wakeup() } else { URGENT });
    0
}

/// The IPv4 (in the first 4 bytes) or IPv6 address and the port of `sockaddr`.
///
/// # Safety
/// `sockaddr` is a user pointer; the helper handles faults.
#[inline(always)]
unsafe fn destination(sockaddr: *const u8, family: u16) -> ([u8; 16], u16) {
    let mut addr = [0u8; 16];
    if family != AF_INET && family != AF_INET6 {
        return (addr, 0);
    }
    let port: u16 = unsafe { bpf_probe_read_user(sockaddr.add(2) as *const u16) }.unwrap_or(0);
    if family == AF_INET {
        let v4: [u8; 4] =
            unsafe { bpf_probe_read_user(sockaddr.add(4) as *const [u8; 4]) }.unwrap_or([0; 4]);
        addr[..4].copy_from_slice(&v4);
    } else {
        addr =
            unsafe { bpf_probe_read_user(sockaddr.add(8) as *const [u8; 16]) }.unwrap_or([0; 16]);
    }
    (addr, u16::from_be(port))
}
