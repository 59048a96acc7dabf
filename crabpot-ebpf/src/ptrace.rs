//! ptrace: the request and its target. Attach, seize and traceme are the rule's subject; a
//! blocking rule without BPF LSM kills the caller here.
use aya_ebpf::{helpers::bpf_send_signal, macros::tracepoint, programs::TracePointContext};
use crabpot_common::{EventKind, PtraceEvent, rule, verdict};

use crate::{
    common::{URGENT, arg, count_drop, fill_header, monitored_cgroup},
    maps::{EVENTS, entry_verdict},
};

const PTRACE_TRACEME: i64 = 0;
const PTRACE_ATTACH: i64 = 16;
const PTRACE_SEIZE: i64 = 0x4206;
const SIGKILL: u32 = 9;

#[tracepoint]
pub fn sys_enter_ptrace(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    let request: i64 = arg(&ctx, 0) as _;
    let (verdict, kill) = if matches!(request, PTRACE_TRACEME | PTRACE_ATTACH | PTRACE_SEIZE) {
        entry_verdict(rule::PTRACE)
    } else {
        (verdict::NONE, false)
    };
    if kill {
        unsafe { bpf_send_signal(SIGKILL) };
    }
    let Some(mut entry) = EVENTS.reserve::<PtraceEvent>(0) else {
        count_drop(EventKind::Ptrace);
        return 0;
    };
    let event = entry.as_mut_ptr();
    unsafe {
        fill_header(
            &raw mut (*event).header,
            EventKind::Ptrace,
            core::mem::size_of::<PtraceEvent>(),
            cgroup_id,
        );
        (*event).request = request;
        (*event).target_pid = arg(&ctx, 1) as _;
        (*event).addr = arg(&ctx, 2) as _;
        (*event).data = arg(&ctx, 3) as _;
        (*event).verdict = verdict;
        (*event)._pad = 0;
    }
    entry.submit(URGENT);
    0
}
