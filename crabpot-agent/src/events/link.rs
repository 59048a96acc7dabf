//! `symlink`/`symlinkat` (crabpot-ebpf/src/link.rs): a symbolic link whose target leads into
//! /proc, or to the root above it, is a way to open /proc under a name the open filter lets
//! pass. Its making is raised as a WARNING under the /proc rule.
use crabpot_common::LinkEvent;

use crate::{
    model::{
        alert::Severity,
        event::{EventBody, RuleName, Verdict},
    },
    policy::{
        open_path,
        rules::{Action, Policy},
        sensitive,
        violations::{Judgement, record, route},
    },
    sources::bpf::record::text,
};

const AT_FDCWD: i32 = -100;

pub(super) fn decode(e: &LinkEvent) -> EventBody {
    EventBody::Link {
        dirfd: e.dirfd,
        target: text(&e.target, e.target_len),
        link: text(&e.link, e.link_len),
    }
}

pub(super) fn describe(link: &str, target: &str) -> String {
    format!("symlink {link} -> {target}")
}

/// Where the new link at `link` (relative to `dirfd`) would lead in the container: its
/// target taken from the link's directory, with links already there followed.
pub(super) fn judge(
    caller: (u32, Option<u32>),
    (link, dirfd): (&str, i32),
    target: &str,
    policy: &Policy,
) -> Judgement {
    if policy.action(RuleName::ProcOpen) == Action::Off {
        return Judgement::default();
    }
    let tgid = caller.0;
    // The link exists by now: only its directory is resolved, never the link itself.
    let (dir, name) = match link.trim_end_matches('/').rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => (".", link),
    };
    let dir = open_path::effective(caller, dirfd, dir, None).path;
    let at = format!("{}/{name}", dir.trim_end_matches('/'));
    let spelled = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{dir}/{target}")
    };
    let leads_to = open_path::effective(caller, AT_FDCWD, &spelled, None).path;
    let Some(what) = into_proc(&leads_to) else {
        return Judgement::default();
    };
    let mut message = format!("symbolic link {what}: {at} -> {target}");
    if let Some(why) = sensitive::reason(&leads_to, || sensitive::ns_tgid(tgid)) {
        message.push_str(&format!(" ({why})"));
    }
    route(
        Verdict::Alert,
        record(Severity::Warning, RuleName::ProcOpen, "alert", message)
            .with("rule", "proc_link")
            .with("path", leads_to.as_str())
            .with("link", at.as_str())
            .with("target", target),
    )
}

/// How a link leading to `path` reaches /proc; `None` when it does not.
fn into_proc(path: &str) -> Option<&'static str> {
    if path == "/" {
        Some("to the root (a way into /proc under another name)")
    } else if path == "/proc" || path.starts_with("/proc/") {
        Some("into /proc")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_into_proc_or_to_the_root_are_told_apart() {
        assert!(into_proc("/").is_some());
        assert!(into_proc("/proc").is_some());
        assert!(into_proc("/proc/1/environ").is_some());
        assert!(into_proc("/procfs").is_none());
        assert!(into_proc("/usr/lib/x").is_none());
    }

    #[test]
    fn a_link_made_by_a_gone_process_is_judged_from_its_spelling() {
        // No such process: no cwd, no container root to read; the spelling alone decides.
        let policy = Policy::default();
        let pid = u32::MAX - 7;
        let raised = |link: &str, target: &str| {
            judge((pid, None), (link, AT_FDCWD), target, &policy)
                .alert
                .map(|a| a.message)
        };
        let message = raised("/tmp/e", "/proc/1/environ").expect("raised");
        assert!(
            message.contains("into /proc: /tmp/e -> /proc/1/environ"),
            "{message}"
        );
        assert!(
            raised("/tmp/r", "/")
                .expect("raised")
                .contains("to the root")
        );
        assert!(raised("/tmp/p", "../proc").is_some());
        assert!(raised("/usr/bin/sh", "busybox").is_none());
        assert!(raised("/tmp/x", "/etc/hosts").is_none());
    }
}
