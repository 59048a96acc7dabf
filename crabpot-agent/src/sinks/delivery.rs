//! How alerts are delivered beyond the local sinks: de-duplication before every sink, the
//! Alertmanager sink, and the filters and rate limits of the remote and noisy sinks.
use std::time::Duration;

use crate::{
    cli::AgentArgs,
    model::alert::Severity,
    sinks::{dedup, rate_limit::Rate, webhook},
};

/// `--alertmanager` and its options.
#[derive(Debug, Clone)]
pub struct AlertmanagerSink {
    /// Base URL (`http://alertmanager:9093`); alerts go to `/api/v2/alerts` under it.
    pub url: String,
    pub min_severity: Severity,
    pub rate: Rate,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    /// Identical alerts inside it are one record with a count (zero: off).
    pub dedup_window: Duration,
    pub webhook_min_severity: Severity,
    pub webhook_rate: Rate,
    pub alertmanager: Option<AlertmanagerSink>,
    pub toast_rate: Rate,
}

/// Defaults of the flags.
pub(crate) const WEBHOOK_RATE: Rate = Rate::per_minute(30);
/// A toast covers part of the screen: a few a minute at most.
pub(crate) const TOAST_RATE: Rate = Rate::per_minute(6);

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            dedup_window: dedup::DEFAULT_WINDOW,
            webhook_min_severity: webhook::DEFAULT_MIN_SEVERITY,
            webhook_rate: WEBHOOK_RATE,
            alertmanager: None,
            toast_rate: TOAST_RATE,
        }
    }
}

impl Delivery {
    pub(crate) fn from_args(args: &AgentArgs) -> Self {
        Delivery {
            dedup_window: Duration::from_secs(args.dedup_window),
            webhook_min_severity: args.webhook_min_severity,
            webhook_rate: args.webhook_rate,
            alertmanager: args.alertmanager.clone().map(|url| AlertmanagerSink {
                url,
                min_severity: args.alertmanager_min_severity,
                rate: args.alertmanager_rate,
            }),
            toast_rate: TOAST_RATE,
        }
    }
}
