//! execve / execveat: the program being run and its first arguments, reported once the
//! kernel has decided whether it runs.
//!
//! A PATH lookup tries several files and only one (or none) runs, so judging every
//! `sys_enter` would alert on files that do not exist. The entry hooks therefore only stash
//! the request per thread; `sched_process_exec` (a successful exec, still before the new
//! program's first instruction, so detection stays instant) sends it with `ret` 0, and the
//! exit hooks send a failed attempt with its negative errno.
//!
//! At `sched_process_exec` the new program has not run an instruction yet. When it runs
//! as a denylisted name (`deny.rs`) the kernel stops it there (SIGSTOP, pending until the
//! return to user space, so it never starts) or, under `--rule exec=block`, kills it; the
//! agent then freezes the container, or continues a false alarm with SIGCONT. The
//! executed file's identity (inode, device, links, name) is read here too, so a fileless
//! program that exits at once is still known.
use aya_ebpf::{
    helpers::{bpf_probe_read_user, bpf_send_signal},
    macros::tracepoint,
    programs::TracePointContext,
};
use crabpot_common::{
    ARGV_COUNT, EXEC_VIA_EXECVE, EXEC_VIA_EXECVEAT, EventKind, ExecEvent, control, exe_flag,
    exec_action,
};

use crate::{
    common::{URGENT, arg, count_drop, fill_header, monitored_cgroup, read_user_str, track},
    deny::{self, ARG_BUF, ARG_BYTES, applet_denied, basename_key, denied, is_multicall, name_key},
    maps::{EVENTS, EXEC_SCRATCH, PENDING_EXECS},
    task,
};

const SIGKILL: u32 = 9;
const SIGSTOP: u32 = 19;

const AT_FDCWD: i32 = -100;
/// `long ret` in a `syscalls/sys_exit_*` record.
const RET_OFFSET: usize = 16;
/// `pid_t old_pid` in a `sched/sched_process_exec` record (layout unchanged since 3.4): the
/// thread that called exec. A non-leader thread takes over the leader's id during exec, so
/// this, not the current id, names the stashed request.
const OLD_PID_OFFSET: usize = 16;

#[tracepoint]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    unsafe {
        let filename: *const u8 = arg(&ctx, 0) as _;
        let argv: *const *const u8 = arg(&ctx, 1) as _;
        stash(cgroup_id, EXEC_VIA_EXECVE, AT_FDCWD, 0, filename, argv);
    }
    0
}

#[tracepoint]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    unsafe {
        let dirfd: i64 = arg(&ctx, 0) as _;
        let filename: *const u8 = arg(&ctx, 1) as _;
        let argv: *const *const u8 = arg(&ctx, 2) as _;
        let flags: i64 = arg(&ctx, 4) as _;
        stash(
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

/// The exec succeeded: send the stashed request of the thread that called it.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let Some(guard) = monitored_cgroup() else {
        return 0;
    };
    // A process `docker exec` started (forked outside, moved in) is tracked from here on.
    track(
        (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32,
        guard,
    );
    let Ok(old_pid) = (unsafe { ctx.read_at::<i32>(OLD_PID_OFFSET) }) else {
        return 0;
    };
    let Some(pending) = PENDING_EXECS.get_ptr_mut(old_pid as u32) else {
        return 0;
    };
    unsafe {
        identify(pending);
        let action = crate::maps::control(control::EXEC_STOP);
        if action != exec_action::NONE && runs_denylisted(&*pending) {
            let signal = if action == exec_action::KILLED {
                SIGKILL
            } else {
                SIGSTOP
            };
            if bpf_send_signal(signal) == 0 {
                (*pending).kernel_action = action;
                (*pending).action_ts_ns = aya_ebpf::helpers::bpf_ktime_get_ns();
            }
        }
    }
    send(old_pid as u32, 0);
    0
}

/// Fill in the executed file as the kernel holds it (`mm->exe_file`).
#[inline(always)]
unsafe fn identify(event: *mut ExecEvent) {
    let name = unsafe { &mut (*event).exe_name };
    let Some(exe) = task::exe(name) else {
        return;
    };
    let mut flags = exe_flag::KNOWN;
    if exe.nlink == 0 {
        flags |= exe_flag::UNLINKED;
    }
    if deny::starts_with(name, b"memfd:") {
        flags |= exe_flag::MEMFD;
    }
    unsafe {
        (*event).exe_ino = exe.ino;
        (*event).exe_dev = exe.dev;
        (*event).exe_nlink = exe.nlink;
        (*event).exe_flags = flags;
    }
}

/// Whether the new program runs as a denylisted name: judged on the executed file's own
/// name and, for a multi-call binary or a file with no name, the argv the program got.
#[inline(always)]
fn runs_denylisted(event: &ExecEvent) -> bool {
    let mut first = [0u8; ARG_BUF];
    let mut second = [0u8; ARG_BUF];
    if event.exe_flags & exe_flag::KNOWN != 0 {
        let exe = name_key(&event.exe_name);
        let nameless = event.exe_flags & (exe_flag::UNLINKED | exe_flag::MEMFD) != 0;
        if !nameless && !is_multicall(&exe) {
            return denied(&exe);
        }
        if let Some((len0, len1)) = task::new_argv(&mut first, &mut second) {
            return applet_denied(&first, len0, &second, len1);
        }
    }
    // Without the kernel's view: the path and argv given to the exec call (a path is
    // judged on its first 64 bytes here).
    copy_prefix(&event.filename, &mut first);
    let len = event.filename_len as usize;
    let base = basename_key(&first, len, false);
    let fileless = len == 0
        || deny::starts_with(&event.filename, b"/dev/fd/")
        || deny::starts_with(&event.filename, b"/proc/self/");
    if !fileless && !is_multicall(&base) {
        return denied(&base);
    }
    copy_prefix(&event.argv[0], &mut first);
    copy_prefix(&event.argv[1], &mut second);
    applet_denied(
        &first,
        event.argv_len[0] as usize,
        &second,
        event.argv_len[1] as usize,
    )
}

/// The first [`ARG_BYTES`] of `src` into `dest`, the rest of `dest` zero.
#[inline(always)]
fn copy_prefix(src: &[u8], dest: &mut [u8; ARG_BUF]) {
    for (i, slot) in dest.iter_mut().enumerate() {
        *slot = if i < ARG_BYTES {
            src.get(i).copied().unwrap_or(0)
        } else {
            0
        };
    }
}

#[tracepoint]
pub fn sys_exit_execve(ctx: TracePointContext) -> u32 {
    on_exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_execveat(ctx: TracePointContext) -> u32 {
    on_exit(&ctx)
}

/// A failed exec returns here with the caller unchanged; a successful one was sent (and
/// its stash removed) by `sched_process_exec` already.
#[inline(always)]
fn on_exit(ctx: &TracePointContext) -> u32 {
    if monitored_cgroup().is_none() {
        return 0;
    }
    let ret: i64 = unsafe { ctx.read_at(RET_OFFSET) }.unwrap_or(0);
    if ret < 0 {
        let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
        send(tid, ret as i32);
    }
    0
}

/// Copy the stash of `tid` to the ring buffer with its outcome, and forget it.
#[inline(always)]
fn send(tid: u32, ret: i32) {
    let Some(pending) = PENDING_EXECS.get_ptr_mut(tid) else {
        return;
    };
    unsafe { (*pending).ret = ret };
    // bpf_ringbuf_output copies in the kernel: the 600-byte record never crosses the
    // 512-byte BPF stack.
    if EVENTS
        .output::<ExecEvent>(unsafe { &*pending }, URGENT)
        .is_err()
    {
        count_drop(EventKind::Exec);
    }
    let _ = PENDING_EXECS.remove(tid);
}

/// Build the record in the per-CPU scratch slot (too big for the stack) and stash it under
/// the calling thread's id.
#[inline(always)]
unsafe fn stash(
    cgroup_id: u64,
    via: u32,
    dirfd: i32,
    flags: u32,
    filename: *const u8,
    argv: *const *const u8,
) {
    let Some(event) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return;
    };
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
        (*event).ret = 0;
        (*event).kernel_action = 0;
        (*event).exe_flags = 0;
        (*event).exe_ino = 0;
        (*event).exe_dev = 0;
        (*event).exe_nlink = 0;
        (*event).exe_name[0] = 0;
        (*event).action_ts_ns = 0;
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
        let tid = (*event).header.pid;
        // By reference: a copy of the record would not fit the BPF stack.
        let record: &ExecEvent = &*event;
        if PENDING_EXECS.insert(tid, record, 0).is_err() {
            count_drop(EventKind::Exec);
        }
    }
}
