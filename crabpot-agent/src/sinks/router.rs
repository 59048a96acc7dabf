//! The alert router: every alert to every sink (and the metrics); CRITICALs (except the
//! `no_pause` ones: posture findings), and any quarantine, also to the auto-pause action.
//! Between the two, de-duplication (sinks/dedup.rs): the pause decision and the metrics see
//! every alert, the sinks see the first of identical ones at once and the rest folded into
//! one record at the end of the window. On stop it takes no new alert but delivers every
//! queued one (and every open fold).
use std::sync::Arc;

use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
    time::Instant,
};

use crate::model::container::Guarded;
use crate::model::sender::AlertSender;
use crate::{
    actions,
    model::alert::{Alert, Severity},
    sinks::{
        alert_log::{self, AlertLogWriter},
        alertmanager, dashboard,
        dedup::Dedup,
        delivery::Delivery,
        dispatcher::Dispatcher,
        metrics::{Metrics, monotonic_ns},
        rate_limit::{limited, sleep_until},
        terminal, toast, webhook,
    },
};

pub struct AlertRouter {
    pub metrics: Arc<Metrics>,
    pub auto_pause: bool,
    pub docker: bollard::Docker,
    /// Every guarded container: a CRITICAL freezes the one it names.
    pub guarded: watch::Receiver<Guarded>,
    /// Agent-wide records (the auto-pause announces through each container's own sender).
    pub alerts: AlertSender,
    pub log_writer: AlertLogWriter,
    /// Raise Windows toasts (WSL2).
    pub toasts: bool,
    pub webhook: Option<(String, webhook::WebhookFormat)>,
    pub dashboard: dashboard::Hub,
    /// Pending decisions: auto-pause adds one per freeze, the router one per newly
    /// blocked destination.
    pub decisions: crate::policy::decisions::DecisionStore,
    /// De-duplication, Alertmanager, filters and rate limits of the remote sinks.
    pub delivery: Delivery,
}

/// The first block of a destination becomes a pending decision; the alert carries its id
/// and the commands that answer it.
fn ask_about_destination(
    decisions: &crate::policy::decisions::DecisionStore,
    alert: Alert,
) -> Alert {
    if alert.control.decision != Some(("connect", "blocked")) {
        return alert;
    }
    match decisions.create_for_destination(&alert) {
        Some(decision) => {
            let id = decision.id;
            let decide = format!("sudo crabpot approve {id} --always  |  sudo crabpot deny {id}");
            alert.with("decision_id", id).with("decide", decide)
        }
        None => alert,
    }
}

/// What the routing loop holds.
struct Stage {
    metrics: Arc<Metrics>,
    auto_pause: bool,
    pause_tx: mpsc::Sender<Alert>,
    dedup: Dedup,
    dispatcher: Dispatcher,
    decisions: crate::policy::decisions::DecisionStore,
    learn: Option<Arc<crate::policy::learn::Recorder>>,
}

impl AlertRouter {
    pub fn start(
        self,
        incoming: mpsc::Receiver<Alert>,
        stop: oneshot::Receiver<()>,
    ) -> JoinHandle<()> {
        self.start_learning(incoming, stop, None)
    }

    /// [`Self::start`]; in learn mode every alert that would raise something is first
    /// recorded and written as INFO (so nothing freezes).
    pub(crate) fn start_learning(
        self,
        incoming: mpsc::Receiver<Alert>,
        stop: oneshot::Receiver<()>,
        learn: Option<Arc<crate::policy::learn::Recorder>>,
    ) -> JoinHandle<()> {
        let (pause_tx, pause_rx) = mpsc::channel(1024);
        let pauser = tokio::spawn(actions::pause::run(
            self.docker.clone(),
            pause_rx,
            self.guarded.clone(),
            self.decisions.clone(),
        ));
        let stage = Stage {
            metrics: self.metrics.clone(),
            auto_pause: self.auto_pause,
            pause_tx,
            dedup: Dedup::new(self.delivery.dedup_window),
            decisions: self.decisions.clone(),
            learn,
            dispatcher: self.sinks(),
        };
        tokio::spawn(async move {
            stage.run(incoming, stop).await;
            pauser.abort();
        })
    }

    /// One queue and task per sink; the remote and noisy ones filtered and rate-limited.
    fn sinks(self) -> Dispatcher {
        let AlertRouter {
            metrics,
            guarded,
            alerts: _,
            log_writer,
            toasts,
            webhook,
            dashboard,
            delivery,
            ..
        } = self;
        let mut dispatcher = Dispatcher::counting(metrics.clone());
        dispatcher.add("terminal", false, terminal::run);
        dispatcher.add("alerts-log", true, move |rx| {
            alert_log::writer::run(log_writer, rx)
        });
        dispatcher.add("dashboard", false, move |rx| {
            dashboard::hub::run_alert_sink(dashboard, rx)
        });
        let critical = |alert: &Alert| alert.severity == Severity::Critical;
        if toasts {
            let stage = limited(
                "toast",
                delivery.toast_rate,
                critical,
                metrics.clone(),
                toast::run,
            );
            dispatcher.add("toast", false, stage);
        }
        if let Some((url, format)) = webhook {
            let failures = metrics.clone();
            let min = delivery.webhook_min_severity;
            let stage = limited(
                "webhook",
                delivery.webhook_rate,
                move |alert: &Alert| alert.severity >= min,
                metrics.clone(),
                move |rx| webhook::run(url, format, rx, failures),
            );
            dispatcher.add("webhook", false, stage);
        }
        if let Some(sink) = delivery.alertmanager {
            let failures = metrics.clone();
            let min = sink.min_severity;
            let stage = limited(
                "alertmanager",
                sink.rate,
                move |alert: &Alert| alert.severity >= min || alertmanager::holds(alert),
                metrics.clone(),
                move |rx| alertmanager::run(sink.url, rx, guarded, failures),
            );
            dispatcher.add("alertmanager", false, stage);
        }
        dispatcher
    }
}

impl Stage {
    async fn run(mut self, mut incoming: mpsc::Receiver<Alert>, mut stop: oneshot::Receiver<()>) {
        let mut stopping = false;
        loop {
            let due = self.dedup.next_end();
            let next = tokio::select! {
                next = incoming.recv() => next,
                _ = &mut stop, if !stopping => {
                    stopping = true;
                    incoming.close();
                    continue;
                }
                _ = sleep_until(due) => {
                    for folded in self.dedup.close_due(Instant::now()) {
                        self.dispatcher.dispatch(folded).await;
                    }
                    continue;
                }
            };
            let Some(alert) = next else { break };
            self.route(alert).await;
        }
        for folded in self.dedup.close_all() {
            self.dispatcher.dispatch(folded).await;
        }
        self.dispatcher.close().await;
    }

    async fn route(&mut self, alert: Alert) {
        // Container output is hostile: no alert is bigger than a bound.
        let mut alert = alert.bounded();
        if let Some(recorder) = &self.learn {
            alert = recorder.observe(alert);
        }
        let alert = ask_about_destination(&self.decisions, alert);
        self.metrics.alert(&alert, monotonic_ns());
        let quarantine = alert.control.quarantine;
        // Posture findings (`no_pause`) are about the launch, not behaviour: no freeze.
        let pausing = alert.severity == Severity::Critical && !alert.control.no_pause;
        if (self.auto_pause && pausing) || quarantine {
            // Full only if pausing is already far behind: it is in hand.
            let _ = self.pause_tx.try_send(alert.clone());
        }
        // The pause decision above saw it first: de-duplication never delays a freeze.
        for alert in self.dedup.admit(alert, Instant::now()) {
            self.dispatcher.dispatch(alert).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::alert::AlertSource;

    fn shell(pid: u32) -> Alert {
        Alert::new(Severity::Critical, AlertSource::Processes, "shell")
            .rule("process_denylisted")
            .with("executable", "sh")
            .with("pid", pid)
            .for_container("box", "id")
    }

    #[tokio::test]
    async fn every_alert_reaches_the_pause_decision_and_the_sinks_get_first_and_fold() {
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let mut dispatcher = Dispatcher::default();
        dispatcher.add("file", true, move |mut rx| async move {
            while let Some(alert) = rx.recv().await {
                let _ = seen_tx.send(alert);
            }
        });
        let (pause_tx, mut pause_rx) = mpsc::channel(16);
        let stage = Stage {
            metrics: Arc::new(Metrics::new()),
            auto_pause: true,
            pause_tx,
            dedup: Dedup::new(Duration::from_millis(200)),
            dispatcher,
            decisions: Default::default(),
            learn: None,
        };
        let (tx, rx) = mpsc::channel(16);
        let (_stop_tx, stop) = oneshot::channel();
        let task = tokio::spawn(stage.run(rx, stop));
        for pid in 1..=4 {
            tx.send(shell(pid)).await.expect("send");
        }
        let first = seen.recv().await.expect("the first at once");
        assert_eq!(
            (first.count, &first.details["pid"]),
            (1, &serde_json::json!(1))
        );
        for pid in 1..=4 {
            let paused = pause_rx
                .recv()
                .await
                .expect("every alert to the pause decision");
            assert_eq!(paused.details["pid"], pid);
        }
        // The fold comes when the window ends, without another alert.
        let folded = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .expect("the fold at window end")
            .expect("a record");
        assert_eq!(folded.count, 3);
        drop(tx);
        task.await.expect("router ends");
        assert!(seen.recv().await.is_none(), "nothing else");
    }
}
