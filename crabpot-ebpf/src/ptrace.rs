//! ptrace: the request and its target.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use crabpot_common::{EventKind, PtraceEvent};

use crate::{
    common::{count_drop, fill_header, monitored_cgroup, syscall_arg},
    maps::EVENTS,
};

#[tracepoint]
pub fn sys_enter_ptrace(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    let Some(mut entry) = EVENTS.reserve::<PtraceEvent>(0) else {
        count_drop(EventKind::Ptrace);
        return 0;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        fill_header(
            &raw mut (*event).header,
            EventKind::Ptrace,
            core::mem::size_of::<PtraceEvent>(),
            cgroup_id,
        );
        (*event).request = ctx.read_at(syscall_arg(0)).unwrap_or(-1);
        (*event).target_pid = ctx.read_at(syscall_arg(1)).unwrap_or(0);
        (*event).addr = ctx.read_at(syscall_arg(2)).unwrap_or(0);
        (*event).data = ctx.read_at(syscall_arg(3)).unwrap_or(0);
    }
    entry.submit(0);
    0
}
