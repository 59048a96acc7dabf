//! A watched syscall that returned EPERM/EACCES (crabpot-ebpf/src/refused.rs): refused by
//! seccomp or capabilities before any entry hook saw it, or the exit of a call an entry
//! hook already judged.
use crabpot_common::RefusedEvent;

use crate::{
    model::{
        alert::Severity,
        event::{EventBody, RuleName, Verdict},
    },
    policy::violations::{EntryVerdicts, Judgement, record, route},
    sources::bpf::record::{DecodeError, rule},
};

pub(super) fn decode(e: &RefusedEvent) -> Result<EventBody, DecodeError> {
    Ok(EventBody::Refused {
        rule: rule(e.rule)?,
        ret: e.ret,
    })
}

pub(super) fn describe(rule: RuleName, ret: i64) -> String {
    format!("{} refused ret={ret}", rule.as_str())
}

pub(super) fn judge(entries: &mut EntryVerdicts, tid: u32, rule: RuleName, ret: i64) -> Judgement {
    if entries.take(tid, rule).is_some() {
        // Seen at entry: that report stands (a block there is already counted).
        return Judgement::default();
    }
    // Refused before any entry hook ran (seccomp): still a violation.
    let message = format!(
        "{} attempt refused by the kernel (errno {}), before any entry hook: seccomp or \
         capabilities",
        rule.as_str(),
        -ret
    );
    route(
        Verdict::Blocked,
        record(Severity::Critical, rule, "refused", message).with("ret", ret),
    )
}
