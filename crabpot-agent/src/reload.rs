//! SIGHUP: re-read the configuration and apply the new policy without a restart. An invalid
//! file is refused, the running policy kept, and an alert says why.
use std::sync::Arc;

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::{
    alert::{Alert, AlertSource, Severity},
    cli::AgentArgs,
    policy::rules::Policy,
    settings,
    sources::watchers::AlertSender,
};

pub(crate) async fn on_sighup(
    args: AgentArgs,
    policy: watch::Sender<Arc<Policy>>,
    alerts: AlertSender,
) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => hangup,
        Err(error) => {
            tracing::error!("cannot install the SIGHUP handler: {error}; reload needs a restart");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        match settings::resolve(&args) {
            Ok(next) => {
                let source = next
                    .file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "flags".into());
                let allow: Vec<String> = next.policy.allow.iter().map(|a| a.to_string()).collect();
                policy.send_replace(Arc::new(next.policy));
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
