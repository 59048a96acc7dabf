//! The kernel-event loop: every event is learned from (lineage), judged by the watchdog
//! rules and the ASF-42 policy, costs trust when it is a violation, and is printed on
//! request.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use crabpot_common::EventKind;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    actions::undo::{UndoOutcome, unmount_in_container},
    cli::AgentArgs,
    events::Judges,
    model::{
        alert::{Alert, AlertSource, Severity},
        container::GuardedContainer,
        event::{EventBody, KernelAction, KernelEvent, RuleName},
        sender::AlertSender,
    },
    policy::{
        exceptions::{Exceptions, Subject, rule_of, subject_of},
        learn::{Act, quiet},
        repeats::Repeats,
        rules::Policy,
        trust::{TrustReset, TrustScore},
        violations::Judgement,
    },
    sinks::{
        event_printer::{EventFormat, ObservedEvent, format_line, print_line},
        metrics::Metrics,
    },
    sources::bpf::bus::BusMessage,
    sources::lineage::ProcessTable,
};

pub(crate) struct KernelLoop {
    pub args: AgentArgs,
    pub guarded: watch::Receiver<Option<GuardedContainer>>,
    /// One judge per event kind (events/).
    pub judges: Judges,
    pub policy: watch::Receiver<Arc<Policy>>,
    pub alerts: AlertSender,
    pub audit: mpsc::Sender<Arc<Alert>>,
    pub trust: watch::Sender<TrustScore>,
    /// Operators' trust resets (from the HTTP control actions).
    pub trust_resets: mpsc::Receiver<TrustReset>,
    pub metrics: Arc<Metrics>,
    /// Learns allowed addresses and names from the container's DNS replies.
    pub dns: crate::actions::dns_learn::DnsLearner,
    /// The operator's exceptions: applied to every judgement before it is carried out.
    pub exceptions: Arc<Exceptions>,
    /// Learn mode: what would be raised is recorded here, written as INFO, costs no trust.
    pub learn: Option<Arc<crate::policy::learn::Recorder>>,
}

/// What the loop keeps between events beyond the kernel's process table.
#[derive(Default)]
struct LoopState {
    table: ProcessTable,
    repeats: Repeats,
    overrun_alerted: bool,
    /// The container instance (Docker id) the trust score belongs to.
    instance: Option<String>,
    /// When the last quarantine was announced.
    quarantined_at: Option<Instant>,
}

/// How often closed repeat windows are summarised.
const REPEAT_SWEEP: Duration = Duration::from_secs(5);
/// A quarantine announced this recently is still being carried out (the pause is in flight).
const QUARANTINE_SETTLE: Duration = Duration::from_secs(5);

fn needs_lineage(event: &KernelEvent, printing: bool) -> bool {
    event.header.tgid != 0 && (printing || !matches!(event.kind(), EventKind::Open))
}

impl KernelLoop {
    /// Route kernel events until `stop` is cancelled. Without a kernel side (poll-only
    /// mode) there is no bus, and the loop still follows the container and trust resets.
    pub(crate) async fn run(
        mut self,
        bus: Option<mpsc::Receiver<BusMessage>>,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let kernel = bus.is_some();
        let mut bus = bus.unwrap_or_else(|| mpsc::channel(1).1);
        let mut state = LoopState {
            instance: self.guarded.borrow().as_ref().map(|c| c.id.clone()),
            ..LoopState::default()
        };
        let mut guarded = self.guarded.clone();
        let mut following = true;
        let mut sweep = tokio::time::interval(REPEAT_SWEEP);
        let mut dns_expiry = tokio::time::interval(crate::actions::dns_learn::EXPIRE_EVERY);
        // Failed exec attempts are summarised once they settle, even when no event follows.
        let mut settle = tokio::time::interval(crate::policy::exec_failures::SETTLE);
        loop {
            tokio::select! {
                _ = dns_expiry.tick() => self.dns.expire(Instant::now()),
                message = bus.recv(), if kernel => match message {
                    Some(message) => self.on_message(message, &mut state).await?,
                    None if stop.is_cancelled() => return Ok(()),
                    // The drain logged why; the agent stops rather than run blind.
                    None => anyhow::bail!("the ring-buffer drain stopped: no more kernel events"),
                },
                Some(request) = self.trust_resets.recv() => self.on_trust_reset(request).await,
                changed = guarded.changed(), if following => match changed {
                    Ok(()) => self.on_container_change(&mut state).await,
                    Err(_) => following = false,
                },
                _ = sweep.tick() => {
                    for summary in state.repeats.close_expired(Instant::now()) {
                        self.alerts.raise(summary).await;
                    }
                }
                _ = settle.tick() => {
                    for alert in self.judges.rules.due_failures() {
                        self.alerts.raise(alert).await;
                    }
                }
                () = stop.cancelled() => return Ok(()),
            }
        }
    }

    async fn on_message(
        &mut self,
        message: BusMessage,
        state: &mut LoopState,
    ) -> anyhow::Result<()> {
        match message {
            BusMessage::Kernel(events) => {
                for event in events {
                    self.on_event(event, state).await?;
                }
            }
            BusMessage::KernelDrops(report) => self.on_drops(report, state).await?,
            BusMessage::DecodeError { error, total } => {
                tracing::warn!("undecodable kernel record ({total} so far): {error}");
            }
        }
        Ok(())
    }

    async fn on_drops(
        &mut self,
        report: crate::sources::bpf::drops::DropReport,
        state: &mut LoopState,
    ) -> anyhow::Result<()> {
        self.metrics.drops(&report.by_kind);
        if !state.overrun_alerted {
            // Once: every later drop is counted (metrics, status, warnings).
            state.overrun_alerted = true;
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
        Ok(())
    }

    /// A new container instance (re-created, new Docker id) starts at full trust.
    async fn on_container_change(&mut self, state: &mut LoopState) {
        let Some(id) = self.guarded.borrow().as_ref().map(|c| c.id.clone()) else {
            return;
        };
        if state.instance.as_deref() == Some(id.as_str()) {
            return;
        }
        let previous = state.instance.replace(id.clone());
        if previous.is_none() {
            return;
        }
        let before = *self.trust.borrow();
        self.trust.send_modify(TrustScore::reset);
        state.repeats.clear();
        state.quarantined_at = None;
        if before.violations > 0 {
            let short: String = id.chars().take(12).collect();
            let alert = Alert::new(
                Severity::Info,
                AlertSource::Policy,
                format!(
                    "New container instance {short}: trust starts at 100 (the previous \
                     instance ended at {} after {} violations)",
                    before.score, before.violations
                ),
            )
            .with("trust_score", 100)
            .with("previous_score", before.score);
            self.alerts.raise(alert).await;
        }
    }

    /// An operator's explicit way back: full trust, audited (who, how, what it was).
    async fn on_trust_reset(&mut self, request: TrustReset) {
        let before = *self.trust.borrow();
        self.trust.send_modify(TrustScore::reset);
        let how = request.reason.as_str();
        let alert = Alert::new(
            Severity::Info,
            AlertSource::Policy,
            format!(
                "Trust reset to 100 by the operator ({how}, from {}); it was {} after {} \
                 violations",
                request.from, before.score, before.violations
            ),
        )
        .with("rule", "trust_reset")
        .with("operator_action", how)
        .with("from", request.from.clone())
        .with("previous_score", before.score)
        .with("previous_violations", before.violations);
        self.alerts.raise(alert).await;
        let _ = request.reply.send(before);
    }

    async fn on_event(&mut self, event: KernelEvent, state: &mut LoopState) -> anyhow::Result<()> {
        let table = &mut state.table;
        self.metrics.kernel_event(event.kind());
        let policy = self.policy.borrow().clone();
        if self.dns.learn_from(&event, &policy.allow_hosts) {
            // No process is behind a DNS reply (softirq): learned from, printed, no more.
            return self.print_event(&event, &[]);
        }
        if event.header.tgid != 0 {
            // Packets are seen at egress, possibly in softirq context: no task behind them.
            table.observe(&event);
        }
        let lineage = if needs_lineage(&event, self.args.events.is_some()) {
            table.lineage(&event)
        } else {
            Vec::new()
        };
        self.judges
            .rules
            .set_container(self.guarded.borrow().as_ref());
        let mut judgement = self.judges.judge(&event, &lineage, &policy);
        self.dns.annotate(&event, &mut judgement);
        self.except(&mut judgement, &event, &lineage, state);
        self.learn(&mut judgement, &event, &lineage, state);
        self.carry_out(judgement, &event, &lineage, state).await;
        self.print_event(&event, &lineage)
    }

    /// Carry out what a judgement says, in order: the watchdog's alert, the audit record,
    /// the alert (a repeat inside its window only counted), the violation, the undo.
    async fn carry_out(
        &mut self,
        mut judgement: Judgement,
        event: &KernelEvent,
        lineage: &[crate::model::event::Ancestor],
        state: &mut LoopState,
    ) {
        if let Some(alert) = self.settle_kernel_stop(event, judgement.watchdog.take()) {
            self.alerts.raise(alert).await;
        }
        if lineage.is_empty() && (judgement.audit.is_some() || judgement.alert.is_some()) {
            // Opens skip the lineage walk on the hot path; a record needs it.
            let walked = serde_json::json!(state.table.lineage(event));
            for record in [&mut judgement.audit, &mut judgement.alert]
                .into_iter()
                .flatten()
            {
                record.details.insert("lineage".into(), walked.clone());
            }
        }
        if let Some(record) = judgement.audit {
            if let Some((rule, _)) = record.control.decision {
                self.metrics.decision(rule, "logged");
            }
            let record = self.alerts.stamp(record);
            let _ = self.audit.send(Arc::new(record)).await;
        }
        if let Some(alert) = judgement.alert {
            if let Some((rule, verdict)) = alert.control.decision
                && matches!(verdict, "blocked" | "killed" | "refused" | "audit")
            {
                self.metrics.decision(rule, verdict);
            }
            // A repeat of a blocked act inside its window is counted, not re-reported.
            let first = !judgement.violation || state.repeats.first(&alert, Instant::now());
            if first {
                self.alerts.raise(alert).await;
                if judgement.violation {
                    self.violation(state).await;
                }
            }
        } else if judgement.violation {
            self.violation(state).await;
        }
        if let Some(target) = judgement.undo_mount {
            self.undo_mount(target);
        }
        if let Some(pid) = judgement.kill_pid {
            crate::actions::escape::kill_escaped(pid);
        }
    }

    /// The one place exceptions apply to kernel events: a match raises nothing and costs
    /// no trust (the record goes to the audit log with the exception's name).
    fn except(
        &self,
        judgement: &mut Judgement,
        event: &KernelEvent,
        lineage: &[crate::model::event::Ancestor],
        state: &mut LoopState,
    ) {
        let path = judged_path(judgement);
        let subject = || self.subject(event, lineage, state, path);
        if let Some(name) = self
            .exceptions
            .apply(judgement, rule_of(&event.body), subject)
        {
            tracing::debug!(
                exception = name,
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
        lineage: &[crate::model::event::Ancestor],
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
    fn learn(
        &self,
        judgement: &mut Judgement,
        event: &KernelEvent,
        lineage: &[crate::model::event::Ancestor],
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

    /// A program the kernel stopped at its exec stays stopped when its alert is CRITICAL
    /// (the alert freezes the container); anything else was a false alarm (the health
    /// probe, the main process, a file found innocent) and is continued with SIGCONT.
    fn settle_kernel_stop(&self, event: &KernelEvent, alert: Option<Alert>) -> Option<Alert> {
        let EventBody::Exec { kernel_action, .. } = &event.body else {
            return alert;
        };
        match kernel_action {
            KernelAction::None => alert,
            KernelAction::Killed => {
                self.metrics.kernel_stop("killed");
                alert
            }
            KernelAction::Stopped => {
                let critical = alert
                    .as_ref()
                    .is_some_and(|a| a.severity == Severity::Critical);
                if critical {
                    self.metrics.kernel_stop("frozen");
                    return alert;
                }
                let tgid = event.header.tgid;
                let outcome = crate::actions::kernel_stop::continue_stopped(tgid);
                self.metrics.kernel_stop("continued");
                tracing::info!(
                    "exec in process {tgid} stopped in kernel, not an attack: {outcome}"
                );
                alert.map(|a| a.with("kernel_action", "continued"))
            }
        }
    }

    /// `--events`: print the event with its container and lineage.
    fn print_event(
        &self,
        event: &KernelEvent,
        lineage: &[crate::model::event::Ancestor],
    ) -> anyhow::Result<()> {
        if let Some(format) = self.args.events {
            let current = self.guarded.borrow().clone();
            let (name, id) = match &current {
                Some(c) => (c.name.as_str(), c.id.as_str()),
                None => (self.args.container.as_str(), ""),
            };
            let observed = ObservedEvent {
                container: name,
                container_id: id,
                event,
                lineage,
            };
            print_line(&format_line(&observed, format)).context("writing an event to stdout")?;
        }
        Ok(())
    }

    async fn violation(&mut self, state: &mut LoopState) {
        let mut entered = false;
        self.trust.send_modify(|trust| entered = trust.violation());
        let trust = *self.trust.borrow();
        tracing::warn!("policy violation: trust score now {}", trust.score);
        // Still quarantined, but running again (unpaused without a trust reset): a new
        // running-to-frozen transition, unless the last announcement is still in flight.
        let running = self.guarded.borrow().as_ref().is_some_and(|c| !c.paused);
        let settled = state
            .quarantined_at
            .is_none_or(|at| at.elapsed() >= QUARANTINE_SETTLE);
        let again = !entered && trust.requarantine() && running && settled;
        if entered || again {
            state.quarantined_at = Some(Instant::now());
            let alert = Alert::new(
                Severity::Critical,
                AlertSource::Policy,
                format!(
                    "Container quarantined: trust score {} (below {}) after {} violations",
                    trust.score, trust.quarantine_below, trust.violations
                ),
            )
            .quarantine()
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
            let outcome =
                unmount_in_container(container.pid, &container.cgroup.directory, target.clone())
                    .await;
            let (severity, message) = match &outcome {
                UndoOutcome::Unmounted => (
                    Severity::Info,
                    format!("mount on `{target}` undone in the container's mount namespaces"),
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
