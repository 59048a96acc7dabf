//! `mount`, `move_mount`, `fsmount` (crabpot-ebpf/src/mount.rs): a mount that completed
//! before its caller was killed is undone. The new mount API names descriptors rather than
//! paths (fsmount has no target at all), so those are what is shown.
use crabpot_common::MountEvent;

use crate::{
    model::{
        alert::Severity,
        event::{EventBody, RuleName, Verdict},
    },
    policy::violations::{EntryVerdicts, Judgement, record, route},
    sources::bpf::record::text,
};

const AT_FDCWD: i32 = -100;

pub(super) fn decode(e: &MountEvent) -> EventBody {
    EventBody::Mount {
        source: text(&e.source, e.source_len),
        target: text(&e.target, e.target_len),
        fstype: text(&e.fstype, e.fstype_len),
        flags: e.flags,
        attr_flags: e.attr_flags,
        from_fd: e.from_fd,
        to_fd: e.to_fd,
        verdict: Verdict::from_raw(e.verdict),
    }
}

/// A mount call as the kernel saw it.
pub(super) struct MountCall<'a> {
    pub(super) source: &'a str,
    pub(super) target: &'a str,
    pub(super) fstype: &'a str,
    pub(super) flags: u64,
    pub(super) attr_flags: u64,
    pub(super) from_fd: i32,
    pub(super) to_fd: i32,
    pub(super) verdict: Verdict,
}

/// `path` relative to `fd` as one would read it: "fd 4" (the fd itself), "`x` under fd 4",
/// or "`/x`".
fn at(path: &str, fd: i32) -> String {
    if path.is_empty() {
        format!("fd {fd}")
    } else if path.starts_with('/') || fd == AT_FDCWD {
        format!("`{path}`")
    } else {
        format!("`{path}` under fd {fd}")
    }
}

impl MountCall<'_> {
    fn what(&self) -> String {
        match self.fstype {
            "fsmount" => format!(
                "fsmount of filesystem context fd {} (flags {:#x}, mount attributes {:#x})",
                self.from_fd, self.flags, self.attr_flags
            ),
            "move_mount" => format!(
                "move_mount of {} to {} (flags {:#x})",
                at(self.source, self.from_fd),
                at(self.target, self.to_fd),
                self.flags
            ),
            fstype => format!("mount of {fstype} `{}` on `{}`", self.source, self.target),
        }
    }

    /// Whether the target names a place the agent can find in the container (absolute, or
    /// relative to the working directory as mount(2) takes it).
    fn target_is_a_path(&self) -> bool {
        self.target.starts_with('/') || self.to_fd == AT_FDCWD
    }
}

pub(super) fn describe(m: &MountCall<'_>) -> String {
    format!(
        "mount {} on {} type {} flags={:#x} from_fd={} to_fd={} {}",
        m.source,
        m.target,
        m.fstype,
        m.flags,
        m.from_fd,
        m.to_fd,
        m.verdict.as_str()
    )
}

pub(super) fn judge(entries: &mut EntryVerdicts, tid: u32, m: &MountCall<'_>) -> Judgement {
    entries.remember(tid, RuleName::Mount, m.verdict);
    let message = format!("{} {}", m.what(), m.verdict.as_str());
    let mut alert = record(
        Severity::Critical,
        RuleName::Mount,
        m.verdict.as_str(),
        message,
    )
    .with("source", m.source)
    .with("target", m.target)
    .with("fstype", m.fstype)
    .with("flags", m.flags);
    if m.fstype == "fsmount" || m.fstype == "move_mount" {
        alert = alert
            .with("from_fd", m.from_fd)
            .with("to_fd", m.to_fd)
            .with("attr_flags", m.attr_flags);
    }
    let mut judgement = route(m.verdict, alert);
    if m.verdict == Verdict::Killed && !m.target.is_empty() && m.target_is_a_path() {
        judgement.undo_mount = Some(m.target.to_string());
    }
    judgement
}
