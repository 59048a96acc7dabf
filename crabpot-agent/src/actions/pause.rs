//! Auto-pause: every CRITICAL freezes the container (`docker pause`, the cgroup freezer),
//! then one follow-up CRITICAL announces it. Alerts that arrive while it is already frozen
//! do nothing more.
//!
//! Through Docker, not by writing the cgroup freezer ourselves: tried, a direct freeze taken
//! at the exec tracepoint catches `runc init` mid-exec, the v1 freezer stays in FREEZING and
//! Docker's own pause and exec calls hang behind it. Docker's pause lands in ~15–35 ms here
//! (`cargo xtask bench`), inside the 50 ms target.
use std::time::Duration;

use bollard::{Docker, errors::Error as DockerError};
use tokio::sync::{mpsc, watch};

use crate::model::alert::{Alert, AlertSource, Severity};
use crate::model::container::GuardedContainer;
use crate::model::sender::AlertSender;
use crate::policy::decisions::{DecisionStore, Subject};

/// How long after Docker was asked to stop a run it counts as stopping. Longer than
/// Docker's default 10 s stop timeout (after which it sends SIGKILL); bounded so a
/// `docker kill -s TERM` that the process survives does not disable freezing for good.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(60);

/// Whether an alert should freeze the container.
pub(crate) fn should_pause(alert: &Alert, container: &GuardedContainer) -> bool {
    if alert.severity != Severity::Critical || alert.control.follow_up || alert.control.no_pause {
        return false;
    }
    if container.paused {
        return false;
    }
    // Docker is stopping, restarting or removing it: a pause now would only hold the
    // shutdown until Docker's timeout and end it with SIGKILL.
    if container
        .stopping_since
        .is_some_and(|since| since.elapsed() < STOP_GRACE)
    {
        return false;
    }
    // A lifecycle event (die, kill, oom) from before the current run started says nothing
    // about this run: `docker restart` emits `die` and then starts the container again.
    if let (Some(event_nanos), Some(started_at)) = (
        alert
            .details
            .get("event_time_nano")
            .and_then(|v| v.as_i64()),
        container.started_at,
    ) && started_at
        .timestamp_nanos_opt()
        .is_some_and(|started| started > event_nanos)
    {
        return false;
    }
    true
}

/// Whether Docker reports the container running (and not removed); true when Docker
/// cannot be asked, so a real failure is still reported.
async fn still_running(docker: &Docker, id: &str) -> bool {
    match docker
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
    {
        Ok(found) => found.state.and_then(|state| state.running).unwrap_or(true),
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => false,
        Err(_) => true,
    }
}

pub(crate) async fn run(
    docker: Docker,
    mut criticals: mpsc::Receiver<Alert>,
    container: watch::Receiver<Option<GuardedContainer>>,
    alerts: AlertSender,
    decisions: DecisionStore,
) {
    while let Some(trigger) = criticals.recv().await {
        let Some(current) = container.borrow().clone() else {
            continue;
        };
        if !should_pause(&trigger, &current) {
            continue;
        }
        // Dead already (`docker kill`, a crash): there is nothing left to freeze.
        if !std::path::Path::new(&format!("/proc/{}", current.pid)).exists() {
            tracing::debug!("`{}` is not running: no pause needed", current.name);
            continue;
        }
        match docker.pause_container(&current.id).await {
            Ok(()) => {
                tracing::warn!("container `{}` auto-paused", current.name);
                // Every auto-pause waits for an operator's decision (persisted).
                let decision = decisions.create(&trigger, Subject::of_alert(&trigger, true));
                let id = decision.id;
                let decide = format!("sudo crabpot approve {id}  |  sudo crabpot deny {id}");
                let alert = Alert::new(
                    Severity::Critical,
                    AlertSource::Policy,
                    format!(
                        "Container auto-paused after: {} (pending decision {id}: {decide}; or \
                         resume with `crabpot resume`)",
                        trigger.message
                    ),
                )
                .rule("auto_pause")
                .follow_up()
                .with("trigger_source", trigger.source.as_str())
                .with("trigger_message", trigger.message.clone())
                .with("decision_id", id.clone())
                .with("decide", decide);
                alerts.raise(alert).await;
            }
            // 409: already paused (by us a moment ago, or by someone) or not running.
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            // It died while Docker was freezing it (runc reports a failure then): done.
            Err(error) if !still_running(&docker, &current.id).await => {
                tracing::debug!("`{}` stopped while being paused ({error})", current.name);
            }
            Err(error) => {
                tracing::error!("auto-pause of `{}` failed: {error}", current.name);
                let alert = Alert::new(
                    Severity::Warning,
                    AlertSource::Policy,
                    format!("Auto-pause failed: {error}"),
                )
                .rule("auto_pause_failed")
                .follow_up()
                .with("trigger_message", trigger.message.clone());
                alerts.raise(alert).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::container::ProcessCgroup;

    fn container(paused: bool, started_secs: i64) -> GuardedContainer {
        GuardedContainer {
            name: "c".into(),
            id: "id".into(),
            image: String::new(),
            pid: 1,
            cgroup: ProcessCgroup {
                directory: "/x".into(),
                id: 1,
                relative: "/x".into(),
            },
            paused,
            started_at: chrono::DateTime::from_timestamp(started_secs, 0),
            command: vec!["/bin/httpd".into()],
            health_probe: None,
            stopping_since: None,
        }
    }

    #[test]
    fn criticals_pause_once_and_stale_lifecycle_events_do_not() {
        let shell = Alert::new(Severity::Critical, AlertSource::Processes, "sh");
        assert!(should_pause(&shell, &container(false, 100)));
        assert!(
            !should_pause(&shell, &container(true, 100)),
            "already frozen"
        );
        let warning = Alert::new(Severity::Warning, AlertSource::Network, "x");
        assert!(!should_pause(&warning, &container(false, 100)));
        let follow_up = shell.clone().follow_up();
        assert!(!should_pause(&follow_up, &container(false, 100)));
        let posture = Alert::new(Severity::Critical, AlertSource::Posture, "docker.sock");
        assert!(!should_pause(&posture.no_pause(), &container(false, 100)));
        let died_before_restart = Alert::new(Severity::Critical, AlertSource::Events, "die")
            .with("event_time_nano", 50_000_000_000i64);
        assert!(!should_pause(&died_before_restart, &container(false, 100)));
        let killed_now = Alert::new(Severity::Critical, AlertSource::Events, "kill")
            .with("event_time_nano", 150_000_000_000i64);
        assert!(should_pause(&killed_now, &container(false, 100)));
        let mut stopping = container(false, 100);
        stopping.stopping_since = Some(std::time::Instant::now());
        assert!(!should_pause(&shell, &stopping), "Docker is stopping it");
        stopping.stopping_since = std::time::Instant::now().checked_sub(STOP_GRACE);
        assert!(should_pause(&shell, &stopping), "the stop request expired");
    }
}
