//! open / openat / openat2: which path a container process opens, with flags. openat2
//! passes its flags and mode in a `struct open_how` (u64 flags, u64 mode, u64 resolve) in
//! user memory.
use aya_ebpf::{helpers::bpf_probe_read_user, macros::tracepoint, programs::TracePointContext};
use crabpot_common::{EventKind, OpenEvent};

use crate::{
    common::{
        batched_wakeup, count_drop, fill_header, monitored_cgroup, read_user_str, syscall_arg,
    },
    maps::EVENTS,
};

const AT_FDCWD: i32 = -100;

#[tracepoint]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    unsafe {
        let flags: i64 = ctx.read_at(syscall_arg(2)).unwrap_or(0);
        let mode: i64 = ctx.read_at(syscall_arg(3)).unwrap_or(0);
        emit(&ctx, cgroup_id, flags as i32, mode as u32)
    }
}

/// open(path, flags, mode): the legacy call (x86_64 has it, arm64 does not); relative to the
/// cwd like openat with AT_FDCWD.
#[tracepoint]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    unsafe {
        let path: *const u8 = ctx.read_at(syscall_arg(0)).unwrap_or(core::ptr::null());
        let flags: i64 = ctx.read_at(syscall_arg(1)).unwrap_or(0);
        let mode: i64 = ctx.read_at(syscall_arg(2)).unwrap_or(0);
        emit_path(cgroup_id, AT_FDCWD, path, flags as i32, mode as u32)
    }
}

/// openat2(dirfd, path, how, size).
#[tracepoint]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    unsafe {
        let how: *const u64 = ctx.read_at(syscall_arg(2)).unwrap_or(core::ptr::null());
        let (flags, mode) = if how.is_null() {
            (0, 0)
        } else {
            (
                bpf_probe_read_user(how).unwrap_or(0),
                bpf_probe_read_user(how.add(1)).unwrap_or(0),
            )
        };
        emit(&ctx, cgroup_id, flags as i32, mode as u32)
    }
}

/// openat and openat2 have the dirfd and path in their first two arguments.
#[inline(always)]
unsafe fn emit(ctx: &TracePointContext, cgroup_id: u64, flags: i32, mode: u32) -> u32 {
    unsafe {
        let dirfd: i64 = ctx.read_at(syscall_arg(0)).unwrap_or(0);
        let path: *const u8 = ctx.read_at(syscall_arg(1)).unwrap_or(core::ptr::null());
        emit_path(cgroup_id, dirfd as i32, path, flags, mode)
    }
}

#[inline(always)]
unsafe fn emit_path(cgroup_id: u64, dirfd: i32, path: *const u8, flags: i32, mode: u32) -> u32 {
    let Some(mut entry) = EVENTS.reserve::<OpenEvent>(0) else {
        count_drop(EventKind::Open);
        return 0;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        fill_header(
            &raw mut (*event).header,
            EventKind::Open,
            core::mem::size_of::<OpenEvent>(),
            cgroup_id,
        );
        (*event).dirfd = dirfd;
        (*event).flags = flags;
        (*event).mode = mode;
        (*event).path_len = read_user_str(path, &mut (*event).path);
    }
    entry.submit(batched_wakeup());
    0
}
