//! sched_process_fork: remember who forked whom inside the guarded cgroups, so every event
//! header can carry the parent's id even for processes that exit before the agent looks.
//!
//! The record layout of this tracepoint differs between kernels (6.x turned the comms into
//! `__data_loc` fields), so the agent reads the two pid offsets from the tracepoint's `format`
//! file and passes them in as globals.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use crate::{
    common::{monitored_cgroup, track},
    maps::PARENTS,
};

/// Byte offset of `parent_pid` in the record; set by the agent at load time.
#[unsafe(no_mangle)]
static FORK_PARENT_PID_OFFSET: u32 = 12;
/// Byte offset of `child_pid` in the record; set by the agent at load time.
#[unsafe(no_mangle)]
static FORK_CHILD_PID_OFFSET: u32 = 20;

/// Words (4 bytes) of the record read at once; both offsets must fall inside.
const PREFIX_WORDS: usize = 16;

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let Some(guard) = monitored_cgroup() else {
        return 0;
    };
    let Ok(prefix) = (unsafe { ctx.read_at::<[i32; PREFIX_WORDS]>(0) }) else {
        return 0;
    };
    let parent_at = unsafe { core::ptr::read_volatile(&FORK_PARENT_PID_OFFSET) } as usize / 4;
    let child_at = unsafe { core::ptr::read_volatile(&FORK_CHILD_PID_OFFSET) } as usize / 4;
    if parent_at >= PREFIX_WORDS || child_at >= PREFIX_WORDS {
        return 0;
    }
    let parent = prefix[parent_at] as u32;
    let child = prefix[child_at] as u32;
    let _ = PARENTS.insert(child, parent, 0);
    // The child belongs to the container wherever it goes (clone3 CLONE_INTO_CGROUP may
    // start it in another cgroup already). A thread's id is tracked too, harmlessly.
    track(child, guard);
    0
}
