//! Native Alertmanager sink (`--alertmanager URL`): each alert is posted to
//! `/api/v2/alerts` with labels `alertname` (the rule), `severity`, `container`, `host`,
//! `source` and annotations `message`, `process`, `alert_id`. Alerts about an event expire
//! by themselves (`endsAt` a few minutes ahead); the alert of a pause or a quarantine stays
//! active (re-posted while it lasts) until the container is seen running again — resumed
//! through `crabpot resume`, the dashboard or Docker — and is then resolved (`endsAt` now).
use std::{sync::Arc, time::Duration};

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

use crate::{
    model::{
        alert::Alert,
        container::{Guarded, unit_named},
        record::process_of,
    },
    sinks::{metrics::Metrics, terminal_text::escape_for_terminal, webhook},
};

/// How long an event-like alert stays active in Alertmanager.
const EVENT_TTL: Duration = Duration::from_secs(300);
/// How far ahead a held (pause) alert's `endsAt` is set; it is re-posted well before.
const HOLD_TTL: Duration = Duration::from_secs(600);
const KEEPALIVE: Duration = Duration::from_secs(120);

/// Whether an alert stands for the container being frozen: it stays until a resume.
pub(crate) fn holds(alert: &Alert) -> bool {
    alert.control.quarantine || (alert.control.follow_up && alert.rule_name() == "auto_pause")
}

fn rfc3339(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn ends_in(ttl: Duration) -> String {
    rfc3339(Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default())
}

/// "pid 123 /bin/sh sh -c id": the process behind the alert, when known.
fn process_text(alert: &Alert) -> Option<String> {
    let process = process_of(&alert.details)?;
    let mut parts = vec![format!("pid {}", process["pid"])];
    if let Some(exe) = process.get("exe").and_then(Value::as_str) {
        parts.push(exe.to_string());
    }
    if let Some(argv) = process.get("argv").and_then(Value::as_array) {
        parts.extend(argv.iter().filter_map(Value::as_str).map(str::to_string));
    }
    Some(parts.join(" "))
}

/// The Alertmanager alert (API v2 `postableAlert`) for one of ours.
pub(crate) fn postable(alert: &Alert, ends_at: &str) -> Value {
    let mut labels = Map::new();
    let mut label = |key: &str, value: &str| {
        // Alertmanager treats an empty label as absent; leave it out.
        if !value.is_empty() {
            labels.insert(key.into(), value.into());
        }
    };
    label("alertname", alert.rule_name());
    label("severity", &alert.severity.as_str().to_ascii_lowercase());
    label("container", &alert.container);
    label("host", &alert.host);
    label("source", alert.source.as_str());
    let mut annotations = Map::new();
    annotations.insert("message".into(), alert.message.clone().into());
    annotations.insert("alert_id".into(), alert.id.clone().into());
    annotations.insert("count".into(), alert.count.to_string().into());
    if let Some(process) = process_text(alert) {
        annotations.insert("process".into(), process.into());
    }
    json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": alert.time,
        "endsAt": ends_at,
    })
}

/// How long a held alert may wait to see its container paused: a resume faster than the
/// state's update (Docker events) still resolves it.
const SEEN_PAUSED_GRACE: Duration = Duration::from_secs(5);
/// How often the held alerts' containers are looked at.
const RESOLVE_CHECK: Duration = Duration::from_secs(1);

/// One pause or quarantine alert still active in Alertmanager.
struct HeldAlert {
    container: String,
    container_id: String,
    posted: Value,
    /// Its container was seen paused since it was posted.
    seen_paused: bool,
    since: std::time::Instant,
}

/// The pause and quarantine alerts still active in Alertmanager, of every container.
#[derive(Default)]
struct Held {
    alerts: Vec<HeldAlert>,
}

impl Held {
    fn add(&mut self, alert: &Alert, posted: Value, now: std::time::Instant) {
        // One per label set: Alertmanager identifies an alert by its labels.
        self.alerts
            .retain(|a| a.posted["labels"] != posted["labels"]);
        self.alerts.push(HeldAlert {
            container: alert.container.clone(),
            container_id: alert.container_id.clone(),
            posted,
            seen_paused: false,
            since: now,
        });
    }

    /// Look at each held alert's container (`paused`: `Some(paused)`, `None` when no longer
    /// guarded): the alerts to resolve, because their container runs again or is gone.
    fn observe(
        &mut self,
        paused: impl Fn(&str, &str) -> Option<bool>,
        now: std::time::Instant,
    ) -> Option<Vec<Value>> {
        let mut resolved = Vec::new();
        let ends = rfc3339(Utc::now());
        self.alerts.retain_mut(|held| {
            let state = paused(&held.container, &held.container_id);
            if state == Some(true) {
                held.seen_paused = true;
                return true;
            }
            let settled = held.seen_paused || now.duration_since(held.since) >= SEEN_PAUSED_GRACE;
            if !settled {
                return true;
            }
            let mut posted = held.posted.take();
            posted["endsAt"] = ends.clone().into();
            resolved.push(posted);
            false
        });
        (!resolved.is_empty()).then_some(resolved)
    }

    fn refreshed(&mut self) -> Vec<Value> {
        let ends = ends_in(HOLD_TTL);
        for held in &mut self.alerts {
            held.posted["endsAt"] = ends.clone().into();
        }
        self.alerts.iter().map(|h| h.posted.clone()).collect()
    }
}

/// Whether the guarded container `name`/`id` is paused; `None` when it is not guarded.
fn paused_in(guarded: &Guarded, name: &str, id: &str) -> Option<bool> {
    let (_, unit) = unit_named(guarded, name, id)?;
    let container = unit.container.borrow();
    Some(container.as_ref().is_some_and(|c| c.paused))
}

struct Poster {
    client: reqwest::Client,
    endpoint: String,
    metrics: Arc<Metrics>,
}

impl Poster {
    async fn post(&self, alerts: Vec<Value>, what: &str) {
        if alerts.is_empty() {
            return;
        }
        let body = Value::Array(alerts);
        if let Err(error) = webhook::deliver(&self.client, &self.endpoint, &body).await {
            self.metrics.sink_failure("alertmanager");
            tracing::error!(
                "alertmanager: {} not delivered after {} attempts ({error})",
                escape_for_terminal(what),
                webhook::ATTEMPTS
            );
        }
    }
}

/// The sink. `guarded` tells when a paused container runs again.
pub(crate) async fn run(
    url: String,
    mut alerts: mpsc::Receiver<Arc<Alert>>,
    guarded: watch::Receiver<Guarded>,
    metrics: Arc<Metrics>,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!("alertmanager disabled: cannot build an HTTP client: {error}");
            return;
        }
    };
    let poster = Poster {
        client,
        endpoint: format!("{}/api/v2/alerts", url.trim_end_matches('/')),
        metrics,
    };
    let mut held = Held::default();
    let mut check = tokio::time::interval(RESOLVE_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = alerts.recv() => {
                let Some(alert) = next else { break };
                let ttl = if holds(&alert) { HOLD_TTL } else { EVENT_TTL };
                let posted = postable(&alert, &ends_in(ttl));
                if holds(&alert) {
                    held.add(&alert, posted.clone(), std::time::Instant::now());
                }
                poster.post(vec![posted], &alert.message).await;
            }
            _ = check.tick() => {
                let resolved = held.observe(
                    |name, id| paused_in(&guarded.borrow(), name, id),
                    std::time::Instant::now(),
                );
                if let Some(resolved) = resolved {
                    tracing::info!("alertmanager: container running again, pause alert resolved");
                    poster.post(resolved, "the resolution of the pause alert").await;
                }
            }
            _ = keepalive.tick() => {
                poster.post(held.refreshed(), "the pause alert (kept active)").await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::{AlertSource, Severity};

    #[test]
    fn labels_and_annotations() {
        let alert = Alert::new(Severity::Critical, AlertSource::Processes, "shell")
            .rule("process_denylisted")
            .with("pid", 123)
            .with("filename", "/bin/sh")
            .with("argv", json!(["sh", "-c", "id"]))
            .for_container("box", "abc");
        let posted = postable(&alert, "2030-01-01T00:00:00Z");
        let labels = &posted["labels"];
        assert_eq!(labels["alertname"], "process_denylisted");
        assert_eq!(labels["severity"], "critical");
        assert_eq!(labels["container"], "box");
        assert_eq!(labels["source"], "processes");
        assert_eq!(labels["host"], alert.host.as_str());
        assert_eq!(posted["annotations"]["process"], "pid 123 /bin/sh sh -c id");
        assert_eq!(posted["annotations"]["alert_id"], alert.id.as_str());
        assert_eq!(posted["endsAt"], "2030-01-01T00:00:00Z");
        let bare = Alert::new(Severity::Info, AlertSource::Logs, "x");
        let posted = postable(&bare, "t");
        assert!(posted["labels"].get("container").is_none());
        assert!(posted["annotations"].get("process").is_none());
    }

    #[test]
    fn the_pause_alert_is_held_until_its_container_runs_again() {
        let pause = |container: &str| {
            Alert::new(Severity::Critical, AlertSource::Policy, "paused")
                .rule("auto_pause")
                .follow_up()
                .for_container(container, container)
        };
        assert!(holds(&pause("a")));
        assert!(!holds(&Alert::new(
            Severity::Critical,
            AlertSource::Processes,
            "sh"
        )));
        let start = std::time::Instant::now();
        let mut held = Held::default();
        held.add(&pause("a"), postable(&pause("a"), "later"), start);
        held.add(&pause("a"), postable(&pause("a"), "later"), start);
        held.add(&pause("b"), postable(&pause("b"), "later"), start);
        assert_eq!(held.alerts.len(), 2, "one per label set");
        // `a` not yet seen paused (the state lags): kept within the grace.
        let running = |_: &str, _: &str| Some(false);
        assert!(held.observe(running, start).is_none(), "never paused yet");
        let only_a_paused = |name: &str, _: &str| Some(name == "a");
        let resolved = held
            .observe(only_a_paused, start + SEEN_PAUSED_GRACE)
            .expect("b runs, past the grace");
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0]["labels"]["container"], "b");
        assert_ne!(resolved[0]["endsAt"], "later");
        assert_eq!(held.refreshed().len(), 1, "a kept active while paused");
        let resolved = held.observe(running, start).expect("a resumed");
        assert_eq!(resolved[0]["labels"]["container"], "a");
        assert!(held.refreshed().is_empty());
        // A container no longer guarded resolves its alert too.
        held.add(&pause("c"), postable(&pause("c"), "later"), start);
        let gone = |_: &str, _: &str| None;
        assert!(held.observe(gone, start + SEEN_PAUSED_GRACE).is_some());
    }
}
