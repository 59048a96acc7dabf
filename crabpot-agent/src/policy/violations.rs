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

fn record(severity: Severity, rule: RuleName, verdict: &str, message: String) -> Alert {
    let source = match rule {
        RuleName::Connect | RuleName::Socket => AlertSource::Network,
        _ => AlertSource::Syscalls,
    };
    Alert::new(severity, source, message)
        .with("rule", rule.as_str())
        .with("verdict", verdict)
}

fn with_process(alert: Alert, event: &KernelEvent, lineage: &[Ancestor]) -> Alert {
    let h = &event.header;
    alert
        .with("pid", h.tgid)
        .with("tid", h.pid)
        .with("comm", h.comm.clone())
        .with("uid", h.uid)
        .with("lineage", json!(lineage))
        .with("kernel_ts_ns", h.ts_ns)
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
    pub fn judge(
        &mut self,
        event: &KernelEvent,
        lineage: &[Ancestor],
        policy: &Policy,
    ) -> Judgement {
        let tid = event.header.pid;
        let mut judgement = match &event.body {
            EventBody::Mount {
                source,
                target,
                fstype,
                verdict,
                ..
            } => {
                self.entries.insert((tid, RuleName::Mount), *verdict);
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
                .with("source", source.clone())
                .with("target", target.clone())
                .with("fstype", fstype.clone());
                let mut judgement = route(*verdict, alert);
                if *verdict == Verdict::Killed && !target.is_empty() {
                    judgement.undo_mount = Some(target.clone());
                }
                judgement
            }
            EventBody::Ptrace {
                request,
                target_pid,
                verdict,
                ..
            } => {
                if *verdict != Verdict::None {
                    self.entries.insert((tid, RuleName::Ptrace), *verdict);
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
                .with("request", *request)
                .with("target_pid", *target_pid);
                route(*verdict, alert)
            }
            EventBody::NetPolicy {
                rule,
                verdict,
                op,
                family,
                sock_type,
                address,
                port,
                ..
            } => {
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
            EventBody::Refused { rule, ret } => {
                match self.entries.remove(&(tid, *rule)) {
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
                            record(Severity::Critical, *rule, "refused", message).with("ret", *ret),
                        )
                    }
                }
            }
            EventBody::Open {
                path: requested,
                flags,
                dirfd,
                ..
            } => {
                // Judge the path the open names, not the spelling it was given in.
                let effective = open_path::effective(event.header.tgid, *dirfd, requested);
                let path = &effective.path;
                let device = policy.watch_devices
                    && DEVICE_PREFIXES
                        .iter()
                        .any(|prefix| path.starts_with(prefix));
                let mut judgement = if device {
                    let message = format!("device or display opened: {path}");
                    route(
                        Verdict::Alert,
                        record(Severity::Warning, RuleName::ProcOpen, "alert", message)
                            .with("rule", "device_open")
                            .with("path", path.clone()),
                    )
                } else if let Some(why) = (policy.action(RuleName::ProcOpen) != Action::Off)
                    .then(|| sensitive::reason(path, || sensitive::ns_tgid(event.header.tgid)))
                    .flatten()
                {
                    // A warning, not a violation: nothing refused it, but someone should look.
                    route(
                        Verdict::Alert,
                        record(Severity::Warning, RuleName::ProcOpen, "alert", why)
                            .with("rule", "sensitive_read")
                            .with("path", path.clone())
                            .with("flags", *flags),
                    )
                } else if path.starts_with("/proc/") {
                    let verdict = verdict_for_action(policy.action(RuleName::ProcOpen));
                    let message = format!("open of {path}");
                    route(
                        verdict,
                        record(
                            Severity::Info,
                            RuleName::ProcOpen,
                            verdict.as_str(),
                            message,
                        )
                        .with("path", path.clone())
                        .with("flags", *flags),
                    )
                } else {
                    Judgement::default()
                };
                if path != requested {
                    let note = |a: Alert| {
                        a.with("requested_path", requested.clone())
                            .with("dirfd", *dirfd)
                            .with("base_unknown", effective.base_unknown)
                    };
                    judgement.alert = judgement.alert.map(note);
                    judgement.audit = judgement.audit.map(note);
                }
                judgement
            }
            // Failed attempts (PATH candidates) ran nothing; the kernel rules summarise them.
            EventBody::Exec { ret, .. } if *ret < 0 => Judgement::default(),
            EventBody::Exec { filename, argv, .. } => {
                let verdict = verdict_for_action(policy.action(RuleName::Exec));
                let message = format!("exec of {filename}");
                route(
                    verdict,
                    record(Severity::Info, RuleName::Exec, verdict.as_str(), message)
                        .with("filename", filename.clone())
                        .with("argv", json!(argv)),
                )
            }
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
}

#[cfg(test)]
#[path = "violations_tests.rs"]
mod tests;
