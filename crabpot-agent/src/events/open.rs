//! `openat`/`openat2` (crabpot-ebpf/src/open.rs): /proc reads, sensitive files, devices.
use crabpot_common::{OpenEvent, open_base};

use crate::{
    model::{
        alert::{Alert, Severity},
        event::{EventBody, RuleName, Verdict},
    },
    policy::{
        open_path,
        rules::{Action, Policy},
        sensitive,
        violations::{Judgement, record, route, verdict_for_action},
    },
    sources::bpf::record::text,
};

/// Device and display paths the moltbot profile watches.
const DEVICE_PREFIXES: &[&str] = &[
    "/dev/input/",
    "/dev/snd/",
    "/dev/video",
    "/dev/dri/",
    "/dev/fb",
    "/tmp/.X11-unix/",
];

pub(super) fn decode(e: &OpenEvent) -> EventBody {
    EventBody::Open {
        dirfd: e.dirfd,
        flags: e.flags,
        mode: e.mode,
        path: text(&e.path, e.path_len),
        base: base_dir(e),
    }
}

/// The base directory of a relative open, when the kernel read it in procfs: `/proc`, then
/// the names it gave innermost first, reversed.
fn base_dir(e: &OpenEvent) -> Option<String> {
    let known = open_base::PROC | open_base::KNOWN;
    if e.base_flags & known != known {
        return None;
    }
    let depth = (e.base_depth as usize).min(e.base.len());
    let mut path = String::from("/proc");
    for name in e.base[..depth].iter().rev() {
        let name = text(name, name.len() as u32);
        // A name is one component; anything else is not a path the kernel gave.
        if name.is_empty() || name.contains('/') || name == ".." {
            return None;
        }
        path.push('/');
        path.push_str(&name);
    }
    Some(path)
}

pub(super) fn describe(path: &str, flags: i32) -> String {
    format!("openat {path} flags={flags:#x}")
}

/// Opens are judged on the path they name, not the spelling they were given in.
pub(super) fn judge(
    caller: (u32, Option<u32>),
    requested: &str,
    (flags, dirfd): (i32, i32),
    kernel_base: Option<&str>,
    policy: &Policy,
) -> Judgement {
    let tgid = caller.0;
    let effective = open_path::effective(caller, dirfd, requested, kernel_base);
    let path = &effective.path;
    let mut judgement = open_of(tgid, path, flags, policy);
    if path != requested {
        let note = |a: Alert| {
            a.with("requested_path", requested)
                .with("dirfd", dirfd)
                .with("base_unknown", effective.base_unknown)
                .with("base_from_kernel", kernel_base.is_some())
        };
        judgement.alert = judgement.alert.map(note);
        judgement.audit = judgement.audit.map(note);
    }
    judgement
}

fn open_of(tgid: u32, path: &str, flags: i32, policy: &Policy) -> Judgement {
    let device = policy.watch_devices
        && DEVICE_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix));
    if device {
        let message = format!("device or display opened: {path}");
        return route(
            Verdict::Alert,
            record(Severity::Warning, RuleName::ProcOpen, "alert", message)
                .with("rule", "device_open")
                .with("path", path),
        );
    }
    let watching = policy.action(RuleName::ProcOpen) != Action::Off;
    if let Some(why) = watching
        .then(|| sensitive::reason(path, || sensitive::ns_tgid(tgid)))
        .flatten()
    {
        // A warning, not a violation: nothing refused it, but someone should look.
        return route(
            Verdict::Alert,
            record(Severity::Warning, RuleName::ProcOpen, "alert", why)
                .with("rule", "sensitive_read")
                .with("path", path)
                .with("flags", flags),
        );
    }
    if !path.starts_with("/proc/") {
        return Judgement::default();
    }
    let verdict = verdict_for_action(policy.action(RuleName::ProcOpen));
    route(
        verdict,
        record(
            Severity::Info,
            RuleName::ProcOpen,
            verdict.as_str(),
            format!("open of {path}"),
        )
        .with("path", path)
        .with("flags", flags),
    )
}
