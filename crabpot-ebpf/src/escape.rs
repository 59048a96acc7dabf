//! Leaving the guarded cgroup. A process of the container with CAP_SYS_ADMIN and a writable
//! cgroup2 view can move itself (or another process) into any cgroup, where the cgroup
//! filter no longer sees it. Processes are therefore tracked by tgid (`TRACKED`, filled at
//! fork and exec), and one found outside the guarded subtree is reported and killed:
//!
//! - at the move itself (`cgroup/cgroup_attach_task`): the caller is killed when it moved
//!   itself or is a tracked process moving another (the agent kills the moved one then);
//! - at any watched syscall it makes later (`common::monitored_cgroup`);
//! - at socket creation, by a `cgroup/sock_create` hook on the cgroup2 root that refuses
//!   tracked processes outside their subtree (sockets made inside stay governed by the
//!   container's hooks: a socket keeps the cgroup it was created in).
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, bpf_send_signal},
    macros::{cgroup_sock, tracepoint},
    programs::{SockContext, TracePointContext},
};
use crabpot_common::{CGROUP_PATH_LEN, EscapeEvent, EventKind, escape_how, verdict};

use crate::{
    common::{URGENT, count_drop, fill_header, guarded_ancestor},
    maps::{ESCAPE_REPORTED, EVENTS, GUARD_PATHS, MONITORED_CGROUPS, TRACKED},
};

const SIGKILL: u32 = 9;
const ALLOW: i32 = 1;
const REFUSE: i32 = 0;

/// `cgroup_attach_task` record layout (stable since 5.6, checked by the agent against the
/// tracepoint's format file before attaching).
const DST_ROOT: usize = 8;
const DST_LEVEL: usize = 12;
const DST_ID: usize = 16;
const PID: usize = 24;
const DST_PATH: usize = 28;

/// Where a process was found outside its subtree.
struct Outside {
    how: u32,
    moved_pid: u32,
    guard: u64,
    dst_id: u64,
    dst_level: i32,
    verdict: u32,
}

/// A tracked process is outside its guarded subtree: report it once, and kill the caller
/// when `kill` (only tracing programs may send signals).
#[inline(always)]
pub fn outside(guard: u64, how: u32, kill: bool) {
    if kill {
        unsafe { bpf_send_signal(SIGKILL) };
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if unsafe { ESCAPE_REPORTED.get(tgid) }.is_some() {
        return;
    }
    let _ = ESCAPE_REPORTED.insert(tgid, 1, 0);
    report(
        &Outside {
            how,
            moved_pid: tgid,
            guard,
            dst_id: 0,
            dst_level: -1,
            verdict: if kill {
                verdict::KILLED
            } else {
                verdict::BLOCKED
            },
        },
        None,
    );
}

#[inline(always)]
fn report(found: &Outside, path: Option<&[u8; CGROUP_PATH_LEN]>) {
    let Some(mut entry) = EVENTS.reserve::<EscapeEvent>(0) else {
        count_drop(EventKind::Escape);
        return;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        fill_header(
            &raw mut (*event).header,
            EventKind::Escape,
            core::mem::size_of::<EscapeEvent>(),
            found.guard,
        );
        (*event).how = found.how;
        (*event).moved_pid = found.moved_pid;
        (*event).guard_id = found.guard;
        (*event).dst_id = found.dst_id;
        (*event).dst_level = found.dst_level;
        (*event).verdict = found.verdict;
        (*event)._pad = 0;
        match path {
            Some(path) => {
                (*event).dst_path = *path;
                let mut len = 0u32;
                while (len as usize) < CGROUP_PATH_LEN && path[len as usize] != 0 {
                    len += 1;
                }
                (*event).path_len = len;
            }
            None => {
                (*event).dst_path = [0; CGROUP_PATH_LEN];
                (*event).path_len = 0;
            }
        }
    }
    entry.submit(URGENT);
}

/// Whether `path` (NUL-terminated) lies in the guarded cgroup `guard`'s subtree: its path
/// is a prefix ending at a `/` or the end. Without the guard's path, only the cgroup itself.
#[inline(always)]
fn inside(guard: u64, dst_id: u64, path: &[u8; CGROUP_PATH_LEN]) -> bool {
    if dst_id == guard {
        return true;
    }
    let Some(guarded) = (unsafe { GUARD_PATHS.get(guard) }) else {
        return false;
    };
    let len = guarded.len as usize;
    if len == 0 || len >= CGROUP_PATH_LEN {
        return false;
    }
    let mut i = 0;
    while i < CGROUP_PATH_LEN {
        if i >= len {
            break;
        }
        if path[i] != guarded.path[i] {
            return false;
        }
        i += 1;
    }
    matches!(path[len & (CGROUP_PATH_LEN - 1)], 0 | b'/')
}

/// A task was moved to another cgroup (after the move). Only cgroup2 moves of tracked
/// processes out of their subtree matter.
#[tracepoint]
pub fn cgroup_attach_task(ctx: TracePointContext) -> u32 {
    let _ = on_attach(&ctx);
    0
}

#[inline(always)]
fn on_attach(ctx: &TracePointContext) -> Option<()> {
    let root: i32 = unsafe { ctx.read_at(DST_ROOT) }.ok()?;
    if root != 0 {
        return None; // a cgroup v1 hierarchy
    }
    let moved: i32 = unsafe { ctx.read_at(PID) }.ok()?;
    let guard = unsafe { TRACKED.get(moved as u32) }.copied()?;
    let dst_id: u64 = unsafe { ctx.read_at(DST_ID) }.ok()?;
    let dst_level: i32 = unsafe { ctx.read_at(DST_LEVEL) }.ok()?;
    let location: u32 = unsafe { ctx.read_at(DST_PATH) }.ok()?;
    let mut path = [0u8; CGROUP_PATH_LEN];
    let start = unsafe { ctx.as_ptr().add((location & 0xffff) as usize) } as *const u8;
    let _ = unsafe { bpf_probe_read_kernel_str_bytes(start, &mut path) };
    if inside(guard, dst_id, &path) {
        return None;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // The mover is the moved process, or a process of the container moving another: kill
    // it now. A move by a host process is left to the agent, which kills the moved one.
    let caller_tracked = unsafe { TRACKED.get(tgid) }.is_some();
    let kill = tgid == moved as u32 || caller_tracked;
    if kill {
        unsafe { bpf_send_signal(SIGKILL) };
    }
    let _ = ESCAPE_REPORTED.insert(moved as u32, 1, 0);
    report(
        &Outside {
            how: escape_how::ATTACH,
            moved_pid: moved as u32,
            guard,
            dst_id,
            dst_level,
            verdict: if tgid == moved as u32 {
                verdict::KILLED
            } else {
                verdict::NONE
            },
        },
        Some(&path),
    );
    Some(())
}

/// On the cgroup2 root (so every cgroup inherits it): a tracked process outside its guarded
/// subtree gets no new IP socket. Everyone else pays one hash lookup.
#[cgroup_sock(sock_create)]
pub fn escape_sock_create(_ctx: SockContext) -> i32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(guard) = (unsafe { TRACKED.get(tgid) }).copied() else {
        return ALLOW;
    };
    if guarded_ancestor().is_some() || unsafe { MONITORED_CGROUPS.get(guard) }.is_none() {
        return ALLOW;
    }
    outside(guard, escape_how::SOCKET, false);
    REFUSE
}

/// A task ends: forget it (a tgid when it is the group leader).
#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    if unsafe { TRACKED.get(tid) }.is_some() {
        let _ = TRACKED.remove(tid);
        let _ = ESCAPE_REPORTED.remove(tid);
    }
    0
}
