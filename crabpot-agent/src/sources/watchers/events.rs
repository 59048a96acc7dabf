//! Channel 6: Docker lifecycle events of the container (received by the container tracker,
//! which re-subscribes with backoff when the daemon goes away).
use tokio::sync::broadcast::error::RecvError;

use crate::{
    alert::{Alert, AlertSource, Severity},
    sources::{container::DockerEvent, watchers::WatchContext},
};

/// The alert a lifecycle event deserves, if any.
pub fn alert_for(event: &DockerEvent) -> Option<Alert> {
    let attribute = |key: &str| event.attributes.get(key).cloned().unwrap_or_default();
    let (severity, message) = match event.action.as_str() {
        "die" => (
            Severity::Critical,
            format!("Container died (exit code {})", attribute("exitCode")),
        ),
        "oom" => (
            Severity::Critical,
            "Container ran out of memory (OOM killer)".to_string(),
        ),
        "kill" => (
            Severity::Critical,
            format!("Container killed (signal {})", attribute("signal")),
        ),
        "restart" => (Severity::Warning, "Container restarted".to_string()),
        "start" => (Severity::Info, "Container started".to_string()),
        _ => return None,
    };
    let mut alert = Alert::new(severity, AlertSource::Events, message)
        .with("event", event.action.clone())
        .with("event_time_nano", event.time_nano);
    for (key, value) in &event.attributes {
        if matches!(key.as_str(), "exitCode" | "signal" | "image") {
            alert = alert.with(key, value.clone());
        }
    }
    Some(alert)
}

pub async fn run(ctx: WatchContext) {
    let mut events = ctx.docker_events.subscribe();
    loop {
        match events.recv().await {
            Ok(event) => {
                if let Some(alert) = alert_for(&event) {
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

    #[test]
    fn lifecycle_severities_follow_the_guide() {
        let die = alert_for(&event("die", &[("exitCode", "137")])).expect("die");
        assert_eq!(die.severity, Severity::Critical);
        assert!(die.message.contains("137"));
        assert_eq!(
            alert_for(&event("oom", &[])).map(|a| a.severity),
            Some(Severity::Critical)
        );
        assert_eq!(
            alert_for(&event("kill", &[("signal", "9")])).map(|a| a.severity),
            Some(Severity::Critical)
        );
        assert_eq!(
            alert_for(&event("restart", &[])).map(|a| a.severity),
            Some(Severity::Warning)
        );
        assert_eq!(
            alert_for(&event("start", &[])).map(|a| a.severity),
            Some(Severity::Info)
        );
        assert!(alert_for(&event("exec_start: sh", &[])).is_none());
        assert!(alert_for(&event("pause", &[])).is_none());
    }
}
