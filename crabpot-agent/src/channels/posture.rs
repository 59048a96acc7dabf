//! The posture audit at attach: when the agent starts guarding a container, and again for
//! every re-created one (a new id), its launch settings are inspected and judged
//! ([`crate::policy::posture`]); one alert per finding (never pausing), and the report for
//! `/metrics`. A restart keeps the id and the settings, so it is not audited again.
use bollard::query_parameters::InspectContainerOptions;
use tokio::sync::watch;

use crate::{
    channels::WatchContext,
    model::container::GuardedContainer,
    policy::posture::{self, PostureReport},
};

pub(crate) struct PostureWatcher {
    report: watch::Sender<Option<PostureReport>>,
}

impl PostureWatcher {
    pub(crate) fn new(report: watch::Sender<Option<PostureReport>>) -> Self {
        Self { report }
    }

    pub(crate) async fn run(self, ctx: WatchContext) {
        let mut container = ctx.container.clone();
        let mut audited: Option<String> = None;
        loop {
            let current = container.borrow_and_update().clone();
            if let Some(current) = current
                && audited.as_deref() != Some(current.id.as_str())
            {
                match self.audit(&ctx, &current).await {
                    Ok(()) => audited = Some(current.id.clone()),
                    Err(error) => tracing::warn!(channel = "posture", "{error:#}"),
                }
                ctx.ticks.record("posture");
            }
            if container.changed().await.is_err() {
                return;
            }
        }
    }

    async fn audit(&self, ctx: &WatchContext, container: &GuardedContainer) -> anyhow::Result<()> {
        let found = ctx
            .docker
            .inspect_container(&container.id, None::<InspectContainerOptions>)
            .await?;
        let mut report = posture::audit(&found);
        report.container = container.name.clone();
        tracing::info!(
            "posture of `{}`: score {} with {} finding(s)",
            container.name,
            report.score(),
            report.findings.len()
        );
        for alert in report.alerts() {
            ctx.alerts.raise(alert).await;
        }
        self.report.send_replace(Some(report));
        Ok(())
    }
}
