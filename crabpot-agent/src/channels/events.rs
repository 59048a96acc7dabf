//! Channel 6: Docker lifecycle events of the container (received by the container tracker,
//! which re-subscribes with backoff when the daemon goes away).
use std::time::Instant;

use tokio::sync::broadcast::error::RecvError;

use crate::{
    actions::pause::STOP_GRACE,
    channels::WatchContext,
    model::alert::{Alert, AlertSource, Severity},
    sources::container::{DockerEvent, is_stop_request},
};

/// What the events channel remembers between events: a stop (or kill) requested through
/// Docker's API, whose `die` is then expected rather than an attack.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    /// The signal of the Docker `kill` event that asked this run to end, and when Docker
    /// last sent one.
    requested: Option<(String, Instant)>,
}

impl Lifecycle {
    /// The stop request still in force: Docker sends SIGKILL once its stop timeout (10 s by
    /// default) ends, so a request older than the grace period without a `die` was survived.
    fn pending_signal(&self) -> Option<String> {
        self.requested
            .as_ref()
            .filter(|(_, at)| at.elapsed() < STOP_GRACE)
            .map(|(signal, _)| signal.clone())
    }

    /// A stop, restart, kill or `rm -f` through Docker: one WARNING per request; Docker's
    /// own escalation to SIGKILL after the stop timeout is part of the same request.
    fn stop_requested(&mut self, signal: String) -> (Severity, String) {
        let earlier = self.pending_signal();
        self.requested = Some((signal.clone(), Instant::now()));
        match earlier {
            Some(_) => (
                Severity::Info,
                format!("Docker escalated the stop to signal {signal}"),
            ),
            None => (
                Severity::Warning,
                format!("Container stopped through Docker, signal {signal}"),
            ),
        }
    }

    /// A `die`: expected after a stop request, an alert without one.
    fn died(&mut self, exit_code: String) -> (Severity, String) {
        let requested = self.pending_signal();
        self.requested = None;
        match requested {
            Some(signal) => (
                Severity::Info,
                format!(
                    "Container exited after a Docker stop request (signal {signal}, exit code \
                     {exit_code})"
                ),
            ),
            None => (
                Severity::Critical,
                format!(
                    "Container died (exit code {exit_code}) with no stop requested through Docker"
                ),
            ),
        }
    }

    /// The alert a lifecycle event deserves, if any. Docker emits `kill` (with the signal)
    /// for every stop, restart, kill and `rm -f` made through its API, before `die`; a `die`
    /// with no such request before it (the process crashed, or something inside the
    /// container signalled PID 1) stays CRITICAL.
    pub(crate) fn alert_for(&mut self, event: &DockerEvent) -> Option<Alert> {
        let attribute = |key: &str| event.attributes.get(key).cloned().unwrap_or_default();
        let (severity, message) = match event.action.as_str() {
            "kill" if is_stop_request(event) => self.stop_requested(attribute("signal")),
            "kill" => (
                Severity::Warning,
                format!(
                    "Signal {} sent to the container through Docker",
                    attribute("signal")
                ),
            ),
            "die" => self.died(attribute("exitCode")),
            "oom" => (
                Severity::Critical,
                "Container ran out of memory (OOM killer)".to_string(),
            ),
            "restart" => (
                Severity::Info,
                "Container restarted through Docker".to_string(),
            ),
            "start" => {
                self.requested = None;
                (Severity::Info, "Container started".to_string())
            }
            _ => return None,
        };
        let mut alert = Alert::new(severity, AlertSource::Events, message)
            .rule("container_event")
            .with("event", event.action.clone())
            .with("event_time_nano", event.time_nano);
        for (key, value) in &event.attributes {
            if matches!(key.as_str(), "exitCode" | "signal" | "image") {
                alert = alert.with(key, value.clone());
            }
        }
        Some(alert)
    }
}

pub(crate) async fn run(ctx: WatchContext) {
    let mut events = ctx.docker_events.subscribe();
    let mut lifecycle = Lifecycle::default();
    loop {
        match events.recv().await {
            Ok(event) => {
                if let Some(alert) = lifecycle.alert_for(&event) {
                    ctx.alerts.raise(alert).await;
                }
                ctx.ticks.record("events");
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!("events channel fell behind: {missed} Docker events skipped")
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn event(action: &str, attributes: &[(&str, &str)]) -> DockerEvent {
        DockerEvent {
            action: action.into(),
            time_nano: 1,
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        }
    }

    fn severity(lifecycle: &mut Lifecycle, action: &str, attrs: &[(&str, &str)]) -> Severity {
        lifecycle
            .alert_for(&event(action, attrs))
            .map(|a| a.severity)
            .unwrap_or(Severity::Info)
    }

    #[test]
    fn a_stop_through_docker_is_one_warning_and_its_die_is_info() {
        let mut life = Lifecycle::default();
        let kill = life
            .alert_for(&event("kill", &[("signal", "15")]))
            .expect("kill");
        assert_eq!(kill.severity, Severity::Warning);
        assert_eq!(kill.message, "Container stopped through Docker, signal 15");
        assert_eq!(
            severity(&mut life, "kill", &[("signal", "9")]),
            Severity::Info
        );
        let die = life
            .alert_for(&event("die", &[("exitCode", "137")]))
            .expect("die");
        assert_eq!(die.severity, Severity::Info);
        assert!(die.message.contains("137"));
        assert_eq!(severity(&mut life, "start", &[]), Severity::Info);
        assert_eq!(severity(&mut life, "restart", &[]), Severity::Info);
    }

    #[test]
    fn a_die_nobody_asked_docker_for_is_critical() {
        let mut life = Lifecycle::default();
        // `docker exec c kill 1`: no Docker kill event before the die.
        let die = life
            .alert_for(&event("die", &[("exitCode", "143")]))
            .expect("die");
        assert_eq!(die.severity, Severity::Critical);
        assert_eq!(severity(&mut life, "oom", &[]), Severity::Critical);
        // A non-stopping signal is reported, and its die (if any) is not excused.
        assert_eq!(
            severity(&mut life, "kill", &[("signal", "1")]),
            Severity::Warning
        );
        assert_eq!(
            severity(&mut life, "die", &[("exitCode", "129")]),
            Severity::Critical
        );
        // A stop request of an earlier run does not excuse a crash after a start.
        assert_eq!(
            severity(&mut life, "kill", &[("signal", "15")]),
            Severity::Warning
        );
        assert_eq!(severity(&mut life, "start", &[]), Severity::Info);
        assert_eq!(
            severity(&mut life, "die", &[("exitCode", "1")]),
            Severity::Critical
        );
        assert!(life.alert_for(&event("exec_start: sh", &[])).is_none());
        assert!(life.alert_for(&event("pause", &[])).is_none());
    }
}
