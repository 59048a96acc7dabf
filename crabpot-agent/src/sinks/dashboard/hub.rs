//! The dashboard's live feed: recent history for clients that connect late, and a broadcast
//! of every new message. A client that cannot keep up is dropped; the agent never waits.
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use axum::extract::ws::Utf8Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};

use crate::model::container::GuardedContainer;
use crate::{channels::stats::StatsSample, model::alert::Alert, policy::trust::TrustScore};

/// About 10 minutes of 2-second samples.
const STATS_HISTORY: usize = 300;
const ALERT_HISTORY: usize = 200;
/// Messages a client may fall behind by before it is dropped: under a burst of 10 000 alerts
/// a second, 0.4 s of slack for a reader that keeps up but is not scheduled at once (256
/// dropped fast clients in the load test). The messages are shared, about 2 MB at most.
pub(crate) const CLIENT_BACKLOG: usize = 4096;

#[derive(Default)]
struct History {
    alerts: VecDeque<Value>,
    stats: VecDeque<Value>,
    state: Value,
}

#[derive(Clone)]
pub struct Hub {
    history: Arc<Mutex<History>>,
    /// Shared bytes: a message is serialised once, not copied per client.
    live: broadcast::Sender<Utf8Bytes>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            history: Arc::default(),
            live: broadcast::channel(CLIENT_BACKLOG).0,
        }
    }
}

fn push(queue: &mut VecDeque<Value>, item: Value, cap: usize) {
    if queue.len() == cap {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl Hub {
    fn publish(&self, message: Value) {
        // No receiver is fine: nobody is watching.
        let _ = self.live.send(Utf8Bytes::from(message.to_string()));
    }

    pub fn alert(&self, alert: &Alert) {
        let value = serde_json::to_value(alert).unwrap_or(Value::Null);
        if let Ok(mut history) = self.history.lock() {
            push(&mut history.alerts, value.clone(), ALERT_HISTORY);
        }
        self.publish(json!({"type": "alert", "alert": value}));
    }

    pub fn stats(&self, sample: &StatsSample) {
        let value =
            json!({"t": chrono::Utc::now().timestamp_millis() as f64 / 1000.0, "sample": sample});
        if let Ok(mut history) = self.history.lock() {
            push(&mut history.stats, value.clone(), STATS_HISTORY);
        }
        self.publish(json!({"type": "stats", "stats": value}));
    }

    pub fn state(&self, state: Value) {
        if let Ok(mut history) = self.history.lock() {
            history.state = state.clone();
        }
        self.publish(json!({"type": "state", "state": state}));
    }

    /// Dashboard clients connected now (each holds one subscription).
    pub fn clients(&self) -> usize {
        self.live.receiver_count()
    }

    /// The latest `last` alerts (oldest first), the latest stats sample and the state, for
    /// clients that poll (`crabpot top`, `GET /api/recent`).
    pub fn recent(&self, last: usize) -> Value {
        match self.history.lock() {
            Ok(history) => {
                let skip = history.alerts.len().saturating_sub(last);
                json!({
                    "alerts": history.alerts.iter().skip(skip).collect::<Vec<_>>(),
                    "stats": history.stats.back(),
                    "state": history.state,
                })
            }
            Err(_) => json!({"alerts": [], "stats": null, "state": null}),
        }
    }

    /// The first message for a new client, and its subscription to what follows.
    pub fn join(&self) -> (String, broadcast::Receiver<Utf8Bytes>) {
        let receiver = self.live.subscribe();
        let hello = match self.history.lock() {
            Ok(history) => json!({
                "type": "hello",
                "alerts": history.alerts,
                "stats": history.stats,
                "state": history.state,
            }),
            Err(_) => json!({"type": "hello"}),
        };
        (hello.to_string(), receiver)
    }
}

/// The dashboard as an alert sink (lossy: the dispatcher drops and counts if it lags).
pub(crate) async fn run_alert_sink(hub: Hub, mut alerts: mpsc::Receiver<Arc<Alert>>) {
    while let Some(alert) = alerts.recv().await {
        hub.alert(&alert);
    }
}

/// Feed stats samples and container state changes into the hub.
pub(crate) async fn follow_state(
    hub: Hub,
    mut stats: watch::Receiver<Option<StatsSample>>,
    mut container: watch::Receiver<Option<GuardedContainer>>,
    mut trust: watch::Receiver<TrustScore>,
    bpf_mode: Value,
    counters: impl Fn() -> Value + Send + 'static,
) {
    loop {
        let state = {
            let c = container.borrow_and_update().clone();
            let t = *trust.borrow_and_update();
            json!({
                "container": c.as_ref().map(|c| c.name.clone()),
                "state": match &c {
                    None => "absent",
                    Some(c) if c.paused && t.score < t.quarantine_below => "quarantined",
                    Some(c) if c.paused => "paused",
                    Some(_) => "running",
                },
                "trust_score": t.score,
                "violations": t.violations,
                "bpf": bpf_mode,
                "counters": counters(),
            })
        };
        hub.state(state);
        tokio::select! {
            changed = stats.changed() => {
                if changed.is_err() { return; }
                let sample = stats.borrow_and_update().clone();
                if let Some(sample) = sample {
                    hub.stats(&sample);
                }
            }
            changed = container.changed() => if changed.is_err() { return },
            changed = trust.changed() => if changed.is_err() { return },
        }
    }
}
