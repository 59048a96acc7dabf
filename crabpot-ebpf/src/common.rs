//! The cgroup filter, header filling and drop accounting used by every program.
use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
    bpf_get_current_uid_gid, bpf_ktime_get_ns,
};
use crabpot_common::{EventHeader, EventKind};

use crate::maps::{DROPPED, EVENTS, MONITORED_CGROUPS, PARENTS};

/// Offsets of the argument slots in a `syscalls/sys_enter_*` record: the common fields take
/// 8 bytes, `__syscall_nr` 8 more, then one 8-byte slot per argument.
pub const fn syscall_arg(index: usize) -> usize {
    16 + index * 8
}

/// The caller's cgroup id when it is one we guard, `None` otherwise. Must be the first thing a
/// program does.
#[inline(always)]
pub fn monitored_cgroup() -> Option<u64> {
    let id = unsafe { bpf_get_current_cgroup_id() };
    if unsafe { MONITORED_CGROUPS.get(id) }.is_some() {
        Some(id)
    } else {
        None
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
