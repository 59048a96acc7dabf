//! Exit hooks: a mount or ptrace that returns EPERM/EACCES was refused before (or without)
//! our entry hooks — a seccomp profile refuses it before any sys_enter tracepoint runs. It is
//! still a violation, so it is reported.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use crabpot_common::{EventKind, RefusedEvent, rule};

use crate::{
    common::{URGENT, count_drop, fill_header, monitored_cgroup},
    maps::EVENTS,
};

const EPERM: i64 = 1;
const EACCES: i64 = 13;
/// `long ret` in a `syscalls/sys_exit_*` record.
const RET_OFFSET: usize = 16;

#[inline(always)]
fn on_exit(ctx: &TracePointContext, rule: u32) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    let ret: i64 = unsafe { ctx.read_at(RET_OFFSET) }.unwrap_or(0);
    if ret != -EPERM && ret != -EACCES {
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<RefusedEvent>(0) else {
        count_drop(EventKind::Refused);
        return 0;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        fill_header(
            &raw mut (*event).header,
            EventKind::Refused,
            core::mem::size_of::<RefusedEvent>(),
            cgroup_id,
        );
        (*event).rule = rule;
        (*event)._pad = 0;
        (*event).ret = ret;
    }
    entry.submit(URGENT);
    0
}

#[tracepoint]
pub fn sys_exit_mount(ctx: TracePointContext) -> u32 {
    on_exit(&ctx, rule::MOUNT)
}

#[tracepoint]
pub fn sys_exit_ptrace(ctx: TracePointContext) -> u32 {
    on_exit(&ctx, rule::PTRACE)
}
