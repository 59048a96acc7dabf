//! What the operator's exceptions and learn mode make of a kernel event's judgement,
//! before it is carried out: an excepted act raises nothing; in learn mode an act is
//! recorded and written as INFO. Neither costs trust.
use crate::{
    model::{
        alert::{Alert, Severity},
        event::{Ancestor, EventBody, KernelEvent, RuleName},
    },
    policy::{
        exceptions::{Subject, rule_of, subject_of},
        learn::{Act, quiet},
        violations::Judgement,
    },
};

use super::{KernelLoop, LoopState};

impl KernelLoop {
    /// The one place exceptions apply to kernel events: a match raises nothing and costs
    /// no trust (the record goes to the audit log with the exception's name).
    pub(super) fn except(
        &self,
        judgement: &mut Judgement,
        event: &KernelEvent,
        lineage: &[Ancestor],
        state: &mut LoopState,
    ) {
        let path = judged_path(judgement);
        let subject = || self.subject(event, lineage, state, path);
        if let Some(name) = self
            .exceptions
            .apply(judgement, rule_of(&event.body), subject)
        {
            tracing::debug!(
                exception = name.as_str(),
                pid = event.header.tgid,
                "exception matched"
            );
        }
    }

    /// What an event tells of its act, for exceptions and learn mode: the host name a DNS
    /// reply gave its address, the lineage, the path as judged (normalised).
    fn subject(
        &self,
        event: &KernelEvent,
        lineage: &[Ancestor],
        state: &mut LoopState,
        path: Option<String>,
    ) -> Subject {
        let address = match &event.body {
            EventBody::Connect { address, .. }
            | EventBody::NetPolicy { address, .. }
            | EventBody::Packet { address, .. } => *address,
            _ => None,
        };
        let host = address.and_then(|a| self.dns.name_of(a).map(str::to_string));
        let lineage = if lineage.is_empty() && event.header.tgid != 0 {
            state.table.lineage(event)
        } else {
            lineage.to_vec()
        };
        let mut subject = subject_of(event, lineage, host);
        if path.is_some() {
            subject.path = path;
        }
        subject
    }

    /// Learn mode: what the judgement would raise is recorded with the act's subject (a
    /// destination, an exception's criteria, a /proc read) and written as INFO; nothing
    /// costs trust. Acts of no rule (an escape) are left to the router's record.
    pub(super) fn learn(
        &self,
        judgement: &mut Judgement,
        event: &KernelEvent,
        lineage: &[Ancestor],
        state: &mut LoopState,
    ) {
        let Some(recorder) = self.learn.clone() else {
            return;
        };
        judgement.violation = false;
        let (watchdog, alert) = (raises(&judgement.watchdog), raises(&judgement.alert));
        let logged_read = judgement
            .audit
            .as_ref()
            .is_some_and(|a| a.control.decision == Some(("proc_open", "log")));
        let Some(rule) = rule_of(&event.body) else {
            return;
        };
        if !(watchdog || alert || logged_read) {
            return;
        }
        let subject = self.subject(event, lineage, state, judged_path(judgement));
        match (&subject.address, subject.port) {
            (Some(address), Some(port)) if rule == RuleName::Connect => {
                let named = judgement
                    .alert
                    .as_ref()
                    .and_then(|a| a.details.get("dns_name"));
                let host = subject.host.as_deref().or(named.and_then(|v| v.as_str()));
                recorder.destination(*address, port, host);
            }
            _ if watchdog || alert => {
                let denylisted = judgement
                    .watchdog
                    .as_ref()
                    .is_some_and(|a| a.rule_name() == "process_denylisted");
                recorder.act(Act {
                    rule,
                    subject: &subject,
                    denylisted,
                });
            }
            _ => {
                if let Some(path) = &subject.path {
                    recorder.proc_read(path, &subject);
                }
            }
        }
        if watchdog {
            judgement.watchdog = judgement.watchdog.take().map(quiet);
        }
        if alert {
            judgement.alert = judgement.alert.take().map(quiet);
        }
    }
}

/// Whether a judged record would be raised: above INFO, or an audited decision.
fn raises(record: &Option<Alert>) -> bool {
    record.as_ref().is_some_and(|a| {
        a.severity > Severity::Info || matches!(a.control.decision, Some((_, "audit")))
    })
}

/// The path a judgement names (an open's, normalised by its judge).
fn judged_path(judgement: &Judgement) -> Option<String> {
    [&judgement.watchdog, &judgement.alert, &judgement.audit]
        .into_iter()
        .flatten()
        .find_map(|a| a.details.get("path").and_then(|v| v.as_str()))
        .map(str::to_string)
}
