//! `mount`, `move_mount`, `fsmount` (crabpot-ebpf/src/mount.rs): a mount that completed
//! before its caller was killed is undone.
use crabpot_common::MountEvent;

use crate::{
    model::{
        alert::Severity,
        event::{EventBody, RuleName, Verdict},
    },
    policy::violations::{EntryVerdicts, Judgement, record, route},
    sources::bpf::record::text,
};

pub(super) fn decode(e: &MountEvent) -> EventBody {
    EventBody::Mount {
        source: text(&e.source, e.source_len),
        target: text(&e.target, e.target_len),
        fstype: text(&e.fstype, e.fstype_len),
        flags: e.flags,
        verdict: Verdict::from_raw(e.verdict),
    }
}

pub(super) fn describe(
    source: &str,
    target: &str,
    fstype: &str,
    flags: u64,
    verdict: Verdict,
) -> String {
    format!(
        "mount {source} on {target} type {fstype} flags={flags:#x} {}",
        verdict.as_str()
    )
}

pub(super) fn judge(
    entries: &mut EntryVerdicts,
    tid: u32,
    source: &str,
    target: &str,
    fstype: &str,
    verdict: Verdict,
) -> Judgement {
    entries.remember(tid, RuleName::Mount, verdict);
    let message = format!(
        "mount of {fstype} `{source}` on `{target}` {}",
        verdict.as_str()
    );
    let alert = record(
        Severity::Critical,
        RuleName::Mount,
        verdict.as_str(),
        message,
    )
    .with("source", source)
    .with("target", target)
    .with("fstype", fstype);
    let mut judgement = route(verdict, alert);
    if verdict == Verdict::Killed && !target.is_empty() {
        judgement.undo_mount = Some(target.to_string());
    }
    judgement
}
