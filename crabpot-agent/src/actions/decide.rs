//! Carrying out an operator's answer to a pending decision (policy/decisions.rs holds
//! them): approve resumes the container and continues the process the kernel stopped (with
//! `--always` it first writes the narrowest exception or allow entry and reloads); deny
//! kills the offending process tree and resumes, or keeps the container frozen. Every
//! answer is audited (audit.log and an INFO alert: who, what, when, from where). The
//! configured timeout answers an unanswered one, or says that it stays frozen.
use std::{collections::HashSet, path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    actions::approved_file,
    config::OnTimeout,
    model::{
        alert::{Alert, AlertSource, Severity},
        container::GuardedContainer,
        sender::AlertSender,
    },
    policy::{
        decisions::{Answer, DecideError, Decision, DecisionStore, Status},
        trust::{ResetReason, TrustReset},
    },
};

/// How often the pending decisions' containers are looked up in Docker.
const EXPIRY_CHECK: Duration = Duration::from_secs(5);

/// What the desk needs to carry decisions out.
pub(crate) struct DeskParts {
    pub store: DecisionStore,
    pub docker: bollard::Docker,
    pub guarded: watch::Receiver<Option<GuardedContainer>>,
    pub alerts: AlertSender,
    pub audit: mpsc::Sender<Arc<Alert>>,
    pub trust_resets: mpsc::Sender<TrustReset>,
    pub reload: mpsc::Sender<()>,
    pub config_dir: PathBuf,
    /// When the pending decisions' containers were last looked up.
    pub last_expiry_check: std::sync::Mutex<Option<std::time::Instant>>,
}

/// The decisions and how to carry them out; the default (no agent parts) refuses all.
#[derive(Clone, Default)]
pub struct DecisionDesk(Option<Arc<DeskParts>>);

/// One answer: what, with which option, by whom, from where.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub id: String,
    pub approve: bool,
    /// approve: write the narrowest exception; deny: keep the container frozen.
    pub option: bool,
    pub who: String,
    pub from: String,
}

impl Request {
    fn action(&self) -> &'static str {
        match (self.approve, self.option) {
            (true, false) => "approve",
            (true, true) => "approve --always",
            (false, false) => "deny",
            (false, true) => "deny --keep-frozen",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DeskError {
    #[error("decisions are not available in this agent")]
    Unavailable,
    #[error(transparent)]
    Decide(#[from] DecideError),
    /// `--always` with nothing narrow to write: still pending.
    #[error("{0}")]
    NoEntry(String),
}

impl DecisionDesk {
    pub(crate) fn new(parts: DeskParts) -> Self {
        DecisionDesk(Some(Arc::new(parts)))
    }

    /// The pending decisions, after expiring those whose container was removed (checked
    /// at most every [`EXPIRY_CHECK`]: `crabpot top` lists them twice a second).
    pub(crate) async fn pending(&self) -> Result<Vec<Decision>, DeskError> {
        let parts = self.parts()?;
        if parts.expiry_due() {
            parts.expire_gone().await;
        }
        Ok(parts.store.pending())
    }

    fn parts(&self) -> Result<&Arc<DeskParts>, DeskError> {
        self.0.as_ref().ok_or(DeskError::Unavailable)
    }

    /// Answer and carry out; the text for the operator.
    pub(crate) async fn decide(&self, request: Request) -> Result<String, DeskError> {
        let parts = self.parts()?;
        // `--always` needs an entry to write: checked before the decision is taken.
        let entry = if request.approve && request.option {
            let decision = parts
                .store
                .pending()
                .into_iter()
                .find(|d| d.id == request.id);
            match decision {
                Some(d) => Some(approved_file::narrowest(&d).map_err(DeskError::NoEntry)?),
                None => None,
            }
        } else {
            None
        };
        let answer = Answer {
            action: request.action().into(),
            who: request.who.clone(),
            from: request.from.clone(),
            at: crate::model::alert::now_rfc3339(),
            note: None,
        };
        let status = if request.approve {
            Status::Approved
        } else {
            Status::Denied
        };
        let decision = parts.store.decide(&request.id, status, answer)?;
        let mut done = Vec::new();
        if let Some(entry) = entry {
            done.push(parts.write_entry(&entry));
        }
        if request.approve {
            parts.approve(&decision, &request, &mut done).await;
        } else {
            parts.deny(&decision, request.option, &mut done).await;
        }
        let summary = done.join("; ");
        parts.store.note(&decision.id, summary.clone());
        parts.audit(&decision, &request, &summary).await;
        Ok(format!(
            "decision {} {}: {summary}\n",
            decision.id,
            request.action()
        ))
    }

    /// Until `stop`: answer (or announce) pending decisions older than `timeout`.
    pub(crate) async fn run_timeouts(
        self,
        timeout: Duration,
        on_timeout: OnTimeout,
        stop: CancellationToken,
    ) {
        let Ok(parts) = self.parts().cloned() else {
            return;
        };
        let mut announced: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1).min(timeout));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
            for decision in parts.store.pending() {
                if decision.created_unix + timeout.as_secs() > now
                    || announced.contains(&decision.id)
                {
                    continue;
                }
                announced.insert(decision.id.clone());
                self.time_out(&parts, decision, timeout, on_timeout).await;
            }
        }
    }

    async fn time_out(
        &self,
        parts: &DeskParts,
        decision: Decision,
        timeout: Duration,
        on_timeout: OnTimeout,
    ) {
        let why = format!(
            "unanswered after {} s (decisions.on_timeout: {})",
            timeout.as_secs(),
            on_timeout.as_str()
        );
        let text = match on_timeout {
            OnTimeout::StayFrozen => format!(
                "it stays pending{}; decide with `sudo crabpot approve {}` or `sudo crabpot \
                 deny {}`",
                if decision.subject.paused {
                    " and the container frozen"
                } else {
                    ""
                },
                decision.id,
                decision.id
            ),
            OnTimeout::Deny | OnTimeout::Approve => {
                let request = Request {
                    id: decision.id.clone(),
                    approve: on_timeout == OnTimeout::Approve,
                    option: false,
                    who: "timeout".into(),
                    from: "the agent".into(),
                };
                match self.decide(request).await {
                    Ok(text) => text.trim().to_string(),
                    Err(error) => format!("could not be decided: {error}"),
                }
            }
        };
        let alert = Alert::new(
            Severity::Warning,
            AlertSource::Policy,
            format!("Decision {} {why}: {text}", decision.id),
        )
        .rule("decision_timeout")
        .for_container(&decision.container, &decision.container_id)
        .with("decision_id", decision.id.clone())
        .with("on_timeout", on_timeout.as_str());
        parts.alerts.raise(alert).await;
    }
}

impl DeskParts {
    fn write_entry(&self, entry: &approved_file::Entry) -> String {
        let path = approved_file::managed_path(&self.config_dir);
        match approved_file::append(&path, entry) {
            Ok(()) => {
                // A reload already queued covers this one too.
                let _ = self.reload.try_send(());
                format!(
                    "wrote {} to {} and reloaded the configuration",
                    entry.describe(),
                    path.display()
                )
            }
            Err(error) => format!("could not write the exception: {error}"),
        }
    }

    async fn approve(&self, decision: &Decision, request: &Request, done: &mut Vec<String>) {
        if decision.subject.paused {
            done.push(self.resume(decision).await);
            // Reviewed and approved: trust back to full, as `crabpot resume` does.
            let (reply, _answer) = tokio::sync::oneshot::channel();
            let reset = TrustReset {
                reason: ResetReason::Resume,
                from: format!(
                    "{} from {} (approve {})",
                    request.who, request.from, decision.id
                ),
                container: Some(if decision.container_id.is_empty() {
                    decision.container.clone()
                } else {
                    decision.container_id.clone()
                }),
                reply,
            };
            let _ = self.trust_resets.send(reset).await;
        }
        if let Some(pid) = decision
            .subject
            .pid
            .filter(|_| decision.subject.kernel_stopped)
        {
            if in_container(pid, &decision.container_id) {
                let outcome = crate::actions::kernel_stop::continue_stopped(pid);
                done.push(format!("process {pid} {outcome}"));
            } else {
                done.push(format!("process {pid} is gone"));
            }
        }
        if done.is_empty() {
            done.push("recorded (nothing was frozen)".into());
        }
    }

    async fn deny(&self, decision: &Decision, keep_frozen: bool, done: &mut Vec<String>) {
        match decision.subject.pid {
            Some(pid) if in_container(pid, &decision.container_id) => {
                let killed = kill_tree(pid);
                done.push(format!(
                    "killed process {pid} and its {} descendant(s)",
                    killed - 1
                ));
            }
            Some(pid) => done.push(format!("process {pid} is gone")),
            None => done.push("no process to kill".into()),
        }
        if decision.subject.paused {
            if keep_frozen {
                done.push("the container stays frozen".into());
                if let Some(pid) = decision.subject.pid {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    if alive(pid) {
                        // The cgroup v1 freezer holds even SIGKILL until the thaw.
                        done.push(format!(
                            "process {pid} dies when the container is resumed (the freezer \
                             holds the SIGKILL until then)"
                        ));
                    }
                }
            } else {
                done.push(self.resume(decision).await);
            }
        }
    }

    /// Unfreeze the decision's container (the guarded one when it names none).
    async fn resume(&self, decision: &Decision) -> String {
        let id = if decision.container_id.is_empty() {
            self.guarded.borrow().as_ref().map(|c| c.id.clone())
        } else {
            Some(decision.container_id.clone())
        };
        let Some(id) = id else {
            return "no container to resume".into();
        };
        match self.docker.unpause_container(&id).await {
            Ok(()) => "container resumed".into(),
            Err(error) if error.to_string().contains("is not paused") => {
                "container was already running".into()
            }
            Err(error) => format!("could not resume the container: {error}"),
        }
    }

    /// audit.log and an INFO alert: who, what, when, from where.
    /// Whether the containers of pending decisions are due a look (and note it as done).
    fn expiry_due(&self) -> bool {
        let mut last = self
            .last_expiry_check
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let due = last.is_none_or(|at| now.duration_since(at) >= EXPIRY_CHECK);
        if due {
            *last = Some(now);
        }
        due
    }

    /// Expire the pending decisions whose container Docker no longer has (removed, or
    /// re-created under a new id): audited like an answer, so nothing vanishes silently.
    async fn expire_gone(&self) {
        for decision in self.store.pending() {
            if decision.container_id.is_empty() || self.container_exists(&decision).await {
                continue;
            }
            let answer = Answer {
                action: "expire".into(),
                who: "crabpot-agent".into(),
                from: "Docker: the container is gone".into(),
                at: crate::model::alert::now_rfc3339(),
                note: None,
            };
            let Ok(expired) = self.store.decide(&decision.id, Status::Expired, answer) else {
                continue;
            };
            let alert = Alert::new(
                Severity::Info,
                AlertSource::Policy,
                format!(
                    "Decision {} expired: container `{}` was removed before anyone answered ({})",
                    expired.id,
                    expired.container,
                    expired.subject.describe()
                ),
            )
            .rule("decision")
            .for_container(&expired.container, &expired.container_id)
            .with("decision_id", expired.id.clone())
            .with("operator_action", "expire");
            let _ = self
                .audit
                .send(Arc::new(self.alerts.stamp(alert.clone())))
                .await;
            self.alerts.raise(alert).await;
        }
    }

    /// Whether Docker still has the decision's container; a Docker error counts as yes
    /// (never expire on a hiccup).
    async fn container_exists(&self, decision: &Decision) -> bool {
        let options = None::<bollard::query_parameters::InspectContainerOptions>;
        let found = self
            .docker
            .inspect_container(&decision.container_id, options)
            .await;
        !matches!(
            found,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })
        )
    }

    async fn audit(&self, decision: &Decision, request: &Request, summary: &str) {
        let alert = Alert::new(
            Severity::Info,
            AlertSource::Policy,
            format!(
                "Decision {} answered `{}` by {} from {}: {} — {summary}",
                decision.id,
                request.action(),
                request.who,
                request.from,
                decision.subject.describe()
            ),
        )
        .rule("decision")
        .for_container(&decision.container, &decision.container_id)
        .with("decision_id", decision.id.clone())
        .with("operator_action", request.action())
        .with("who", request.who.clone())
        .with("from", request.from.clone())
        .with("outcome", summary.to_string())
        .with(
            "subject",
            serde_json::to_value(&decision.subject).unwrap_or_default(),
        );
        let _ = self
            .audit
            .send(Arc::new(self.alerts.stamp(alert.clone())))
            .await;
        self.alerts.raise(alert).await;
    }
}

/// Whether `pid` is still a process of the container `container_id` (a pid reused by
/// another process after a restart is never signalled).
fn in_container(pid: u32, container_id: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
        Ok(cgroup) => container_id.is_empty() || cgroup.contains(container_id),
        Err(_) => false,
    }
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// SIGKILL `pid` and every descendant; how many were signalled.
fn kill_tree(pid: u32) -> usize {
    let mut tree = vec![pid];
    let mut at = 0;
    let parents = parent_table();
    while at < tree.len() {
        let parent = tree[at];
        tree.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(child, _)| *child),
        );
        at += 1;
    }
    for member in &tree {
        if let Ok(member) = libc::pid_t::try_from(*member) {
            // SAFETY: kill(2) with a plain pid and signal number has no memory effects.
            unsafe { libc::kill(member, libc::SIGKILL) };
        }
    }
    tree.len()
}

/// (pid, parent pid) of every process, from /proc/*/stat.
fn parent_table() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may hold spaces and parentheses: fields follow the last ')'.
            let rest = stat.rsplit_once(')')?.1;
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}
