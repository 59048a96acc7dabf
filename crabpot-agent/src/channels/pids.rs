//! Fork bombs: the container's pids cgroup counts every fork refused at its limit
//! (`pids.events`, `max N`). The counter is read periodically; an increase is one WARNING
//! with the count, and a burst of increases (a bomb retries without pause) stays one alert
//! until the counter has been quiet for [`QUIET`].
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    channels::{PollingWatcher, WatchContext},
    model::{
        alert::{Alert, AlertSource, Severity},
        container::GuardedContainer,
    },
    sources::cgroup::{pids_events_path, pids_max_events},
};

/// How often the counter is read.
pub(crate) const PIDS_POLL: Duration = Duration::from_secs(1);
/// A burst ends after this long without a new refused fork; the next increase alerts again.
pub(crate) const QUIET: Duration = Duration::from_secs(10);

/// What one reading of the counter means.
#[derive(Debug, Default)]
pub(crate) struct PidsBurst {
    /// The counter at the last reading, for the container run it belongs to.
    last: Option<u64>,
    /// When the counter last rose, while a burst is on.
    rising_since: Option<Instant>,
    last_rise: Option<Instant>,
}

/// An increase worth one alert.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refused {
    /// The counter now (forks refused at the limit since the container started).
    pub total: u64,
    /// Forks refused since the previous reading (or since the agent started watching).
    pub new: u64,
}

impl PidsBurst {
    /// Feed one reading; `Some` once per burst of increases. The first reading of a run
    /// alerts when the limit was already hit before the agent watched.
    pub(crate) fn observe(&mut self, count: u64, now: Instant) -> Option<Refused> {
        let previous = self.last.replace(count);
        let risen = count.saturating_sub(previous.unwrap_or(0));
        if let Some(last_rise) = self.last_rise
            && now.saturating_duration_since(last_rise) >= QUIET
        {
            self.rising_since = None;
        }
        if risen == 0 {
            return None;
        }
        self.last_rise = Some(now);
        if self.rising_since.is_some() {
            return None; // the same burst: counted, already reported
        }
        self.rising_since = Some(now);
        Some(Refused {
            total: count,
            new: risen,
        })
    }
}

/// "1 fork", "40 forks".
fn forks(n: u64) -> String {
    if n == 1 {
        "1 fork".into()
    } else {
        format!("{n} forks")
    }
}

/// The polling channel over the guarded container's `pids.events`.
#[derive(Default)]
pub(crate) struct PidsWatcher {
    /// The run (Docker id, main pid) the path and counter belong to.
    run: Option<(String, u32)>,
    path: Option<PathBuf>,
    burst: PidsBurst,
}

impl PidsWatcher {
    /// The counter file for this run, resolved once per run.
    fn path_for(&mut self, container: &GuardedContainer) -> anyhow::Result<PathBuf> {
        let run = (container.id.clone(), container.pid);
        if self.run.as_ref() != Some(&run) {
            self.run = Some(run);
            self.path = None;
            self.burst = PidsBurst::default();
        }
        if let Some(path) = &self.path {
            return Ok(path.clone());
        }
        let path = pids_events_path(container.pid)?;
        self.path = Some(path.clone());
        Ok(path)
    }
}

impl PollingWatcher for PidsWatcher {
    const CHANNEL: &'static str = "pids";

    fn interval(&self) -> Duration {
        PIDS_POLL
    }

    async fn tick(
        &mut self,
        ctx: &WatchContext,
        container: &GuardedContainer,
    ) -> anyhow::Result<()> {
        let path = self.path_for(container)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // No pids controller on this cgroup (no limit set on some hosts): nothing to count.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(anyhow::anyhow!("reading {}: {error}", path.display())),
        };
        let Some(count) = pids_max_events(&text) else {
            return Ok(());
        };
        if let Some(refused) = self.burst.observe(count, Instant::now()) {
            let alert = Alert::new(
                Severity::Warning,
                AlertSource::Stats,
                format!(
                    "Process limit hit: {} refused at the container's pids limit ({} in \
                     total): a fork bomb or a runaway process",
                    forks(refused.new),
                    refused.total
                ),
            )
            .rule("pids_limit")
            .with("rule", "pids_limit")
            .with("refused_forks", refused.new)
            .with("refused_forks_total", refused.total)
            .with("pids_events", path.to_string_lossy().into_owned());
            ctx.alerts.raise(alert).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alert_per_burst_with_the_count() {
        let mut burst = PidsBurst::default();
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(burst.observe(0, at(0)), None);
        assert_eq!(burst.observe(0, at(1)), None);
        assert_eq!(
            burst.observe(40, at(2)),
            Some(Refused { total: 40, new: 40 })
        );
        assert_eq!(burst.observe(900, at(3)), None, "same burst");
        assert_eq!(burst.observe(900, at(5)), None);
        assert_eq!(
            burst.observe(950, at(9)),
            None,
            "still within the quiet time"
        );
        assert_eq!(burst.observe(950, at(30)), None);
        assert_eq!(
            burst.observe(960, at(31)),
            Some(Refused {
                total: 960,
                new: 10
            }),
            "a new burst after a quiet spell"
        );
    }

    #[test]
    fn a_limit_hit_before_watching_is_reported_once() {
        let mut burst = PidsBurst::default();
        let now = Instant::now();
        assert_eq!(burst.observe(7, now), Some(Refused { total: 7, new: 7 }));
        assert_eq!(burst.observe(7, now + QUIET * 2), None);
    }
}
