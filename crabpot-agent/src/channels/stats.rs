//! Channel 1: CPU and memory from Docker's streamed stats.
use std::{
    pin::Pin,
    time::{Duration, Instant},
};

use bollard::{models::ContainerStatsResponse, query_parameters::StatsOptionsBuilder};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::watch;

use crate::model::container::GuardedContainer;
use crate::{
    channels::{StreamWatcher, WatchContext},
    model::alert::{Alert, AlertSource, Severity},
};

/// The latest sample, kept for the dashboard and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatsSample {
    pub cpu_percent: f64,
    /// Usage minus inactive file cache.
    pub memory_used_bytes: u64,
    pub memory_limit_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub pids: u64,
}

/// CPU % from the cpu/precpu deltas, scaled to the online CPUs (100 % = one full core
/// times the number of CPUs in Docker's convention).
pub(crate) fn cpu_percent(stats: &ContainerStatsResponse) -> Option<f64> {
    let cpu = stats.cpu_stats.as_ref()?;
    let pre = stats.precpu_stats.as_ref()?;
    let total = cpu.cpu_usage.as_ref()?.total_usage?;
    let pre_total = pre.cpu_usage.as_ref()?.total_usage.unwrap_or(0);
    let system = cpu.system_cpu_usage?;
    let pre_system = pre.system_cpu_usage.unwrap_or(0);
    let cpu_delta = total.checked_sub(pre_total)? as f64;
    let system_delta = system.checked_sub(pre_system)? as f64;
    if system_delta <= 0.0 {
        return None;
    }
    let cpus = cpu
        .online_cpus
        .map(f64::from)
        .or_else(|| {
            cpu.cpu_usage
                .as_ref()?
                .percpu_usage
                .as_ref()
                .map(|p| p.len() as f64)
        })
        .unwrap_or(1.0);
    Some(cpu_delta / system_delta * cpus * 100.0)
}

/// Memory in use (usage minus inactive file cache: cgroup v2 `inactive_file`, v1
/// `total_inactive_file`) and the limit.
pub(crate) fn memory_used(stats: &ContainerStatsResponse) -> Option<(u64, u64)> {
    let memory = stats.memory_stats.as_ref()?;
    let usage = memory.usage?;
    let limit = memory.limit?;
    let inactive = memory
        .stats
        .as_ref()
        .and_then(|s| {
            s.get("inactive_file")
                .or_else(|| s.get("total_inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    Some((usage.saturating_sub(inactive), limit))
}

pub(crate) fn sample(stats: &ContainerStatsResponse) -> StatsSample {
    let (memory_used_bytes, memory_limit_bytes) = memory_used(stats).unwrap_or((0, 0));
    let (net_rx_bytes, net_tx_bytes) = stats
        .networks
        .as_ref()
        .map(|nets| {
            nets.values().fold((0, 0), |(rx, tx), n| {
                (rx + n.rx_bytes.unwrap_or(0), tx + n.tx_bytes.unwrap_or(0))
            })
        })
        .unwrap_or((0, 0));
    StatsSample {
        cpu_percent: cpu_percent(stats).unwrap_or(0.0),
        memory_used_bytes,
        memory_limit_bytes,
        net_rx_bytes,
        net_tx_bytes,
        pids: stats
            .pids_stats
            .as_ref()
            .and_then(|p| p.current)
            .unwrap_or(0),
    }
}

/// "Above a threshold for a sustained time", alerted once per episode.
#[derive(Debug, Default)]
pub(crate) struct Episode {
    above_since: Option<Instant>,
    alerted: bool,
}

impl Episode {
    /// Feed one observation; `Some(duration above)` exactly once per episode, when the value
    /// has stayed above for at least `sustain`.
    pub(crate) fn observe(
        &mut self,
        above: bool,
        sustain: Duration,
        now: Instant,
    ) -> Option<Duration> {
        if !above {
            *self = Episode::default();
            return None;
        }
        let since = *self.above_since.get_or_insert(now);
        let lasted = now.saturating_duration_since(since);
        if !self.alerted && lasted >= sustain {
            self.alerted = true;
            return Some(lasted);
        }
        None
    }
}

pub(crate) struct StatsWatcher {
    latest: watch::Sender<Option<StatsSample>>,
    cpu: Episode,
    memory: Episode,
    last_processed: Option<Instant>,
}

impl StatsWatcher {
    pub(crate) fn new(latest: watch::Sender<Option<StatsSample>>) -> Self {
        StatsWatcher {
            latest,
            cpu: Episode::default(),
            memory: Episode::default(),
            last_processed: None,
        }
    }
}

type StatsStream =
    Pin<Box<dyn Stream<Item = Result<ContainerStatsResponse, bollard::errors::Error>> + Send>>;

impl StreamWatcher for StatsWatcher {
    const CHANNEL: &'static str = "stats";
    type Item = ContainerStatsResponse;
    type Stream = StatsStream;

    fn open(&mut self, ctx: &WatchContext, container: &GuardedContainer) -> StatsStream {
        let options = StatsOptionsBuilder::new()
            .stream(true)
            .one_shot(false)
            .build();
        Box::pin(ctx.docker.stats(&container.id, Some(options)))
    }

    async fn handle(
        &mut self,
        ctx: &WatchContext,
        _container: &GuardedContainer,
        stats: ContainerStatsResponse,
    ) {
        let now = Instant::now();
        let interval = ctx.config.stats_interval;
        if self
            .last_processed
            .is_some_and(|last| now.duration_since(last) + Duration::from_millis(200) < interval)
        {
            return;
        }
        self.last_processed = Some(now);
        let sample = sample(&stats);
        self.latest.send_replace(Some(sample.clone()));
        if ctx.active_container().is_none() {
            return; // paused: Docker still streams, but a frozen container is not "busy"
        }
        let config = &ctx.config;
        if let Some(lasted) = self.cpu.observe(
            sample.cpu_percent > config.cpu_threshold,
            config.cpu_sustain,
            now,
        ) {
            let alert = Alert::new(
                Severity::Warning,
                AlertSource::Stats,
                format!(
                    "CPU at {:.1}% for {}s",
                    sample.cpu_percent,
                    lasted.as_secs()
                ),
            )
            .rule("cpu_sustained")
            .with("cpu_percent", sample.cpu_percent)
            .with("threshold", config.cpu_threshold)
            .with("sustained_seconds", lasted.as_secs());
            ctx.alerts.raise(alert).await;
        }
        if sample.memory_limit_bytes > 0 {
            let percent =
                sample.memory_used_bytes as f64 / sample.memory_limit_bytes as f64 * 100.0;
            if self
                .memory
                .observe(percent > config.memory_threshold, Duration::ZERO, now)
                .is_some()
            {
                let alert = Alert::new(
                    Severity::Warning,
                    AlertSource::Stats,
                    format!(
                        "Memory at {percent:.1}% of limit ({} of {} MiB)",
                        sample.memory_used_bytes / (1 << 20),
                        sample.memory_limit_bytes / (1 << 20)
                    ),
                )
                .rule("memory_high")
                .with("memory_percent", percent)
                .with("memory_used_bytes", sample.memory_used_bytes)
                .with("memory_limit_bytes", sample.memory_limit_bytes)
                .with("threshold", config.memory_threshold);
                ctx.alerts.raise(alert).await;
            }
        }
    }
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
