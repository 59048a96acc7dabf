//! execve / execveat: the program being run and its first arguments.
use aya_ebpf::{helpers::bpf_probe_read_user, macros::tracepoint, programs::TracePointContext};
use crabpot_common::{ARGV_COUNT, EXEC_VIA_EXECVE, EXEC_VIA_EXECVEAT, EventKind, ExecEvent};

use crate::{
    common::{URGENT, count_drop, fill_header, monitored_cgroup, read_user_str, syscall_arg},
    maps::EVENTS,
};

const AT_FDCWD: i32 = -100;

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    unsafe {
        let filename: *const u8 = ctx.read_at(syscall_arg(0)).unwrap_or(core::ptr::null());
        let argv: *const *const u8 = ctx.read_at(syscall_arg(1)).unwrap_or(core::ptr::null());
        emit(cgroup_id, EXEC_VIA_EXECVE, AT_FDCWD, 0, filename, argv);
    }
    0
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    unsafe {
        let dirfd: i64 = ctx.read_at(syscall_arg(0)).unwrap_or(0);
        let filename: *const u8 = ctx.read_at(syscall_arg(1)).unwrap_or(core::ptr::null());
        let argv: *const *const u8 = ctx.read_at(syscall_arg(2)).unwrap_or(core::ptr::null());
        let flags: i64 = ctx.read_at(syscall_arg(4)).unwrap_or(0);
        emit(
            cgroup_id,
            EXEC_VIA_EXECVEAT,
            dirfd as i32,
            flags as u32,
            filename,
            argv,
        );
    }
    0
}

#[inline(always)]
unsafe fn emit(
    cgroup_id: u64,
    via: u32,
    dirfd: i32,
    flags: u32,
    filename: *const u8,
    argv: *const *const u8,
) {
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count_drop(EventKind::Exec);
        return;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        fill_header(
            &raw mut (*event).header,
            EventKind::Exec,
            core::mem::size_of::<ExecEvent>(),
            cgroup_id,
        );
        (*event).via = via;
        (*event).dirfd = dirfd;
        (*event).flags = flags;
        (*event)._pad = 0;
        (*event).filename_len = read_user_str(filename, &mut (*event).filename);
        let mut argc = 0u32;
        for i in 0..ARGV_COUNT {
            (*event).argv_len[i] = 0;
            if argv.is_null() {
                continue;
            }
            let arg: *const u8 = bpf_probe_read_user(argv.add(i)).unwrap_or(core::ptr::null());
            if arg.is_null() {
                break;
            }
            (*event).argv_len[i] = read_user_str(arg, &mut (*event).argv[i]);
            argc += 1;
        }
        (*event).argc = argc;
    }
    entry.submit(URGENT);
}
