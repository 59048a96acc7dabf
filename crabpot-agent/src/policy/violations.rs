//! Judging the kernel's policy events: the alert (or audit record) each deserves, whether
//! it is a violation that costs trust, and what must be undone.
use std::collections::HashMap;

use serde_json::json;

use crate::{
    alert::{Alert, AlertSource, Severity},
    policy::{
        open_path,
        rules::{Action, Policy},
        sensitive,
    },
    sources::{
        bpf::decode::{EventBody, KernelEvent, RuleName, Verdict},
        lineage::Ancestor,
    },
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

#[derive(Debug, Default, PartialEq)]
pub struct Judgement {
    /// Goes through the alert dispatcher.
    pub alert: Option<Alert>,
    /// Goes to the audit log only ("log" actions).
    pub audit: Option<Alert>,
    /// Costs trust.
    pub violation: bool,
    /// A mount that completed before its caller was killed: unmount this target.
    pub undo_mount: Option<String>,
}

#[derive(Default)]
pub struct ViolationJudge {
    /// Entry verdicts of mount/ptrace calls by thread, to pair with their exit.
    entries: HashMap<(u32, RuleName), Verdict>,
}

fn record(severity: Severity, rule: RuleName, verdict: &'static str, message: String) -> Alert {
    let source = match rule {
        RuleName::Connect | RuleName::Socket => AlertSource::Network,
        _ => AlertSource::Syscalls,
    };
    Alert::new(severity, source, message).decision(rule.as_str(), verdict)
}

fn with_process(alert: Alert, event: &KernelEvent, lineage: &[Ancestor]) -> Alert {
    let h = &event.header;
    alert
        .with("pid", h.tgid)
        .with("tid", h.pid)
        .with("comm", h.comm.clone())
        .with("uid", h.uid)
        .with("lineage", json!(lineage))
        .kernel_ts(h.ts_ns)
}

/// "connect to 93.184.216.34:443 (example.com) blocked (not in the allowlist)": the
/// destination as one would type it, and the host name it came from when a DNS reply the
/// container received said so.
pub fn net_message(
    op: &str,
    address: std::net::IpAddr,
    port: u16,
    name: Option<&str>,
    verdict: Verdict,
) -> String {
    let destination = std::net::SocketAddr::new(address, port);
    let name = name.map(|n| format!(" ({n})")).unwrap_or_default();
    format!(
        "{op} to {destination}{name} {} (not in the allowlist)",
        verdict.as_str()
    )
}

/// Route a verdict: "log" goes to the audit log, anything stronger is an alert.
fn route(verdict: Verdict, alert: Alert) -> Judgement {
    match verdict {
        Verdict::None => Judgement::default(),
        Verdict::Log => Judgement {
            audit: Some(alert),
            ..Judgement::default()
        },
        Verdict::Alert | Verdict::Audit => Judgement {
            alert: Some(alert),
            ..Judgement::default()
        },
        Verdict::Blocked | Verdict::Killed => Judgement {
            alert: Some(alert),
            violation: true,
            ..Judgement::default()
        },
    }
}

fn verdict_for_action(action: Action) -> Verdict {
    match action {
        Action::Off => Verdict::None,
        Action::Log => Verdict::Log,
        _ => Verdict::Alert, // opens cannot be stopped by any layer here
    }
}

impl ViolationJudge {
    /// The record each kernel event deserves, one function per event kind.
    pub fn judge(
        &mut self,
        event: &KernelEvent,
        lineage: &[Ancestor],
        policy: &Policy,
    ) -> Judgement {
        let tid = event.header.pid;
        let mut judgement = match &event.body {
            EventBody::Mount { verdict, .. } => self.mount(tid, &event.body, *verdict),
            EventBody::Ptrace {
                request,
                target_pid,
                verdict,
                ..
            } => self.ptrace(tid, *request, *target_pid, *verdict),
            EventBody::NetPolicy { .. } => net_policy(&event.body),
            EventBody::Refused { rule, ret } => self.refused(tid, *rule, *ret),
            EventBody::Open {
                path, flags, dirfd, ..
            } => open(event.header.tgid, path, *flags, *dirfd, policy),
            // Failed attempts (PATH candidates) ran nothing; the kernel rules summarise them.
            EventBody::Exec { ret, .. } if *ret < 0 => Judgement::default(),
            EventBody::Exec { filename, argv, .. } => exec(filename, argv, policy),
            // Learned from by the DNS table before judging; never an alert in itself.
            EventBody::Connect { .. } | EventBody::DnsReply { .. } => Judgement::default(),
        };
        if self.entries.len() > 4096 {
            self.entries.clear();
        }
        judgement.alert = judgement.alert.map(|a| with_process(a, event, lineage));
        judgement.audit = judgement.audit.map(|a| with_process(a, event, lineage));
        judgement
    }

    fn mount(&mut self, tid: u32, body: &EventBody, verdict: Verdict) -> Judgement {
        let EventBody::Mount {
            source,
            target,
            fstype,
            flags,
            attr_flags,
            from_fd,
            to_fd,
            ..
        } = body
        else {
            return Judgement::default();
        };
        self.entries.insert((tid, RuleName::Mount), verdict);
        let call = MountCall {
            source,
            target,
            fstype,
            flags: *flags,
            attr_flags: *attr_flags,
            from_fd: *from_fd,
            to_fd: *to_fd,
        };
        let message = format!("{} {}", call.describe(), verdict.as_str());
        let mut alert = record(
            Severity::Critical,
            RuleName::Mount,
            verdict.as_str(),
            message,
        )
        .with("source", source.as_str())
        .with("target", target.as_str())
        .with("fstype", fstype.as_str())
        .with("flags", *flags);
        if fstype == "fsmount" || fstype == "move_mount" {
            alert = alert
                .with("from_fd", *from_fd)
                .with("to_fd", *to_fd)
                .with("attr_flags", *attr_flags);
        }
        let mut judgement = route(verdict, alert);
        if verdict == Verdict::Killed && !target.is_empty() && call.target_is_a_path() {
            judgement.undo_mount = Some(target.to_string());
        }
        judgement
    }

    fn ptrace(&mut self, tid: u32, request: i64, target_pid: i64, verdict: Verdict) -> Judgement {
        if verdict != Verdict::None {
            self.entries.insert((tid, RuleName::Ptrace), verdict);
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

    fn refused(&mut self, tid: u32, rule: RuleName, ret: i64) -> Judgement {
        match self.entries.remove(&(tid, rule)) {
            // Seen at entry: that report stands (a block there is already counted).
            Some(_) => Judgement::default(),
            // Refused before any entry hook ran (seccomp): still a violation.
            None => {
                let message = format!(
                    "{} attempt refused by the kernel (errno {}), before any entry hook: \
                     seccomp or capabilities",
                    rule.as_str(),
                    -ret
                );
                route(
                    Verdict::Blocked,
                    record(Severity::Critical, rule, "refused", message).with("ret", ret),
                )
            }
        }
    }
}

const AT_FDCWD: i32 = -100;

/// A mount call as the kernel saw it, for its message. The new mount API names descriptors
/// rather than paths (fsmount has no target at all), so those are what is shown.
struct MountCall<'a> {
    source: &'a str,
    target: &'a str,
    fstype: &'a str,
    flags: u64,
    attr_flags: u64,
    from_fd: i32,
    to_fd: i32,
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
    fn describe(&self) -> String {
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

fn net_policy(body: &EventBody) -> Judgement {
    let EventBody::NetPolicy {
        rule,
        verdict,
        op,
        family,
        sock_type,
        address,
        port,
        ..
    } = body
    else {
        return Judgement::default();
    };
    let message = match address {
        Some(address) => net_message(op, *address, *port, None, *verdict),
        None => format!(
            "socket of family {family} type {sock_type} {}",
            verdict.as_str()
        ),
    };
    let mut alert = record(Severity::Warning, *rule, verdict.as_str(), message)
        .with("op", *op)
        .with("family", *family)
        .with("sock_type", *sock_type);
    if let Some(address) = address {
        alert = alert
            .with("address", address.to_string())
            .with("port", *port);
    }
    route(*verdict, alert)
}

/// Opens are judged on the path they name, not the spelling they were given in.
fn open(tgid: u32, requested: &str, flags: i32, dirfd: i32, policy: &Policy) -> Judgement {
    let effective = open_path::effective(tgid, dirfd, requested);
    let path = &effective.path;
    let mut judgement = open_of(tgid, path, flags, policy);
    if path != requested {
        let note = |a: Alert| {
            a.with("requested_path", requested)
                .with("dirfd", dirfd)
                .with("base_unknown", effective.base_unknown)
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

fn exec(filename: &str, argv: &[String], policy: &Policy) -> Judgement {
    let verdict = verdict_for_action(policy.action(RuleName::Exec));
    route(
        verdict,
        record(
            Severity::Info,
            RuleName::Exec,
            verdict.as_str(),
            format!("exec of {filename}"),
        )
        .with("filename", filename)
        .with("argv", json!(argv)),
    )
}

#[cfg(test)]
#[path = "violations_tests.rs"]
mod tests;
