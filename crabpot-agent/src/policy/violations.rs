//! What judging a kernel event yields (events/ has one judge per kind) and the pieces those
//! judges share: the record of a rule's decision, its routing by verdict, the process
//! details, and the entry verdicts a refusal at exit is paired with.
use std::collections::HashMap;

use serde_json::json;

use crate::{
    model::{
        alert::{Alert, AlertSource, Severity},
        event::{Ancestor, KernelEvent, RuleName, Verdict},
    },
    policy::rules::Action,
};

/// What an event deserves, carried out in one place by the kernel-event loop.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Judgement {
    /// The watchdog's alert (a denylisted program, a connect outside the allowlist): raised
    /// as it is, never a violation in itself.
    pub watchdog: Option<Alert>,
    /// Goes through the alert dispatcher.
    pub alert: Option<Alert>,
    /// Goes to the audit log only ("log" actions).
    pub audit: Option<Alert>,
    /// Costs trust.
    pub violation: bool,
    /// A mount that completed before its caller was killed: unmount this target.
    pub undo_mount: Option<String>,
    /// A process of the container that left its cgroup and that the kernel could not kill
    /// itself (another process moved it): the agent kills it.
    pub kill_pid: Option<u32>,
}

/// Entry verdicts of mount/ptrace calls by thread, to pair with their exit.
#[derive(Default)]
pub(crate) struct EntryVerdicts(HashMap<(u32, RuleName), Verdict>);

impl EntryVerdicts {
    pub(crate) fn remember(&mut self, tid: u32, rule: RuleName, verdict: Verdict) {
        self.0.insert((tid, rule), verdict);
    }

    pub(crate) fn take(&mut self, tid: u32, rule: RuleName) -> Option<Verdict> {
        self.0.remove(&(tid, rule))
    }

    /// Exits that never came (the caller was killed) must not grow the table forever.
    pub(crate) fn bound(&mut self) {
        if self.0.len() > 4096 {
            self.0.clear();
        }
    }
}

pub(crate) fn record(
    severity: Severity,
    rule: RuleName,
    verdict: &'static str,
    message: String,
) -> Alert {
    let source = match rule {
        RuleName::Connect | RuleName::Socket => AlertSource::Network,
        _ => AlertSource::Syscalls,
    };
    Alert::new(severity, source, message).decision(rule.as_str(), verdict)
}

pub(crate) fn with_process(alert: Alert, event: &KernelEvent, lineage: &[Ancestor]) -> Alert {
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
pub(crate) fn net_message(
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
pub(crate) fn route(verdict: Verdict, alert: Alert) -> Judgement {
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

pub(crate) fn verdict_for_action(action: Action) -> Verdict {
    match action {
        Action::Off => Verdict::None,
        Action::Log => Verdict::Log,
        _ => Verdict::Alert, // opens cannot be stopped by any layer here
    }
}
