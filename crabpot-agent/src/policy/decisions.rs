//! Pending decisions: every auto-pause and every first block of a new destination waits for
//! an operator's answer (`crabpot approve ID [--always]`, `crabpot deny ID [--keep-frozen]`,
//! the dashboard's buttons, or the configured timeout). This is the store: stable ids, one
//! JSON file written atomically (temp + rename) so a decision survives an agent restart;
//! decided ones stay as history so a second answer is a clear "stale" error. Carrying a
//! decision out is the action side's (actions/decide.rs).
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};

use crate::model::alert::Alert;

/// Decided decisions kept as history beyond the pending ones (oldest dropped first).
const HISTORY: usize = 500;

/// Where the decisions are kept: the agent's state directory (systemd's StateDirectory=,
/// else `~/.crabpot` of the effective user), beside the control token.
pub(crate) fn state_file() -> PathBuf {
    crate::paths::state_dir().join("decisions.json")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Pending,
    Approved,
    Denied,
    /// Its container was removed before anyone answered: nothing is left to decide.
    Expired,
}

/// What is being decided about, as the alert behind it told it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Subject {
    /// `exec` (a process), `destination` (a blocked connect) or `alert` (anything else).
    pub kind: String,
    pub rule: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// The parent's executable name (the lineage's first ancestor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The DNS-learned name of the address, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The kernel stopped the process at its exec (SIGSTOP): approve continues it.
    #[serde(default)]
    pub kernel_stopped: bool,
    /// The container was frozen for it: approve and deny resume it.
    #[serde(default)]
    pub paused: bool,
}

impl Subject {
    /// What an alert says of its act: the process, the destination, the rule.
    pub(crate) fn of_alert(alert: &Alert, paused: bool) -> Self {
        let d = &alert.details;
        let text = |key: &str| d.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let argv = d.get("argv").and_then(|v| v.as_array()).map(|items| {
            items
                .iter()
                .map(|i| i.as_str().unwrap_or_default().to_string())
                .collect()
        });
        // The nearest ancestor that is not runc: `runc exec` exits around the exec, so
        // whether it is still the parent is a race (the shim is there either way).
        let parent = d
            .get("lineage")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
            .filter_map(|a| a.get("name").and_then(|n| n.as_str()))
            .find(|name| !name.starts_with("runc"))
            .map(str::to_string);
        let executable = text("filename");
        let address = text("address");
        let kind = if executable.is_some() {
            "exec"
        } else if address.is_some() {
            "destination"
        } else {
            "alert"
        };
        Subject {
            kind: kind.into(),
            rule: alert.rule_name().to_string(),
            message: alert.message.clone(),
            pid: d
                .get("pid")
                .and_then(|v| v.as_u64())
                .and_then(|p| p.try_into().ok()),
            executable,
            argv,
            parent,
            address,
            port: d
                .get("port")
                .and_then(|v| v.as_u64())
                .and_then(|p| p.try_into().ok()),
            host: text("dns_name").or_else(|| text("host")),
            kernel_stopped: text("kernel_action").as_deref() == Some("stopped"),
            paused,
        }
    }

    /// One line for `crabpot pending` and the dashboard.
    pub(crate) fn describe(&self) -> String {
        match self.kind.as_str() {
            "exec" => format!(
                "exec of {} {:?} (pid {})",
                self.executable.as_deref().unwrap_or("?"),
                self.argv.clone().unwrap_or_default(),
                self.pid.map_or("?".into(), |p| p.to_string())
            ),
            "destination" => format!(
                "connect to {}{} port {}",
                self.address.as_deref().unwrap_or("?"),
                self.host
                    .as_deref()
                    .map_or(String::new(), |h| format!(" ({h})")),
                self.port.unwrap_or(0)
            ),
            _ => self.message.clone(),
        }
    }
}

/// How a decision was answered: what, by whom, from where, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Answer {
    /// `approve`, `approve --always`, `deny`, `deny --keep-frozen`.
    pub action: String,
    pub who: String,
    pub from: String,
    pub at: String,
    /// What was written or done beyond the action (the managed entry, the timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Decision {
    pub id: String,
    pub container: String,
    pub container_id: String,
    /// RFC 3339, and seconds since the epoch for the timeout.
    pub created: String,
    pub created_unix: u64,
    pub status: Status,
    pub subject: Subject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    /// The alert that raised it.
    #[serde(default)]
    pub alert_id: String,
}

/// Why a decision cannot be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecideError {
    #[error("no decision `{0}`: list the pending ones with `crabpot pending`")]
    Unknown(String),
    #[error("{}", stale_text(.0))]
    Stale(Box<Decision>),
}

fn stale_text(d: &Decision) -> String {
    match &d.answer {
        Some(a) => format!(
            "decision {} is stale: already {} ({}) by {} from {} at {}{}",
            d.id,
            status_word(d.status),
            a.action,
            a.who,
            a.from,
            a.at,
            a.note
                .as_deref()
                .map_or(String::new(), |n| format!("; {n}"))
        ),
        None => format!(
            "decision {} is stale: already {}",
            d.id,
            status_word(d.status)
        ),
    }
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Approved => "approved",
        Status::Denied => "denied",
        Status::Expired => "expired",
    }
}

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    #[serde(default)]
    next: u64,
    #[serde(default)]
    decisions: Vec<Decision>,
}

/// The decisions, shared by auto-pause, the router, the control API and the timeout.
/// The default keeps them in memory only (no file).
#[derive(Clone, Default)]
pub struct DecisionStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    path: Option<PathBuf>,
    state: StateFile,
}

impl DecisionStore {
    /// The store kept in `path`; what is there already is loaded (a file that cannot be
    /// read as decisions is kept aside as `.bad` and the store starts empty).
    pub(crate) fn open(path: PathBuf) -> Self {
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                let aside = path.with_extension("json.bad");
                tracing::error!(
                    "{} is not a decisions file ({error}); kept as {} and starting empty",
                    path.display(),
                    aside.display()
                );
                let _ = std::fs::rename(&path, &aside);
                StateFile::default()
            }),
            Err(_) => StateFile::default(),
        };
        DecisionStore {
            inner: Arc::new(Mutex::new(Inner {
                path: Some(path),
                state,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding it leaves plain data behind: still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new pending decision about `subject` for the container of `alert`.
    pub(crate) fn create(&self, alert: &Alert, subject: Subject) -> Decision {
        let mut inner = self.lock();
        let now = chrono::Utc::now();
        let secs = u64::try_from(now.timestamp()).unwrap_or(0);
        inner.state.next += 1;
        let decision = Decision {
            id: format!("d-{secs}-{}", inner.state.next),
            container: alert.container.clone(),
            container_id: alert.container_id.clone(),
            created: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            created_unix: secs,
            status: Status::Pending,
            subject,
            answer: None,
            alert_id: alert.id.clone(),
        };
        inner.state.decisions.push(decision.clone());
        inner.save();
        decision
    }

    /// A new decision for a blocked destination, unless this container instance already
    /// has one (pending or decided) for it: only the first block of a destination asks.
    pub(crate) fn create_for_destination(&self, alert: &Alert) -> Option<Decision> {
        let subject = Subject::of_alert(alert, false);
        let seen = self.lock().state.decisions.iter().any(|d| {
            d.container_id == alert.container_id
                && d.subject.kind == "destination"
                && d.subject.address == subject.address
                && d.subject.port == subject.port
        });
        (!seen && subject.address.is_some()).then(|| self.create(alert, subject))
    }

    /// The pending decisions, oldest first.
    pub(crate) fn pending(&self) -> Vec<Decision> {
        let inner = self.lock();
        let mut list: Vec<Decision> = inner
            .state
            .decisions
            .iter()
            .filter(|d| d.status == Status::Pending)
            .cloned()
            .collect();
        list.sort_by_key(|d| (d.created_unix, d.id.clone()));
        list
    }

    /// Answer the pending decision `id` (once: a second answer is stale).
    pub(crate) fn decide(
        &self,
        id: &str,
        status: Status,
        answer: Answer,
    ) -> Result<Decision, DecideError> {
        let mut inner = self.lock();
        let Some(decision) = inner.state.decisions.iter_mut().find(|d| d.id == id) else {
            return Err(DecideError::Unknown(id.to_string()));
        };
        if decision.status != Status::Pending {
            return Err(DecideError::Stale(Box::new(decision.clone())));
        }
        decision.status = status;
        decision.answer = Some(answer);
        let decided = decision.clone();
        inner.trim();
        inner.save();
        Ok(decided)
    }

    /// Add a note to a decided decision (what carrying it out wrote or failed at).
    pub(crate) fn note(&self, id: &str, note: String) {
        let mut inner = self.lock();
        if let Some(answer) = inner
            .state
            .decisions
            .iter_mut()
            .find(|d| d.id == id)
            .and_then(|d| d.answer.as_mut())
        {
            answer.note = Some(note);
        }
        inner.save();
    }
}

impl Inner {
    /// Keep every pending decision and the newest decided ones.
    fn trim(&mut self) {
        let decided = self
            .state
            .decisions
            .iter()
            .filter(|d| d.status != Status::Pending)
            .count();
        let mut drop = decided.saturating_sub(HISTORY);
        self.state.decisions.retain(|d| {
            if drop > 0 && d.status != Status::Pending {
                drop -= 1;
                return false;
            }
            true
        });
    }

    /// Write the file atomically; a failure is logged (the decision still stands in memory).
    fn save(&self) {
        let Some(path) = &self.path else { return };
        if let Err(error) = write_atomically(path, &self.state) {
            tracing::error!("cannot write the decisions {}: {error}", path.display());
        }
    }
}

fn write_atomically(path: &Path, state: &StateFile) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    let temp = path.with_extension(format!("json.tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&temp)?;
    std::io::Write::write_all(&mut file, &bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::{AlertSource, Severity};
    use serde_json::json;

    fn shell_alert() -> Alert {
        Alert::new(Severity::Critical, AlertSource::Processes, "shell")
            .with("pid", 4242)
            .with("filename", "/bin/sh")
            .with("argv", json!(["sh", "-c", "id"]))
            .with(
                "lineage",
                json!([{"pid": 2, "name": "runc"}, {"pid": 1, "name": "containerd-shim"}]),
            )
            .with("kernel_action", "stopped")
            .for_container("c", "abc")
    }

    fn answer(action: &str) -> Answer {
        Answer {
            action: action.into(),
            who: "uid 1000 (cli)".into(),
            from: "127.0.0.1:1".into(),
            at: "2026-12-02T00:00:00Z".into(),
            note: None,
        }
    }

    fn temp_file(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "crabpot-decisions-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        dir.join("state/decisions.json")
    }

    #[test]
    fn subjects_of_exec_and_destination_alerts() {
        let subject = Subject::of_alert(&shell_alert(), true);
        assert_eq!(subject.kind, "exec");
        assert_eq!(subject.pid, Some(4242));
        assert_eq!(
            subject.parent.as_deref(),
            Some("containerd-shim"),
            "runc skipped"
        );
        assert!(subject.kernel_stopped && subject.paused);
        assert_eq!(
            subject.argv,
            Some(vec!["sh".into(), "-c".into(), "id".into()])
        );
        let connect = Alert::new(Severity::Warning, AlertSource::Network, "blocked")
            .with("address", "192.0.2.7")
            .with("port", 443)
            .with("dns_name", "api.example.com");
        let subject = Subject::of_alert(&connect, false);
        assert_eq!(subject.kind, "destination");
        assert_eq!(subject.host.as_deref(), Some("api.example.com"));
        assert_eq!(subject.port, Some(443));
    }

    #[test]
    fn ids_are_unique_and_sortable_and_survive_a_restart() {
        let path = temp_file("restart");
        let store = DecisionStore::open(path.clone());
        let alert = shell_alert();
        let first = store.create(&alert, Subject::of_alert(&alert, true));
        let second = store.create(&alert, Subject::of_alert(&alert, true));
        assert!(first.id.starts_with("d-") && first.id != second.id);
        assert!(first.id.len() < 20, "short enough to type: {}", first.id);
        let pending: Vec<String> = store.pending().into_iter().map(|d| d.id).collect();
        assert_eq!(pending, vec![first.id.clone(), second.id.clone()]);

        // A new agent with the same state file.
        let again = DecisionStore::open(path.clone());
        assert_eq!(again.pending().len(), 2);
        let third = again.create(&alert, Subject::of_alert(&alert, true));
        assert!(
            third.id != first.id && third.id != second.id,
            "{}",
            third.id
        );
        assert!(
            again
                .decide(&first.id, Status::Approved, answer("approve"))
                .is_ok()
        );
        assert_eq!(DecisionStore::open(path.clone()).pending().len(), 2);
        let _ = std::fs::remove_dir_all(path.parent().and_then(Path::parent).expect("dir"));
    }

    #[test]
    fn a_second_answer_is_stale_and_an_unknown_id_says_how_to_list() {
        let store = DecisionStore::default();
        let alert = shell_alert();
        let decision = store.create(&alert, Subject::of_alert(&alert, true));
        let decided = store
            .decide(&decision.id, Status::Denied, answer("deny"))
            .expect("first answer");
        assert_eq!(decided.status, Status::Denied);
        let stale = store
            .decide(&decision.id, Status::Approved, answer("approve"))
            .expect_err("second answer")
            .to_string();
        assert!(
            stale.contains("stale: already denied (deny) by uid 1000"),
            "{stale}"
        );
        assert!(stale.contains("at 2026-12-02T00:00:00Z"), "{stale}");
        let unknown = store
            .decide("d-1-999", Status::Approved, answer("approve"))
            .expect_err("unknown")
            .to_string();
        assert!(unknown.contains("crabpot pending"), "{unknown}");
        assert!(store.pending().is_empty());
    }

    #[test]
    fn a_destination_asks_once_per_container_instance() {
        let store = DecisionStore::default();
        let blocked = Alert::new(Severity::Warning, AlertSource::Network, "blocked")
            .with("address", "192.0.2.7")
            .with("port", 443)
            .for_container("c", "abc");
        assert!(store.create_for_destination(&blocked).is_some());
        assert!(store.create_for_destination(&blocked).is_none(), "not new");
        let other_port = blocked.clone().with("port", 80);
        assert!(store.create_for_destination(&other_port).is_some());
        let other_instance = blocked.clone().for_container("c", "def");
        assert!(store.create_for_destination(&other_instance).is_some());
    }

    #[test]
    fn history_is_bounded_and_pending_ones_are_never_dropped() {
        let store = DecisionStore::default();
        let alert = shell_alert();
        let keep = store.create(&alert, Subject::of_alert(&alert, true));
        for _ in 0..HISTORY + 3 {
            let d = store.create(&alert, Subject::of_alert(&alert, true));
            store
                .decide(&d.id, Status::Approved, answer("approve"))
                .expect("decide");
        }
        assert_eq!(store.lock().state.decisions.len(), HISTORY + 1);
        assert_eq!(store.pending().first().map(|d| d.id.clone()), Some(keep.id));
    }
}
