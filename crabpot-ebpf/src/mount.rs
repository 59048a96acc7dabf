//! mount and the new mount API (move_mount, fsmount): source, target, filesystem type and
//! flags. A blocking rule without BPF LSM kills the caller here.
use aya_ebpf::{helpers::bpf_send_signal, macros::tracepoint, programs::TracePointContext};
use crabpot_common::{EventKind, MountEvent, rule};

use crate::{
    common::{URGENT, arg, count_drop, fill_header, monitored_cgroup, read_user_str},
    maps::{EVENTS, entry_verdict},
};

const SIGKILL: u32 = 9;

/// Strings of one mount call: (source, target, fstype) as user pointers, or a literal
/// fstype for the new API calls.
struct MountCall {
    source: *const u8,
    target: *const u8,
    fstype: *const u8,
    fstype_literal: &'static [u8],
    flags: u64,
    attr_flags: u64,
    from_fd: i32,
    to_fd: i32,
}

#[inline(always)]
fn emit(call: MountCall) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    let (verdict, kill) = entry_verdict(rule::MOUNT);
    if kill {
        unsafe { bpf_send_signal(SIGKILL) };
    }
    let Some(mut entry) = EVENTS.reserve::<MountEvent>(0) else {
        count_drop(EventKind::Mount);
        return 0;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        fill_header(
            &raw mut (*event).header,
            EventKind::Mount,
            core::mem::size_of::<MountEvent>(),
            cgroup_id,
        );
        (*event).flags = call.flags;
        (*event).attr_flags = call.attr_flags;
        (*event).from_fd = call.from_fd;
        (*event).to_fd = call.to_fd;
        (*event).verdict = verdict;
        (*event).source_len = read_user_str(call.source, &mut (*event).source);
        (*event).target_len = read_user_str(call.target, &mut (*event).target);
        if call.fstype_literal.is_empty() {
            (*event).fstype_len = read_user_str(call.fstype, &mut (*event).fstype);
        } else {
            let fstype = &mut (*event).fstype;
            let mut n = 0;
            for (slot, byte) in fstype.iter_mut().zip(call.fstype_literal) {
                *slot = *byte;
                n += 1;
            }
            (*event).fstype_len = n;
        }
    }
    entry.submit(URGENT);
    0
}

fn arg_ptr(ctx: &TracePointContext, index: usize) -> *const u8 {
    arg(ctx, index) as _
}

/// A descriptor argument (an `int` in a 64-bit syscall slot).
fn arg_fd(ctx: &TracePointContext, index: usize) -> i32 {
    arg(ctx, index) as i32
}

const AT_FDCWD: i32 = -100;

#[tracepoint]
pub fn sys_enter_mount(ctx: TracePointContext) -> u32 {
    emit(MountCall {
        source: arg_ptr(&ctx, 0),
        target: arg_ptr(&ctx, 1),
        fstype: arg_ptr(&ctx, 2),
        fstype_literal: b"",
        flags: arg(&ctx, 3) as _,
        attr_flags: 0,
        from_fd: AT_FDCWD,
        to_fd: AT_FDCWD,
    })
}

/// move_mount(from_dfd, from_path, to_dfd, to_path, flags): attaches a detached mount.
#[tracepoint]
pub fn sys_enter_move_mount(ctx: TracePointContext) -> u32 {
    emit(MountCall {
        source: arg_ptr(&ctx, 1),
        target: arg_ptr(&ctx, 3),
        fstype: core::ptr::null(),
        fstype_literal: b"move_mount",
        flags: arg(&ctx, 4) as _,
        attr_flags: 0,
        from_fd: arg_fd(&ctx, 0),
        to_fd: arg_fd(&ctx, 2),
    })
}

/// fsmount(fs_fd, flags, attr_flags): turns a configured filesystem context into a mount.
#[tracepoint]
pub fn sys_enter_fsmount(ctx: TracePointContext) -> u32 {
    emit(MountCall {
        source: core::ptr::null(),
        target: core::ptr::null(),
        fstype: core::ptr::null(),
        fstype_literal: b"fsmount",
        flags: arg(&ctx, 1) as _,
        attr_flags: arg(&ctx, 2) as _,
        from_fd: arg_fd(&ctx, 0),
        to_fd: -1,
    })
}
