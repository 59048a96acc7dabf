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
        bpf::decode::{EventBody, KernelAction, KernelEvent, RuleName, Verdict},
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
            EventBody::Mount {
                source,
                target,
                fstype,
                verdict,
                ..
            } => self.mount(tid, source, target, fstype, *verdict),
            EventBody::Ptrace {
                request,
                target_pid,
                verdict,
                ..
            } => self.ptrace(tid, *request, *target_pid, *verdict),
            EventBody::NetPolicy { .. } => net_policy(&event.body),
            EventBody::Refused { rule, ret } => self.refused(tid, *rule, *ret),
            EventBody::Open {
                path,
                flags,
                dirfd,
                base,
                ..
            } => open(
                event.header.tgid,
                path,
                (*flags, *dirfd),
                base.as_deref(),
                policy,
            ),
            // Failed attempts (PATH candidates) ran nothing; the kernel rules summarise them.
            EventBody::Exec { ret, .. } if *ret < 0 => Judgement::default(),
            EventBody::Exec {
                filename,
                argv,
                kernel_action,
                ..
            } => exec(filename, argv, *kernel_action, policy),
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

    fn mount(
        &mut self,
        tid: u32,
        source: &str,
        target: &str,
        fstype: &str,
        verdict: Verdict,
    ) -> Judgement {
        self.entries.insert((tid, RuleName::Mount), verdict);
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
fn open(
    tgid: u32,
    requested: &str,
    (flags, dirfd): (i32, i32),
    kernel_base: Option<&str>,
    policy: &Policy,
) -> Judgement {
    let effective = open_path::effective(tgid, dirfd, requested, kernel_base);
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

fn exec(filename: &str, argv: &[String], kernel: KernelAction, policy: &Policy) -> Judgement {
    if kernel == KernelAction::Killed {
        // exec=block killed a denylisted program before it ran: a violation. The process
        // rules raise its CRITICAL alert; this is its audit record.
        let mut judgement = route(
            Verdict::Killed,
            record(
                Severity::Info,
                RuleName::Exec,
                Verdict::Killed.as_str(),
                format!("exec of {filename} killed in kernel"),
            )
            .with("filename", filename)
            .with("argv", json!(argv)),
        );
        judgement.audit = judgement.alert.take();
        return judgement;
    }
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
