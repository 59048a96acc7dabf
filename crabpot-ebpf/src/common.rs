//! The cgroup filter, header filling and drop accounting used by every program.
use aya_ebpf::helpers::{
    bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
    bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns,
};
use aya_ebpf::{EbpfContext as _, programs::TracePointContext};
use crabpot_common::{EventHeader, EventKind};

use crate::maps::{
    DROPPED, EVENTS, GUARD_EPOCH, GUARD_LEVELS, GUARD_MEMO, MONITORED_CGROUPS, PARENTS, TRACKED,
};

/// Deepest cgroup2 level a guarded cgroup may sit at (Docker: 1-4).
const MAX_GUARD_LEVEL: u32 = 16;

/// Offsets of the argument slots in a `syscalls/sys_enter_*` record: the common fields take
/// 8 bytes, `__syscall_nr` 8 more, then one 8-byte slot per argument.
pub const fn syscall_arg(index: usize) -> usize {
    16 + index * 8
}

/// Argument `index` of a `syscalls/sys_enter_*` record, loaded straight from the context
/// (aligned and past the first 8 bytes, which the verifier allows for tracepoints).
/// `read_at` goes through `bpf_probe_read_kernel`: a helper call per argument that cost
/// ~40 ns each on every open in the container.
#[inline(always)]
pub fn arg(ctx: &TracePointContext, index: usize) -> u64 {
    let at = unsafe { (ctx.as_ptr() as *const u8).add(syscall_arg(index)) };
    unsafe { core::ptr::read_volatile(at as *const u64) }
}

/// The guarded cgroup the caller is in, itself or as a descendant (a child cgroup the
/// container made), `None` otherwise.
#[inline(always)]
pub fn guarded_ancestor() -> Option<u64> {
    let found = guarded_ancestor_of(unsafe { bpf_get_current_cgroup_id() });
    (found != 0).then_some(found)
}

/// The guarded cgroup `id` (the caller's) is or descends from; 0 for none. A plain integer,
/// not an `Option`: LLVM may leave an `Option`'s payload register unset on the `None` path
/// and copy it anyway, which the verifier refuses (`!read_ok`).
#[inline(always)]
fn guarded_ancestor_of(id: u64) -> u64 {
    if unsafe { MONITORED_CGROUPS.get(id) }.is_some() {
        return id;
    }
    let levels = GUARD_LEVELS.get(0).copied().unwrap_or(0);
    if levels == 0 {
        return 0;
    }
    let mut level = 1;
    while level < MAX_GUARD_LEVEL {
        if levels & (1u64 << level) != 0 {
            let ancestor = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
            if ancestor != 0 && unsafe { MONITORED_CGROUPS.get(ancestor) }.is_some() {
                return ancestor;
            }
        }
        level += 1;
    }
    0
}

/// The guarded cgroup the caller belongs to, `None` otherwise. Must be the first thing a
/// program does. A process of the container found outside the guarded subtree (it moved
/// itself or was moved to another cgroup) still belongs to it: it is reported and killed here.
///
/// For tracepoint programs only: they run with preemption off and never nest on a CPU, so
/// the per-CPU memo is never seen half-written. Programs that may be preempted (LSM, cgroup
/// socket hooks) use [`monitored_cgroup_unmemoized`].
#[inline(always)]
pub fn monitored_cgroup() -> Option<u64> {
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // Read before judging: a change made meanwhile bumps the epoch past what is stored.
    let epoch = guard_epoch();
    let memo = GUARD_MEMO.get_ptr_mut(0);
    if let Some(memo) = memo {
        let memo = unsafe { &*memo };
        if memo.cgroup == cgroup && memo.tgid == tgid && memo.epoch == epoch {
            return (memo.guard != 0).then_some(memo.guard);
        }
    }
    let found = guarded_ancestor_of(cgroup);
    if found == 0 {
        // Not memoized: the report and kill of a process outside its subtree run each time.
        if let Some(guard) = tracked_outside(tgid) {
            return Some(guard);
        }
    }
    if let Some(memo) = memo {
        let memo = unsafe { &mut *memo };
        memo.cgroup = cgroup;
        memo.tgid = tgid;
        memo.epoch = epoch;
        memo.guard = found;
    }
    (found != 0).then_some(found)
}

/// [`monitored_cgroup`] without the per-CPU memo.
#[inline(always)]
pub fn monitored_cgroup_unmemoized() -> Option<u64> {
    if let Some(id) = guarded_ancestor() {
        return Some(id);
    }
    tracked_outside((bpf_get_current_pid_tgid() >> 32) as u32)
}

/// The guard of process `tgid` when it is tracked although outside every guarded subtree
/// (it was moved out): reported and killed here.
#[inline(always)]
fn tracked_outside(tgid: u32) -> Option<u64> {
    let guard = unsafe { TRACKED.get(tgid) }.copied()?;
    crate::escape::outside(guard, crabpot_common::escape_how::SYSCALL, true);
    Some(guard)
}

/// The sum of the agent's and the kernel's guard epochs.
#[inline(always)]
fn guard_epoch() -> u64 {
    let agent = GUARD_EPOCH.get(0).copied().unwrap_or(0);
    let kernel = GUARD_EPOCH.get(1).copied().unwrap_or(0);
    agent.wrapping_add(kernel)
}

/// Remember the caller's process as one of guarded cgroup `guard`.
#[inline(always)]
pub fn track(tgid: u32, guard: u64) {
    if unsafe { TRACKED.get(tgid) }.copied() != Some(guard) {
        let _ = TRACKED.insert(tgid, guard, 0);
        // A memo may say this tgid is outside every guard (a reused pid): no longer true.
        if let Some(epoch) = GUARD_EPOCH.get_ptr_mut(1) {
            // An atomic add (BPF_ATOMIC): CPUs tracking processes at once lose no bump.
            // `core`'s atomic types lack RMW methods on this target; the intrinsic has them.
            unsafe {
                core::intrinsics::atomic_xadd::<
                    u64,
                    u64,
                    { core::intrinsics::AtomicOrdering::Relaxed },
                >(epoch, 1)
            };
        }
    }
}

/// Fill the common header of a reserved record.
///
/// # Safety
/// `header` must point into a live ring-buffer reservation.
#[inline(always)]
pub unsafe fn fill_header(header: *mut EventHeader, kind: EventKind, size: usize, cgroup_id: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let ppid = unsafe { PARENTS.get(tgid) }.copied().unwrap_or(0);
    let comm = bpf_get_current_comm().unwrap_or([0; 16]);
    unsafe {
        (*header).kind = kind as u32;
        (*header).size = size as u32;
        (*header).ts_ns = bpf_ktime_get_ns();
        (*header).pid = pid_tgid as u32;
        (*header).tgid = tgid;
        (*header).ppid = ppid;
        (*header).uid = bpf_get_current_uid_gid() as u32;
        (*header).cgroup_id = cgroup_id;
        (*header).comm = comm;
    }
}

/// Count a record the kernel kept out of the ring buffer (`crabpot_common::filtered`).
#[inline(always)]
pub fn count_filtered(index: u32) {
    if let Some(counter) = crate::maps::FILTERED.get_ptr_mut(index) {
        unsafe { *counter += 1 };
    }
}

/// Count a record that could not be reserved.
#[inline(always)]
pub fn count_drop(kind: EventKind) {
    if let Some(counter) = DROPPED.get_ptr_mut(kind as u32) {
        unsafe { *counter += 1 };
    }
}

/// Read a NUL-terminated user string into `dest`; the length without the NUL, 0 on failure.
///
/// # Safety
/// `src` is a user pointer; the helper handles faults.
#[inline(always)]
pub unsafe fn read_user_str(src: *const u8, dest: &mut [u8]) -> u32 {
    if src.is_null() {
        return 0;
    }
    match unsafe { aya_ebpf::helpers::bpf_probe_read_user_str_bytes(src, dest) } {
        Ok(bytes) => bytes.len() as u32,
        Err(_) => 0,
    }
}

/// Submit flags for security-relevant records (exec, connect, mount, ptrace, decisions):
/// wake the agent now, even when earlier batched records are still unread.
pub const URGENT: u64 = aya_ebpf::bindings::BPF_RB_FORCE_WAKEUP as u64;

/// Most unread bytes that batched records may leave before one of them wakes the agent.
const BATCH_WAKEUP_BYTES: u64 = 64 * 1024;

/// Submit flags for records that may wait for the agent's next drain (opens, the flood
/// kind): no wake-up per record — the agent drains on its own every few milliseconds — but
/// a forced one once a quarter of the ring (at most 64 KiB) is waiting.
#[inline(always)]
pub fn batched_wakeup() -> u64 {
    use aya_ebpf::bindings::{
        BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE,
    };
    let waiting = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let threshold = (EVENTS.query(BPF_RB_RING_SIZE as u64) / 4).min(BATCH_WAKEUP_BYTES);
    if waiting >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}
