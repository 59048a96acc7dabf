//! SIGHUP: re-read the configuration and apply the new policy without a restart. An invalid
//! file is refused, the running policy kept, and an alert says why.
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::{
    cli::AgentArgs,
    model::alert::{Alert, AlertSource, Severity},
    model::sender::AlertSender,
    policy::rules::Policy,
    settings,
    sinks::metrics::Metrics,
};

/// One reload per request (a SIGHUP, passed on by the agent's signal handler).
pub(crate) async fn run(
    args: AgentArgs,
    mut requests: mpsc::Receiver<()>,
    policy: watch::Sender<Arc<Policy>>,
    alerts: AlertSender,
    metrics: Arc<Metrics>,
) {
    while requests.recv().await.is_some() {
        match settings::resolve(&args) {
            Ok(mut next) => {
                if args.learn.is_some() {
                    // Still learning: a reload does not bring blocking back.
                    next.policy = crate::policy::learn::audit_everything(&next.policy);
                }
                let source = next
                    .file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "flags".into());
                let allow: Vec<String> = next.policy.allow.iter().map(|a| a.to_string()).collect();
                policy.send_replace(Arc::new(next.policy));
                metrics.config(&settings::config_sha256(next.file.as_deref()));
                tracing::info!("SIGHUP: configuration reloaded from {source}");
                let alert = Alert::new(
                    Severity::Info,
                    AlertSource::Policy,
                    format!("Configuration reloaded from {source}"),
                )
                .with("allow", allow);
                alerts.raise(alert).await;
            }
            Err(error) => {
                tracing::error!("SIGHUP: {error}; keeping the running configuration");
                let alert = Alert::new(
                    Severity::Warning,
                    AlertSource::Policy,
                    format!("Configuration reload refused, running policy kept: {error}"),
                );
                alerts.raise(alert).await;
            }
        }
    }
}
