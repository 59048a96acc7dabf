//! openat: which path a container process opens, with flags.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use crabpot_common::{EventKind, OpenEvent};

use crate::{
    common::{
        batched_wakeup, count_drop, fill_header, monitored_cgroup, read_user_str, syscall_arg,
    },
    maps::EVENTS,
};

#[tracepoint]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    let Some(mut entry) = EVENTS.reserve::<OpenEvent>(0) else {
        count_drop(EventKind::Open);
        return 0;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        let dirfd: i64 = ctx.read_at(syscall_arg(0)).unwrap_or(0);
        let path: *const u8 = ctx.read_at(syscall_arg(1)).unwrap_or(core::ptr::null());
        let flags: i64 = ctx.read_at(syscall_arg(2)).unwrap_or(0);
        let mode: i64 = ctx.read_at(syscall_arg(3)).unwrap_or(0);
        fill_header(
            &raw mut (*event).header,
            EventKind::Open,
            core::mem::size_of::<OpenEvent>(),
            cgroup_id,
        );
        (*event).dirfd = dirfd as i32;
        (*event).flags = flags as i32;
        (*event).mode = mode as u32;
        (*event).path_len = read_user_str(path, &mut (*event).path);
    }
    entry.submit(batched_wakeup());
    0
}
