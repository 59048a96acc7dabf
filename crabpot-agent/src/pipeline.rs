//! The kernel-event loop: every event is learned from (lineage), judged by the watchdog
//! rules and the ASF-42 policy, costs trust when it is a violation, and is printed on
//! request.
use std::sync::Arc;

use anyhow::Context as _;
use crabpot_common::EventKind;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    actions::undo::{UndoOutcome, unmount_in_container},
    alert::{Alert, AlertSource, Severity},
    bus::BusMessage,
    cli::AgentArgs,
    policy::{
        kernel_rules::KernelRules, rules::Policy, trust::TrustScore, violations::ViolationJudge,
    },
    sinks::{
        event_printer::{EventFormat, ObservedEvent, format_line, print_line},
        metrics::Metrics,
    },
    sources::{
        bpf::KernelEvent, container::GuardedContainer, lineage::ProcessTable, watchers::AlertSender,
    },
};

/// Marks the alert that announces a quarantine; it freezes even without auto-pause.
pub const QUARANTINE: &str = "quarantine";

pub struct KernelLoop {
    pub args: AgentArgs,
    pub guarded: watch::Receiver<Option<GuardedContainer>>,
    pub rules: KernelRules,
    pub policy: watch::Receiver<Arc<Policy>>,
    pub alerts: AlertSender,
    pub audit: mpsc::Sender<Arc<Alert>>,
    pub trust: watch::Sender<TrustScore>,
    pub metrics: Arc<Metrics>,
}

fn needs_lineage(event: &KernelEvent, printing: bool) -> bool {
    printing || !matches!(event.kind(), EventKind::Open)
}

impl KernelLoop {
    /// Route kernel events until a stop signal.
    pub async fn run(mut self, mut bus: mpsc::Receiver<BusMessage>) -> anyhow::Result<()> {
        let mut terminate =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut interrupt =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut table = ProcessTable::default();
        let mut judge = ViolationJudge::default();
        let mut overrun_alerted = false;
        // Failed exec attempts are summarised once they settle, even when no event follows.
        let mut settle = tokio::time::interval(crate::policy::exec_failures::SETTLE);
        loop {
            let message = tokio::select! {
                message = bus.recv() => match message {
                    Some(message) => message,
                    None => return Ok(()),
                },
                _ = settle.tick() => {
                    for alert in self.rules.due_failures() {
                        self.alerts.raise(alert).await;
                    }
                    continue;
                }
                _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); return Ok(()); }
                _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); return Ok(()); }
            };
            match message {
                BusMessage::Kernel(events) => {
                    for event in events {
                        self.on_event(event, &mut table, &mut judge).await?;
                    }
                }
                BusMessage::KernelDrops(report) => {
                    self.metrics.dropped_total(report.total);
                    if !overrun_alerted {
                        // Once: every later drop is counted (metrics, status, warnings).
                        overrun_alerted = true;
                        let alert = Alert::new(
                            Severity::Warning,
                            AlertSource::Syscalls,
                            format!(
                                "Kernel ring buffer overrun: {} events dropped so far; raise \
                                 --ring-buffer-bytes (further drops are counted, not alerted)",
                                report.total
                            ),
                        )
                        .with("dropped_total", report.total)
                        .with("by_kind", serde_json::json!(report.by_kind));
                        self.alerts.raise(alert).await;
                    }
                    tracing::warn!(
                        total = report.total,
                        "kernel ring buffer full: {} events dropped so far ({:?}); raise \
                         --ring-buffer-bytes",
                        report.total,
                        report.by_kind
                    );
                    if self.args.events == Some(EventFormat::Json) {
                        let line = serde_json::json!({"kind": "dropped", "total": report.total,
                            "by_kind": report.by_kind});
                        print_line(&line.to_string()).context("writing to stdout")?;
                    }
                }
                BusMessage::DecodeError { error, total } => {
                    tracing::warn!("undecodable kernel record ({total} so far): {error}");
                }
            }
        }
    }

    async fn on_event(
        &mut self,
        event: KernelEvent,
        table: &mut ProcessTable,
        judge: &mut ViolationJudge,
    ) -> anyhow::Result<()> {
        table.observe(&event);
        self.metrics.kernel_event(event.kind());
        let lineage = if needs_lineage(&event, self.args.events.is_some()) {
            table.lineage(&event)
        } else {
            Vec::new()
        };
        self.rules.set_container(self.guarded.borrow().as_ref());
        if let Some(alert) = self.rules.evaluate(&event, &lineage) {
            self.alerts.raise(alert).await;
        }
        let policy = self.policy.borrow().clone();
        let judgement = judge.judge(&event, &lineage, &policy);
        if let Some(record) = judgement.audit {
            if let Some(rule) = record.details.get("rule").and_then(|v| v.as_str()) {
                self.metrics.decision(rule, "logged");
            }
            let _ = self.audit.send(Arc::new(record)).await;
        }
        if let Some(alert) = judgement.alert {
            if let (Some(rule), Some(verdict)) = (
                alert.details.get("rule").and_then(|v| v.as_str()),
                alert.details.get("verdict").and_then(|v| v.as_str()),
            ) && matches!(verdict, "blocked" | "killed" | "refused" | "audit")
            {
                self.metrics.decision(rule, verdict);
            }
            self.alerts.raise(alert).await;
        }
        if judgement.violation {
            self.violation().await;
        }
        if let Some(target) = judgement.undo_mount {
            self.undo_mount(target);
        }
        if let Some(format) = self.args.events {
            let current = self.guarded.borrow().clone();
            let (name, id) = match &current {
                Some(c) => (c.name.as_str(), c.id.as_str()),
                None => (self.args.container.as_str(), ""),
            };
            let observed = ObservedEvent {
                container: name,
                container_id: id,
                event: &event,
                lineage: &lineage,
            };
            print_line(&format_line(&observed, format)).context("writing an event to stdout")?;
        }
        Ok(())
    }

    async fn violation(&mut self) {
        let mut quarantine = false;
        self.trust
            .send_modify(|trust| quarantine = trust.violation());
        let trust = *self.trust.borrow();
        tracing::warn!("policy violation: trust score now {}", trust.score);
        if quarantine {
            let alert = Alert::new(
                Severity::Critical,
                AlertSource::Policy,
                format!(
                    "Container quarantined: trust score {} (below {}) after {} violations",
                    trust.score, trust.quarantine_below, trust.violations
                ),
            )
            .with(QUARANTINE, true)
            .with("trust_score", trust.score)
            .with("violations", trust.violations);
            self.alerts.raise(alert).await;
        }
    }

    fn undo_mount(&self, target: String) {
        let Some(container) = self.guarded.borrow().clone() else {
            return;
        };
        let alerts = self.alerts.clone();
        tokio::spawn(async move {
            let outcome = unmount_in_container(container.pid, target.clone()).await;
            let (severity, message) = match &outcome {
                UndoOutcome::Unmounted => (
                    Severity::Info,
                    format!("mount on `{target}` undone in the container"),
                ),
                UndoOutcome::NotMounted => (
                    Severity::Info,
                    format!("mount on `{target}` not present in the container's namespace"),
                ),
                UndoOutcome::Failed(error) => (
                    Severity::Warning,
                    format!("could not undo the mount on `{target}`: {error}"),
                ),
            };
            let alert = Alert::new(severity, AlertSource::Policy, message)
                .with("target", target)
                .with("undo", format!("{outcome:?}"));
            alerts.raise(alert).await;
        });
    }
}
