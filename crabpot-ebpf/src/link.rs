//! symlink / symlinkat: a new symbolic link and what it points to. A link into /proc (or to
//! the root above it) lets a later open reach /proc under an innocent name that the open
//! filter lets pass (`ln -s /proc/1/environ /tmp/e; cat /tmp/e`). Links are rare, so every
//! one made in the container is sent, and the agent judges where its target leads.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use crabpot_common::{EventKind, LinkEvent};

use crate::{
    common::{arg, batched_wakeup, count_drop, fill_header, monitored_cgroup, read_user_str},
    maps::EVENTS,
};

const AT_FDCWD: i32 = -100;

/// symlinkat(target, newdirfd, linkpath).
#[tracepoint]
pub fn sys_enter_symlinkat(ctx: TracePointContext) -> u32 {
    emit(
        arg(&ctx, 0) as *const u8,
        arg(&ctx, 1) as i32,
        arg(&ctx, 2) as *const u8,
    )
}

/// symlink(target, linkpath): relative to the cwd (x86_64 has it, arm64 does not).
#[tracepoint]
pub fn sys_enter_symlink(ctx: TracePointContext) -> u32 {
    emit(
        arg(&ctx, 0) as *const u8,
        AT_FDCWD,
        arg(&ctx, 1) as *const u8,
    )
}

#[inline(always)]
fn emit(target: *const u8, dirfd: i32, link: *const u8) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    // Two paths exceed the BPF stack: the record is built in the ring buffer itself.
    let Some(mut entry) = EVENTS.reserve::<LinkEvent>(0) else {
        count_drop(EventKind::Link);
        return 0;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        fill_header(
            &raw mut (*event).header,
            EventKind::Link,
            core::mem::size_of::<LinkEvent>(),
            cgroup_id,
        );
        (*event).target_len = read_user_str(target, &mut (*event).target);
        (*event).link_len = read_user_str(link, &mut (*event).link);
        (*event).dirfd = dirfd;
        (*event)._pad = 0;
    }
    entry.submit(batched_wakeup());
    0
}
