//! Channel 5: the health checker. Reads Docker's health probe log every interval and at
//! every `health_status` event; CRITICAL after N consecutive failed probes.
//!
//! Failures of probes that started inside the health check's start period do not count (as
//! in Docker: a slow-starting app is not unhealthy yet).
//!
//! Docker reports `unhealthy` while a container is paused (its probes cannot run) and keeps
//! that until the next probe after unpause. So only probes that *started* while the
//! container was running, after the last resume, are counted.
use bollard::{models::HealthcheckResult, query_parameters::InspectContainerOptions};
use chrono::{DateTime, Utc};
use tokio::sync::broadcast::error::RecvError;

use crate::{
    channels::WatchContext,
    model::alert::{Alert, AlertSource, Severity},
};

/// Consecutive failed probes at the end of `log` that started after `since`.
pub(crate) fn trailing_failures(log: &[HealthcheckResult], since: Option<DateTime<Utc>>) -> usize {
    log.iter()
        .filter(|probe| match (since, probe.start) {
            (Some(since), Some(start)) => start > since,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .rev()
        .take_while(|probe| probe.exit_code.unwrap_or(0) != 0)
        .count()
}

/// Starts knowing of no resume: probes from before the agent started count.
#[derive(Default)]
pub(crate) struct HealthWatcher {
    resumed_at: Option<DateTime<Utc>>,
    was_paused: bool,
    alerted: bool,
}

impl HealthWatcher {
    pub(crate) async fn run(mut self, ctx: WatchContext) {
        let mut ticker = tokio::time::interval(ctx.config.health_poll);
        let mut events = ctx.docker_events.subscribe();
        let mut container = ctx.container.clone();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                event = events.recv() => match event {
                    Ok(event) if event.action.starts_with("health_status") => {}
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                },
                changed = container.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.note_pause_state(&ctx);
                    continue;
                }
            }
            self.note_pause_state(&ctx);
            if let Err(error) = self.check(&ctx).await {
                tracing::warn!(channel = "health", "{error:#}");
            }
            ctx.ticks.record("health");
        }
    }

    fn note_pause_state(&mut self, ctx: &WatchContext) {
        let paused = ctx.container.borrow().as_ref().is_some_and(|c| c.paused);
        if self.was_paused && !paused {
            self.resumed_at = Some(Utc::now());
            self.alerted = false;
        }
        self.was_paused = paused;
    }

    async fn check(&mut self, ctx: &WatchContext) -> anyhow::Result<()> {
        let Some(container) = ctx.active_container() else {
            return Ok(());
        };
        let info = ctx
            .docker
            .inspect_container(&container.id, None::<InspectContainerOptions>)
            .await?;
        let state = info.state.unwrap_or_default();
        if state.paused == Some(true) {
            self.was_paused = true;
            return Ok(());
        }
        let Some(health) = state.health else {
            return Ok(()); // no HEALTHCHECK configured
        };
        let log = health.log.unwrap_or_default();
        // Probes of an earlier run of the container are not this run's, and, as Docker
        // counts them, failures inside the health check's start period do not count.
        let start_period = info
            .config
            .as_ref()
            .and_then(|c| c.healthcheck.as_ref())
            .and_then(|h| h.start_period)
            .map(chrono::Duration::nanoseconds)
            .unwrap_or_default();
        let started = container.started_at.map(|at| at + start_period);
        let since = self.resumed_at.max(started);
        let failures = trailing_failures(&log, since);
        let needed = ctx.config.health_failures.max(1);
        if failures < needed {
            if failures == 0 {
                self.alerted = false;
            }
            return Ok(());
        }
        if self.alerted {
            return Ok(());
        }
        self.alerted = true;
        let last_output = log
            .last()
            .and_then(|p| p.output.clone())
            .unwrap_or_default();
        let alert = Alert::new(
            Severity::Critical,
            AlertSource::Health,
            format!("Container unhealthy: {failures} consecutive failed health checks"),
        )
        .rule("health_failed")
        .with("consecutive_failures", failures)
        .with(
            "last_output",
            crate::channels::logs::cut(last_output.trim(), 200),
        );
        ctx.alerts.raise(alert).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(start_secs: i64, exit_code: i64) -> HealthcheckResult {
        HealthcheckResult {
            start: DateTime::from_timestamp(start_secs, 0),
            exit_code: Some(exit_code),
            ..Default::default()
        }
    }

    #[test]
    fn counts_trailing_failures() {
        let log = vec![probe(1, 0), probe(2, 1), probe(3, 1)];
        assert_eq!(trailing_failures(&log, None), 2);
        let log = vec![probe(1, 1), probe(2, 0)];
        assert_eq!(trailing_failures(&log, None), 0);
        assert_eq!(trailing_failures(&[], None), 0);
    }

    #[test]
    fn probes_before_the_resume_do_not_count() {
        // Failed while paused (t=2,3), resumed at t=4, one failure after: only one counts.
        let log = vec![probe(2, 1), probe(3, 1), probe(5, 1)];
        assert_eq!(trailing_failures(&log, DateTime::from_timestamp(4, 0)), 1);
    }
}
