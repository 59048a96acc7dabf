//! Per-sink rate limits for the remote and noisy sinks (webhook, Alertmanager, toasts): at
//! most N alerts per period reach the sink; the rest are held back, counted
//! (`crabpot_sink_suppressed_total`), and announced to that sink by one explicit record
//! ("N alerts suppressed for sink X in the last M s") when the period ends. The alerts log
//! is never limited. Control alerts (an auto-pause, a quarantine) always pass.
use std::{sync::Arc, time::Duration};

use tokio::{sync::mpsc, time::Instant};

use crate::{
    model::alert::{Alert, AlertSource, Severity},
    sinks::{dispatcher::SINK_QUEUE, metrics::Metrics},
};

/// N alerts per period; N = 0 is no limit. Written `N` (per minute) or `N/PERIOD` with a
/// period like `30s`, `1m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    pub(crate) const fn per_minute(count: u32) -> Self {
        Rate {
            count,
            per: Duration::from_secs(60),
        }
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad =
            || format!("`{text}` is not a rate: use N (per minute) or N/PERIOD (30s, 1m, 1h)");
        let (count, period) = text.trim().split_once('/').unwrap_or((text.trim(), "1m"));
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let period = period.trim();
        let (number, unit) = period.split_at(
            period
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(period.len()),
        );
        let number: u64 = if number.is_empty() {
            1
        } else {
            number.parse().map_err(|_| bad())?
        };
        let seconds = match unit {
            "" | "s" => number,
            "m" => number * 60,
            "h" => number * 3600,
            _ => return Err(bad()),
        };
        if seconds == 0 {
            return Err(bad());
        }
        Ok(Rate {
            count,
            per: Duration::from_secs(seconds),
        })
    }
}

/// The fixed-window counter of one sink.
pub(crate) struct Limiter {
    sink: &'static str,
    rate: Rate,
    started: Option<Instant>,
    sent: u32,
    suppressed: u64,
    /// The worst severity held back, and the container it was about.
    worst: Severity,
    container: (String, String),
}

impl Limiter {
    pub(crate) fn new(sink: &'static str, rate: Rate) -> Self {
        Limiter {
            sink,
            rate,
            started: None,
            sent: 0,
            suppressed: 0,
            worst: Severity::Info,
            container: Default::default(),
        }
    }

    /// Whether `alert` goes to the sink now (else it is held back and counted).
    pub(crate) fn admit(&mut self, alert: &Alert, now: Instant) -> bool {
        if self.rate.count == 0 || alert.control.follow_up || alert.control.quarantine {
            return true;
        }
        let started = *self.started.get_or_insert(now);
        if now >= started + self.rate.per {
            // Only reached when no summary is pending (the caller closes the period first).
            self.started = Some(now);
            self.sent = 0;
        }
        if self.sent < self.rate.count {
            self.sent += 1;
            return true;
        }
        self.suppressed += 1;
        self.worst = self.worst.max(alert.severity);
        self.container = (alert.container.clone(), alert.container_id.clone());
        false
    }

    /// When the period with held-back alerts ends (to send its summary).
    pub(crate) fn summary_due(&self) -> Option<Instant> {
        (self.suppressed > 0)
            .then_some(self.started)
            .flatten()
            .map(|started| started + self.rate.per)
    }

    /// At the end of a period: the "N alerts suppressed" record, if any were held back.
    pub(crate) fn close(&mut self, now: Instant) -> Option<Alert> {
        let due = self.summary_due().is_some_and(|due| now >= due);
        if !due {
            return None;
        }
        let seconds = self.rate.per.as_secs();
        let suppressed = std::mem::take(&mut self.suppressed);
        let alert = Alert::new(
            std::mem::replace(&mut self.worst, Severity::Info),
            AlertSource::Policy,
            format!(
                "{suppressed} alerts suppressed for sink {} in the last {seconds} s (rate \
                 limit {} per {seconds} s; every alert is in the alerts log)",
                self.sink, self.rate.count
            ),
        )
        .rule("sink_rate_limited")
        .with("sink", self.sink)
        .with("suppressed", suppressed)
        .with("window_seconds", seconds)
        .for_container(&self.container.0, &self.container.1);
        self.started = None;
        self.sent = 0;
        Some(alert)
    }
}

/// A sink's queue through a filter (`wanted`) and a rate limit: `run` receives what passes,
/// plus the summaries of what was held back.
pub(crate) fn limited<F, Fut>(
    sink: &'static str,
    rate: Rate,
    wanted: impl Fn(&Alert) -> bool + Send + 'static,
    metrics: Arc<Metrics>,
    run: F,
) -> impl FnOnce(mpsc::Receiver<Arc<Alert>>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
where
    F: FnOnce(mpsc::Receiver<Arc<Alert>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    move |incoming| {
        let (tx, rx) = mpsc::channel(SINK_QUEUE);
        let inner = tokio::spawn(run(rx));
        let limiter = Limiter::new(sink, rate);
        Box::pin(async move {
            forward(incoming, tx, limiter, wanted, metrics).await;
            let _ = inner.await;
        })
    }
}

async fn forward(
    mut incoming: mpsc::Receiver<Arc<Alert>>,
    tx: mpsc::Sender<Arc<Alert>>,
    mut limiter: Limiter,
    wanted: impl Fn(&Alert) -> bool,
    metrics: Arc<Metrics>,
) {
    loop {
        let due = limiter.summary_due();
        let next = tokio::select! {
            next = incoming.recv() => next,
            _ = sleep_until(due) => {
                if let Some(summary) = limiter.close(Instant::now()) {
                    let _ = tx.send(Arc::new(summary)).await;
                }
                continue;
            }
        };
        let Some(alert) = next else { break };
        if !wanted(&alert) {
            continue;
        }
        let now = Instant::now();
        if let Some(summary) = limiter.close(now) {
            let _ = tx.send(Arc::new(summary)).await;
        }
        if limiter.admit(&alert, now) {
            let _ = tx.send(alert).await;
        } else {
            metrics.sink_suppressed(limiter.sink);
        }
    }
    // Stopping: what was held back is still announced.
    if let Some(summary) = limiter.close(Instant::now() + limiter.rate.per) {
        let _ = tx.send(Arc::new(summary)).await;
    }
}

/// Sleep until `due`; forever when there is none (a `select!` branch that never fires).
pub(crate) async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(severity: Severity) -> Alert {
        Alert::new(severity, AlertSource::Network, "x").for_container("box", "id")
    }

    #[test]
    fn parses_rates() {
        assert_eq!("30".parse(), Ok(Rate::per_minute(30)));
        let rate: Rate = "2/10s".parse().expect("rate");
        assert_eq!((rate.count, rate.per), (2, Duration::from_secs(10)));
        let rate: Rate = "100/1h".parse().expect("rate");
        assert_eq!(rate.per, Duration::from_secs(3600));
        assert_eq!(
            "5/m".parse::<Rate>().map(|r| r.per),
            Ok(Duration::from_secs(60))
        );
        assert!("x".parse::<Rate>().is_err());
        assert!("3/0s".parse::<Rate>().is_err());
        assert!("3/2d".parse::<Rate>().is_err());
    }

    #[test]
    fn over_the_limit_is_held_back_and_summarised_once() {
        let mut limiter = Limiter::new("webhook", "2/10s".parse().expect("rate"));
        let start = Instant::now();
        assert!(limiter.admit(&alert(Severity::Critical), start));
        assert!(limiter.admit(&alert(Severity::Critical), start));
        assert!(!limiter.admit(&alert(Severity::Warning), start));
        assert!(!limiter.admit(&alert(Severity::Critical), start + Duration::from_secs(1)));
        // Control alerts pass whatever the count.
        let pause = alert(Severity::Critical).follow_up();
        assert!(limiter.admit(&pause, start));
        assert_eq!(limiter.summary_due(), Some(start + Duration::from_secs(10)));
        assert!(limiter.close(start + Duration::from_secs(9)).is_none());
        let summary = limiter
            .close(start + Duration::from_secs(10))
            .expect("a summary");
        assert_eq!(summary.severity, Severity::Critical, "the worst held back");
        assert_eq!(summary.details["suppressed"], 2);
        assert_eq!(summary.rule, "sink_rate_limited");
        assert!(
            summary
                .message
                .starts_with("2 alerts suppressed for sink webhook in the last 10 s")
        );
        assert_eq!(summary.container, "box");
        assert_eq!(limiter.summary_due(), None);
        // A new period: the limit starts over.
        let later = start + Duration::from_secs(11);
        assert!(limiter.admit(&alert(Severity::Info), later));
        assert!(limiter.admit(&alert(Severity::Info), later));
        assert!(
            limiter.close(later + Duration::from_secs(20)).is_none(),
            "nothing held back"
        );
    }

    #[test]
    fn zero_is_no_limit() {
        let mut limiter = Limiter::new("toast", Rate::per_minute(0));
        let now = Instant::now();
        assert!((0..1000).all(|_| limiter.admit(&alert(Severity::Critical), now)));
    }

    #[tokio::test]
    async fn the_stage_filters_limits_and_announces() {
        let metrics = Arc::new(Metrics::new());
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let stage = limited(
            "webhook",
            "1/1h".parse().expect("rate"),
            |a: &Alert| a.severity >= Severity::Warning,
            metrics.clone(),
            move |mut rx: mpsc::Receiver<Arc<Alert>>| async move {
                while let Some(alert) = rx.recv().await {
                    let _ = seen_tx.send(alert);
                }
            },
        );
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(stage(rx));
        for severity in [
            Severity::Info,
            Severity::Critical,
            Severity::Warning,
            Severity::Critical,
        ] {
            tx.send(Arc::new(alert(severity))).await.expect("send");
        }
        drop(tx);
        task.await.expect("stage ends");
        let first = seen.recv().await.expect("the first");
        assert_eq!(first.severity, Severity::Critical);
        let summary = seen.recv().await.expect("the summary at stop");
        assert_eq!(summary.details["suppressed"], 2, "{summary:?}");
        assert!(seen.recv().await.is_none());
        assert_eq!(metrics.suppressed("webhook"), 2);
    }
}
