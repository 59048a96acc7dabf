//! The kernel-event loop: every event is learned from (lineage), judged by the watchdog
//! rules and the ASF-42 policy, costs trust when it is a violation, and is printed on
//! request.
mod overrides;

use std::{
    collections::{BTreeMap, HashMap},
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
        container::{Feeds, Guarded, GuardedUnit},
        event::{EventBody, KernelAction, KernelEvent},
        sender::AlertSender,
    },
    policy::{
        exceptions::Exceptions,
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
    /// Every guarded container; a kernel event belongs to the one whose cgroup it names.
    pub guarded: watch::Receiver<Guarded>,
    /// One judge per event kind (events/).
    pub judges: Judges,
    pub policy: watch::Receiver<Arc<Policy>>,
    /// Agent-wide records (each container's own go through its sender).
    pub alerts: AlertSender,
    pub audit: mpsc::Sender<Arc<Alert>>,
    /// The lowest trust score of the guarded containers (the agent's headline).
    pub trust: watch::Sender<TrustScore>,
    /// Each guarded container's trust score, by name.
    pub trusts: watch::Sender<BTreeMap<String, TrustScore>>,
    /// A new container's trust (full, with the configured thresholds).
    pub trust_start: TrustScore,
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
    overrun_alerted: bool,
    /// Each guarded container's own, by name.
    units: HashMap<String, UnitState>,
    /// The running containers by guarded cgroup id (the hot path's lookup, kept on changes).
    owners: HashMap<u64, Owner>,
}

/// What the loop keeps for one guarded container.
struct UnitState {
    trust: TrustScore,
    repeats: Repeats,
    /// The container instance (Docker id) the trust score belongs to.
    instance: Option<String>,
    /// When the last quarantine was announced.
    quarantined_at: Option<Instant>,
}

/// The guarded container a kernel event belongs to, as the loop handles it (cheap to clone).
#[derive(Clone)]
struct Owner {
    name: Arc<str>,
    unit: Arc<GuardedUnit>,
}

impl Owner {
    fn new(name: &str, unit: &GuardedUnit) -> Self {
        Owner {
            name: name.into(),
            unit: Arc::new(unit.clone()),
        }
    }
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
        let mut state = LoopState::default();
        let mut guarded = self.guarded.clone();
        let mut feeds = Feeds::default();
        self.on_set_change(&mut guarded, &mut feeds, &mut state)
            .await;
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
                Some(request) = self.trust_resets.recv() => {
                    self.on_trust_reset(request, &mut state).await;
                }
                changed = guarded.changed(), if following => match changed {
                    Ok(()) => self.on_set_change(&mut guarded, &mut feeds, &mut state).await,
                    Err(_) => following = false,
                },
                name = feeds.changed() => self.on_container_change(&name, &mut state).await,
                _ = sweep.tick() => self.sweep_repeats(&mut state).await,
                _ = settle.tick() => {
                    for alert in self.judges.rules.due_failures() {
                        self.alerts.raise(alert).await;
                    }
                }
                () = stop.cancelled() => return Ok(()),
            }
        }
    }

    /// Containers attached or detached: each new one starts at full trust, a detached one's
    /// state goes with it.
    async fn on_set_change(
        &mut self,
        guarded: &mut watch::Receiver<Guarded>,
        feeds: &mut Feeds,
        state: &mut LoopState,
    ) {
        let (added, names): (Vec<String>, Vec<String>) = {
            let set = guarded.borrow_and_update();
            (feeds.sync(&set), set.keys().cloned().collect())
        };
        state.units.retain(|name, _| names.contains(name));
        for name in added {
            self.on_container_change(&name, state).await;
        }
        self.index_owners(state);
        self.publish_trust(state);
    }

    /// Index the running containers by their guarded cgroup id.
    fn index_owners(&self, state: &mut LoopState) {
        let set = self.guarded.borrow();
        state.owners = set
            .iter()
            .filter_map(|(name, unit)| {
                let id = unit.container.borrow().as_ref()?.cgroup.id;
                Some((id, Owner::new(name, unit)))
            })
            .collect();
    }

    /// Closed repeat windows, summarised in each container's name.
    async fn sweep_repeats(&mut self, state: &mut LoopState) {
        let now = Instant::now();
        for (name, unit) in &mut state.units {
            let summaries = unit.repeats.close_expired(now);
            if summaries.is_empty() {
                continue;
            }
            let sender = self.sender_of(name);
            for summary in summaries {
                sender.raise(summary).await;
            }
        }
    }

    /// The sender that names container `name` in its records (the agent's when it is gone).
    fn sender_of(&self, name: &str) -> AlertSender {
        self.guarded
            .borrow()
            .get(name)
            .map(|unit| unit.alerts.clone())
            .unwrap_or_else(|| self.alerts.clone())
    }

    /// The guarded container a kernel event belongs to: the one whose cgroup the kernel
    /// filter matched; else (records stamped with the task's own cgroup) the one whose
    /// cgroup holds the process; the only one when a single container is guarded.
    fn owner_of(&self, event: &KernelEvent, state: &LoopState) -> Option<Owner> {
        if let Some(owner) = state.owners.get(&event.header.cgroup_id) {
            return Some(owner.clone());
        }
        let set = self.guarded.borrow();
        if set.len() == 1 {
            return set.iter().next().map(|(name, unit)| Owner::new(name, unit));
        }
        let tgid = event.header.tgid;
        let relative = (tgid != 0)
            .then(|| crate::sources::cgroup::cgroup_of_pid(tgid).ok())
            .flatten()?
            .relative;
        set.iter()
            .find(|(_, unit)| {
                unit.container.borrow().as_ref().is_some_and(|c| {
                    relative == c.cgroup.relative
                        || relative.starts_with(&format!("{}/", c.cgroup.relative))
                })
            })
            .map(|(name, unit)| Owner::new(name, unit))
    }

    /// Publish every container's trust, and the lowest as the agent's.
    fn publish_trust(&self, state: &LoopState) {
        let all: BTreeMap<String, TrustScore> = state
            .units
            .iter()
            .map(|(name, unit)| (name.clone(), unit.trust))
            .collect();
        let lowest = all
            .values()
            .min_by_key(|t| t.score)
            .copied()
            .unwrap_or(self.trust_start);
        self.trust
            .send_if_modified(|t| std::mem::replace(t, lowest) != lowest);
        self.trusts.send_if_modified(|t| {
            let changed = *t != all;
            *t = all;
            changed
        });
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
    async fn on_container_change(&mut self, name: &str, state: &mut LoopState) {
        self.index_owners(state);
        let current = self.guarded.borrow().get(name).map(|u| {
            let id = u.container.borrow().as_ref().map(|c| c.id.clone());
            (id, u.alerts.clone())
        });
        // Detached meanwhile: nothing to keep for it.
        let Some((id, sender)) = current else {
            return;
        };
        let start = self.trust_start;
        let unit = state
            .units
            .entry(name.to_string())
            .or_insert_with(|| UnitState {
                trust: start,
                repeats: Repeats::default(),
                instance: None,
                quarantined_at: None,
            });
        let Some(id) = id else {
            return;
        };
        if unit.instance.as_deref() == Some(id.as_str()) {
            return;
        }
        let previous = unit.instance.replace(id.clone());
        if previous.is_none() {
            return;
        }
        let before = unit.trust;
        unit.trust.reset();
        unit.repeats.clear();
        unit.quarantined_at = None;
        self.publish_trust(state);
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
            sender.raise(alert).await;
        }
    }

    /// An operator's explicit way back: full trust for the container named (every guarded
    /// one when none is), audited (who, how, what it was).
    async fn on_trust_reset(&mut self, request: TrustReset, state: &mut LoopState) {
        let target = request.container.as_deref().and_then(|wanted| {
            let set = self.guarded.borrow();
            crate::model::container::unit_named(&set, wanted, wanted).map(|(name, _)| name.clone())
        });
        let before = match &target {
            Some(name) => state.units.get(name).map(|u| u.trust),
            None => Some(*self.trust.borrow()),
        }
        .unwrap_or(self.trust_start);
        for (name, unit) in &mut state.units {
            if target.as_ref().is_none_or(|t| t == name) {
                unit.trust.reset();
            }
        }
        self.publish_trust(state);
        let alerts = target
            .as_deref()
            .map_or_else(|| self.alerts.clone(), |t| self.sender_of(t));
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
        alerts.raise(alert).await;
        let _ = request.reply.send(before);
    }

    async fn on_event(&mut self, event: KernelEvent, state: &mut LoopState) -> anyhow::Result<()> {
        self.metrics.kernel_event(event.kind());
        let policy = self.policy.borrow().clone();
        let owner = self.owner_of(&event, state);
        let table = &mut state.table;
        if self.dns.learn_from(&event, &policy.allow_hosts) {
            // No process is behind a DNS reply (softirq): learned from, printed, no more.
            return self.print_event(&event, &[], owner.as_ref());
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
        let container = owner
            .as_ref()
            .and_then(|o| o.unit.container.borrow().clone());
        self.judges.rules.set_container(container.as_ref());
        let mut judgement = self.judges.judge(&event, &lineage, &policy);
        self.dns.annotate(&event, &mut judgement);
        self.except(&mut judgement, &event, &lineage, state);
        self.learn(&mut judgement, &event, &lineage, state);
        self.carry_out(judgement, &event, &lineage, state, owner.as_ref())
            .await;
        self.print_event(&event, &lineage, owner.as_ref())
    }

    /// Carry out what a judgement says, in order: the watchdog's alert, the audit record,
    /// the alert (a repeat inside its window only counted), the violation, the undo.
    async fn carry_out(
        &mut self,
        mut judgement: Judgement,
        event: &KernelEvent,
        lineage: &[crate::model::event::Ancestor],
        state: &mut LoopState,
        owner: Option<&Owner>,
    ) {
        // Records name the container the event came from; a CRITICAL freezes that one.
        let alerts = owner.map_or_else(|| self.alerts.clone(), |o| o.unit.alerts.clone());
        if let Some(alert) = self.settle_kernel_stop(event, judgement.watchdog.take()) {
            alerts.raise(alert).await;
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
            let record = alerts.stamp(record);
            let _ = self.audit.send(Arc::new(record)).await;
        }
        if let Some(alert) = judgement.alert {
            if let Some((rule, verdict)) = alert.control.decision
                && matches!(verdict, "blocked" | "killed" | "refused" | "audit")
            {
                self.metrics.decision(rule, verdict);
            }
            // A repeat of a blocked act inside its window is counted, not re-reported.
            let repeats = owner.and_then(|o| state.units.get_mut(&*o.name));
            let first = !judgement.violation
                || repeats.is_none_or(|u| u.repeats.first(&alert, Instant::now()));
            if first {
                alerts.raise(alert).await;
                if judgement.violation {
                    self.violation(state, owner).await;
                }
            }
        } else if judgement.violation {
            self.violation(state, owner).await;
        }
        if let Some(target) = judgement.undo_mount {
            self.undo_mount(target, owner);
        }
        if let Some(pid) = judgement.kill_pid {
            crate::actions::escape::kill_escaped(pid);
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
        owner: Option<&Owner>,
    ) -> anyhow::Result<()> {
        if let Some(format) = self.args.events {
            let current = owner.and_then(|o| o.unit.container.borrow().clone());
            let (name, id) = match (&current, owner) {
                (Some(c), _) => (c.name.as_str(), c.id.as_str()),
                (None, Some(o)) => (&*o.name, ""),
                (None, None) => ("", ""),
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

    /// A violation costs the trust of the container it happened in; below the threshold,
    /// that container is quarantined (frozen), the others keep running.
    async fn violation(&mut self, state: &mut LoopState, owner: Option<&Owner>) {
        let Some(owner) = owner else {
            tracing::warn!("policy violation outside every guarded container: no trust to charge");
            return;
        };
        let Some(unit) = state.units.get_mut(&*owner.name) else {
            return;
        };
        let entered = unit.trust.violation();
        let trust = unit.trust;
        tracing::warn!(
            "policy violation in `{}`: trust score now {}",
            owner.name,
            trust.score
        );
        // Still quarantined, but running again (unpaused without a trust reset): a new
        // running-to-frozen transition, unless the last announcement is still in flight.
        let running = owner
            .unit
            .container
            .borrow()
            .as_ref()
            .is_some_and(|c| !c.paused);
        let settled = unit
            .quarantined_at
            .is_none_or(|at| at.elapsed() >= QUARANTINE_SETTLE);
        let again = !entered && trust.requarantine() && running && settled;
        if entered || again {
            unit.quarantined_at = Some(Instant::now());
        }
        self.publish_trust(state);
        if entered || again {
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
            owner.unit.alerts.raise(alert).await;
        }
    }

    fn undo_mount(&self, target: String, owner: Option<&Owner>) {
        let Some(owner) = owner else {
            return;
        };
        let Some(container) = owner.unit.container.borrow().clone() else {
            return;
        };
        let alerts = owner.unit.alerts.clone();
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
