//! Fans every alert out to the sinks. Each sink has its own bounded queue and task, so a
//! slow sink never holds up the watchers: a lossy sink (terminal, dashboard) that lags loses
//! alerts it could not take and says how many; a lossless sink (the alerts log, the record
//! of truth) is waited for.
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::mpsc;

use crate::{model::alert::Alert, sinks::metrics::Metrics};

pub(crate) struct SinkHandle {
    name: &'static str,
    tx: mpsc::Sender<Arc<Alert>>,
    lossless: bool,
    dropped: AtomicU64,
}

#[derive(Default)]
pub(crate) struct Dispatcher {
    sinks: Vec<SinkHandle>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Where lost alerts are counted (`crabpot_sink_failures_total`).
    metrics: Option<Arc<Metrics>>,
}

/// Queue length of each sink.
pub(crate) const SINK_QUEUE: usize = 4096;

impl Dispatcher {
    /// A dispatcher that counts every alert a sink loses in `metrics`.
    pub(crate) fn counting(metrics: Arc<Metrics>) -> Self {
        Dispatcher {
            metrics: Some(metrics),
            ..Default::default()
        }
    }

    fn lost(&self, sink: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.sink_failure(sink);
        }
    }

    /// Add a sink: `run` consumes its queue on its own task.
    pub(crate) fn add<F, Fut>(&mut self, name: &'static str, lossless: bool, run: F)
    where
        F: FnOnce(mpsc::Receiver<Arc<Alert>>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        if let Some(metrics) = &self.metrics {
            metrics.sink(name);
        }
        let (tx, rx) = mpsc::channel(SINK_QUEUE);
        self.tasks.push(tokio::spawn(run(rx)));
        self.sinks.push(SinkHandle {
            name,
            tx,
            lossless,
            dropped: AtomicU64::new(0),
        });
    }

    pub(crate) async fn dispatch(&self, alert: Alert) {
        let alert = Arc::new(alert);
        for sink in &self.sinks {
            if sink.lossless {
                if sink.tx.send(alert.clone()).await.is_err() {
                    tracing::error!("alert sink `{}` has stopped", sink.name);
                    self.lost(sink.name);
                }
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = sink.tx.try_send(alert.clone()) {
                let dropped = sink.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                self.lost(sink.name);
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        "alert sink `{}` is lagging: {dropped} alerts dropped for it so far",
                        sink.name
                    );
                }
            }
        }
    }

    /// Close every queue and wait until each sink has handled what it was given.
    pub(crate) async fn close(self) {
        drop(self.sinks);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Alerts each sink has dropped (the test reads it; the agent logs each power of two).
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> Vec<(&'static str, u64)> {
        self.sinks
            .iter()
            .map(|s| (s.name, s.dropped.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::{AlertSource, Severity};

    #[tokio::test]
    async fn a_stuck_lossy_sink_drops_and_counts_while_others_get_everything() {
        let mut dispatcher = Dispatcher::default();
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
        dispatcher.add("stuck", false, |_rx| async move {
            // Never reads: keep the receiver alive forever.
            let _keep = _rx;
            std::future::pending::<()>().await;
        });
        dispatcher.add("file", true, move |mut rx| async move {
            while let Some(alert) = rx.recv().await {
                let _ = seen_tx.send(alert);
            }
        });
        let total = SINK_QUEUE + 100;
        for i in 0..total {
            dispatcher
                .dispatch(Alert::new(
                    Severity::Info,
                    AlertSource::Logs,
                    format!("{i}"),
                ))
                .await;
        }
        let mut received = 0;
        while received < total {
            seen_rx.recv().await.expect("lossless sink receives");
            received += 1;
        }
        assert_eq!(dispatcher.dropped(), vec![("stuck", 100), ("file", 0)]);
    }
}
