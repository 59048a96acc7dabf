//! The alert router: every alert to every sink (and the metrics); CRITICALs (except the
//! `no_pause` ones: posture findings), and any quarantine, also to the auto-pause action. On
//! stop it takes no new alert but delivers every queued one.
use std::sync::Arc;

use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use crate::model::container::GuardedContainer;
use crate::model::sender::AlertSender;
use crate::{
    actions,
    model::alert::{Alert, Severity},
    sinks::{
        alert_log::{self, AlertLogWriter},
        dashboard,
        dispatcher::Dispatcher,
        metrics::{Metrics, monotonic_ns},
        terminal, toast, webhook,
    },
};

pub struct AlertRouter {
    pub metrics: Arc<Metrics>,
    pub auto_pause: bool,
    pub docker: bollard::Docker,
    pub guarded: watch::Receiver<Option<GuardedContainer>>,
    /// For the auto-pause action's own announcements.
    pub alerts: AlertSender,
    pub log_writer: AlertLogWriter,
    /// Raise Windows toasts (WSL2).
    pub toasts: bool,
    pub webhook: Option<(String, webhook::WebhookFormat)>,
    pub dashboard: dashboard::Hub,
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
        mut incoming: mpsc::Receiver<Alert>,
        mut stop: oneshot::Receiver<()>,
        learn: Option<Arc<crate::policy::learn::Recorder>>,
    ) -> JoinHandle<()> {
        let AlertRouter {
            metrics,
            auto_pause,
            docker,
            guarded,
            alerts,
            log_writer,
            toasts,
            webhook,
            dashboard,
        } = self;
        let mut dispatcher = Dispatcher::counting(metrics.clone());
        dispatcher.add("terminal", false, terminal::run);
        dispatcher.add("alerts-log", true, move |rx| {
            alert_log::writer::run(log_writer, rx)
        });
        dispatcher.add("dashboard", false, move |rx| {
            dashboard::hub::run_alert_sink(dashboard, rx)
        });
        if toasts {
            dispatcher.add("toast", false, toast::run);
        }
        if let Some((url, format)) = webhook {
            let failures = metrics.clone();
            dispatcher.add("webhook", false, move |rx| {
                webhook::run(url, format, rx, failures)
            });
        }
        let (pause_tx, pause_rx) = mpsc::channel(1024);
        let pauser = tokio::spawn(actions::pause::run(docker, pause_rx, guarded, alerts));
        tokio::spawn(async move {
            let mut stopping = false;
            loop {
                let next = if stopping {
                    incoming.recv().await
                } else {
                    tokio::select! {
                        next = incoming.recv() => next,
                        _ = &mut stop => {
                            stopping = true;
                            incoming.close();
                            continue;
                        }
                    }
                };
                let Some(alert) = next else { break };
                // Container output is hostile: no alert is bigger than a bound.
                let mut alert = alert.bounded();
                if let Some(recorder) = &learn {
                    alert = recorder.observe(alert);
                }
                metrics.alert(&alert, monotonic_ns());
                let quarantine = alert.control.quarantine;
                // Posture findings (`no_pause`) are about the launch, not behaviour: no freeze.
                let pausing = alert.severity == Severity::Critical && !alert.control.no_pause;
                if (auto_pause && pausing) || quarantine {
                    // Full only if pausing is already far behind: it is in hand.
                    let _ = pause_tx.try_send(alert.clone());
                }
                dispatcher.dispatch(alert).await;
            }
            pauser.abort();
            dispatcher.close().await;
        })
    }
}
