//! connect: the destination family, address and port. A connect the allowlist covers
//! (loopback, allowlisted) is not news: it waits for the agent's next drain like an open;
//! any other destination wakes the agent at once.
use aya_ebpf::{helpers::bpf_probe_read_user, macros::tracepoint, programs::TracePointContext};
use crabpot_common::{ConnectEvent, EventKind};

use crate::{
    common::{URGENT, arg, batched_wakeup, count_drop, fill_header, monitored_cgroup},
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
    let Some(mut entry) = EVENTS.reserve::<ConnectEvent>(0) else {
        count_drop(EventKind::Connect);
        return 0;
    };
    let event = entry.as_mut_ptr();
    let allowed = unsafe {
        let fd: i64 = arg(&ctx, 0) as _;
        let sockaddr: *const u8 = arg(&ctx, 1) as _;
        let addrlen: i64 = arg(&ctx, 2) as _;
        fill_header(
            &raw mut (*event).header,
            EventKind::Connect,
            core::mem::size_of::<ConnectEvent>(),
            cgroup_id,
        );
        (*event).fd = fd as i32;
        (*event).addrlen = addrlen as u32;
        (*event)._pad = 0;
        (*event).addr = [0; 16];
        (*event).port = 0;
        let family: u16 = if sockaddr.is_null() {
            0
        } else {
            bpf_probe_read_user(sockaddr as *const u16).unwrap_or(0)
        };
        (*event).family = family;
        if family == AF_INET || family == AF_INET6 {
            let port: u16 = bpf_probe_read_user(sockaddr.add(2) as *const u16).unwrap_or(0);
            (*event).port = u16::from_be(port);
        }
        if family == AF_INET {
            let v4: [u8; 4] =
                bpf_probe_read_user(sockaddr.add(4) as *const [u8; 4]).unwrap_or([0; 4]);
            (*event).addr = [
                v4[0], v4[1], v4[2], v4[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ];
        } else if family == AF_INET6 {
            (*event).addr =
                bpf_probe_read_user(sockaddr.add(8) as *const [u8; 16]).unwrap_or([0; 16]);
        }
        match family {
            AF_INET => {
                let a = (*event).addr;
                v4_allowed([a[0], a[1], a[2], a[3]], (*event).port)
            }
            AF_INET6 => v6_allowed(&(*event).addr, (*event).port),
            // Unix sockets and other families are no destination the policy judges.
            _ => true,
        }
    };
    entry.submit(if allowed { batched_wakeup() } else { URGENT });
    0
}
