//! mount: source, target, filesystem type and flags.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use crabpot_common::{EventKind, MountEvent};

use crate::{
    common::{count_drop, fill_header, monitored_cgroup, read_user_str, syscall_arg},
    maps::EVENTS,
};

#[tracepoint]
pub fn sys_enter_mount(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    let Some(mut entry) = EVENTS.reserve::<MountEvent>(0) else {
        count_drop(EventKind::Mount);
        return 0;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        let source: *const u8 = ctx.read_at(syscall_arg(0)).unwrap_or(core::ptr::null());
        let target: *const u8 = ctx.read_at(syscall_arg(1)).unwrap_or(core::ptr::null());
        let fstype: *const u8 = ctx.read_at(syscall_arg(2)).unwrap_or(core::ptr::null());
        let flags: u64 = ctx.read_at(syscall_arg(3)).unwrap_or(0);
        fill_header(
            &raw mut (*event).header,
            EventKind::Mount,
            core::mem::size_of::<MountEvent>(),
            cgroup_id,
        );
        (*event).flags = flags;
        (*event)._pad = 0;
        (*event).source_len = read_user_str(source, &mut (*event).source);
        (*event).target_len = read_user_str(target, &mut (*event).target);
        (*event).fstype_len = read_user_str(fstype, &mut (*event).fstype);
    }
    entry.submit(0);
    0
}
