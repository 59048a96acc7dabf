//! `ptrace` (crabpot-ebpf/src/ptrace.rs): attaching to another process.
use crabpot_common::PtraceEvent;

use crate::{
    model::{
        alert::Severity,
        event::{EventBody, RuleName, Verdict},
    },
    policy::violations::{EntryVerdicts, Judgement, record, route},
};

pub(super) fn decode(e: &PtraceEvent) -> EventBody {
    EventBody::Ptrace {
        request: e.request,
        target_pid: e.target_pid,
        addr: e.addr,
        data: e.data,
        verdict: Verdict::from_raw(e.verdict),
    }
}

pub(super) fn describe(request: i64, target_pid: i64, verdict: Verdict) -> String {
    format!(
        "ptrace request={request} target={target_pid} {}",
        verdict.as_str()
    )
}

pub(super) fn judge(
    entries: &mut EntryVerdicts,
    tid: u32,
    request: i64,
    target_pid: i64,
    verdict: Verdict,
) -> Judgement {
    if verdict != Verdict::None {
        entries.remember(tid, RuleName::Ptrace, verdict);
    }
    let message = format!(
        "ptrace request {request} on pid {target_pid} {}",
        verdict.as_str()
    );
    let alert = record(
        Severity::Critical,
        RuleName::Ptrace,
        verdict.as_str(),
        message,
    )
    .with("request", request)
    .with("target_pid", target_pid);
    route(verdict, alert)
}
