//! Prometheus metrics: counters fed by the pipeline, gauges read from the agent's state at
//! scrape time, the agent process's own (CPU, RSS, fds), and build and configuration info.
//! Names follow Prometheus conventions (`_total` counters, `_info` gauges, base units).
use std::sync::{Arc, Mutex};

use crabpot_common::EventKind;

use prometheus::{
    Encoder as _, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};
use tokio::sync::watch;

use crate::model::container::GuardedContainer;
use crate::{
    channels::{ChannelTicks, stats::StatsSample},
    model::alert::{Alert, AlertSource, Severity},
    policy::{posture::PostureReport, trust::TrustScore},
};

pub struct Metrics {
    /// What the kernel side reported and decided.
    kernel: KernelCounters,
    /// The guarded container's gauges and counters.
    container: ContainerGauges,
    registry: Registry,
    /// `crabpot_exception_hits_total{exception}`, brought up to the exceptions' own
    /// counters when rendered.
    exception_hits: IntCounterVec,
    exceptions: std::sync::OnceLock<Arc<crate::policy::exceptions::Exceptions>>,
    alerts: IntCounterVec,
    sink_failures: IntCounterVec,
    /// `crabpot_sink_suppressed_total{sink}`: alerts a sink's rate limit held back.
    sink_suppressed: IntCounterVec,
    config_info: GaugeVec,
    last_tick: GaugeVec,
    layers: GaugeVec,
}
/// What the metrics say of the kernel side.
struct KernelCounters {
    /// `crabpot_kernel_events_total` resolved once per kind, in `EventKind::ALL` order: the per-event
    /// path does no label hashing.
    kernel_events_by_kind: Vec<IntCounter>,
    open_filtered: IntCounter,
    connect_filtered: IntCounter,
    /// Programs stopped (or killed) in the kernel at their exec, then continued or frozen.
    kernel_stops: IntCounterVec,
    /// `crabpot_kernel_events_dropped_total` per kind, in `EventKind::ALL` order.
    dropped_by_kind: Vec<IntCounter>,
    blocked: IntCounterVec,
    latency: Histogram,
}

/// What the metrics say of the guarded container itself.
struct ContainerGauges {
    network_total: IntCounterVec,
    /// The last cumulative rx and tx the counters were advanced to.
    network_seen: Mutex<[u64; 2]>,
    cpu: Gauge,
    memory_used: IntGauge,
    memory_limit: IntGauge,
    pids: IntGauge,
    network: GaugeVec,
    paused: IntGauge,
    quarantined: IntGauge,
    trust: IntGauge,
    posture_score: GaugeVec,
    posture_findings: GaugeVec,
    /// Per guarded container (`container` label): trust score and frozen.
    guarded_trust: GaugeVec,
    guarded_paused: GaugeVec,
}

/// What the scrape reads.
#[derive(Clone)]
pub struct StateViews {
    pub container: watch::Receiver<Option<GuardedContainer>>,
    pub stats: watch::Receiver<Option<StatsSample>>,
    pub trust: watch::Receiver<TrustScore>,
    pub ticks: Arc<ChannelTicks>,
    /// The posture audit of the guarded container (none before the first).
    pub posture: watch::Receiver<Option<PostureReport>>,
    /// Every guarded container, and each one's trust score (by name).
    pub guarded: watch::Receiver<crate::model::container::Guarded>,
    pub trusts: watch::Receiver<std::collections::BTreeMap<String, TrustScore>>,
}

/// One guarded container in `/api/status` and on the dashboard.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    /// Empty while it is not running.
    pub id: String,
    /// `running`, `paused`, `quarantined` or `absent` (not running).
    pub state: String,
    pub trust_score: i32,
    pub violations: u32,
}

/// A container's state in one word.
pub(crate) fn state_word(container: Option<&GuardedContainer>, trust: &TrustScore) -> &'static str {
    match container {
        None => "absent",
        Some(c) if c.paused && trust.score < trust.quarantine_below => "quarantined",
        Some(c) if c.paused => "paused",
        Some(_) => "running",
    }
}

impl StateViews {
    /// Every guarded container with its state and trust.
    pub(crate) fn containers(&self) -> Vec<ContainerStatus> {
        let trusts = self.trusts.borrow().clone();
        let set = self.guarded.borrow().clone();
        set.iter()
            .map(|(name, unit)| {
                let current = unit.container.borrow().clone();
                let trust = trusts.get(name).copied().unwrap_or_default();
                ContainerStatus {
                    name: name.clone(),
                    id: current.as_ref().map(|c| c.id.clone()).unwrap_or_default(),
                    state: state_word(current.as_ref(), &trust).into(),
                    trust_score: trust.score,
                    violations: trust.violations,
                }
            })
            .collect()
    }
}

fn must<T>(result: prometheus::Result<T>) -> T {
    // Metric names and labels are constants here: an error is a programming mistake.
    #[expect(clippy::panic, reason = "invalid constant metric definitions")]
    result.unwrap_or_else(|e| panic!("metric definition: {e}"))
}

/// Creates metrics and registers each one as it is made.
struct Registrar(Registry);

impl Registrar {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, collector: C) -> C {
        must(self.0.register(Box::new(collector.clone())));
        collector
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(must(IntCounterVec::new(Opts::new(name, help), labels)))
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.add(must(GaugeVec::new(Opts::new(name, help), labels)))
    }

    fn int_gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(must(IntGauge::new(name, help)))
    }
}

impl ContainerGauges {
    fn new(r: &Registrar) -> Self {
        ContainerGauges {
            network_total: r.counter_vec(
                "crabpot_container_network_bytes_total",
                "Network bytes of the container, by direction (rx, tx).",
                &["direction"],
            ),
            network_seen: Mutex::new([0; 2]),
            cpu: r.add(must(Gauge::new(
                "crabpot_container_cpu_percent",
                "Container CPU %.",
            ))),
            memory_used: r.int_gauge(
                "crabpot_container_memory_used_bytes",
                "Memory used (minus inactive file cache).",
            ),
            memory_limit: r.int_gauge("crabpot_container_memory_limit_bytes", "Memory limit."),
            pids: r.int_gauge("crabpot_container_pids", "Processes in the container."),
            network: r.gauge_vec(
                "crabpot_container_network_bytes",
                "Deprecated (removed in 0.3.0): use crabpot_container_network_bytes_total.",
                &["direction"],
            ),
            paused: r.int_gauge(
                "crabpot_container_paused",
                "1 while the container is frozen.",
            ),
            quarantined: r.int_gauge(
                "crabpot_container_quarantined",
                "1 once trust fell below the threshold.",
            ),
            trust: r.int_gauge("crabpot_trust_score", "Trust score (100 = no violation)."),
            posture_score: r.gauge_vec(
                "crabpot_posture_score",
                "Launch posture of the guarded container: 100 minus a penalty per finding.",
                &["container"],
            ),
            posture_findings: r.gauge_vec(
                "crabpot_posture_findings",
                "1 for each posture finding of the guarded container's launch settings.",
                &["finding", "severity"],
            ),
            guarded_trust: r.gauge_vec(
                "crabpot_guarded_container_trust_score",
                "Trust score of each guarded container (0-100).",
                &["container"],
            ),
            guarded_paused: r.gauge_vec(
                "crabpot_guarded_container_paused",
                "1 while that guarded container is frozen.",
                &["container"],
            ),
        }
    }
}

impl KernelCounters {
    fn new(r: &Registrar) -> Self {
        let kernel_events = r.counter_vec(
            "crabpot_kernel_events_total",
            "Kernel events received.",
            &["kind"],
        );
        let dropped = r.counter_vec(
            "crabpot_kernel_events_dropped_total",
            "Kernel events lost because the ring buffer was full, by kind.",
            &["kind"],
        );
        KernelCounters {
            kernel_events_by_kind: EventKind::ALL
                .iter()
                .map(|kind| kernel_events.with_label_values(&[kind.name()]))
                .collect(),
            blocked: r.counter_vec(
                "crabpot_policy_decisions_total",
                "Policy decisions on calls, by rule and verdict (blocked, killed, refused, audit, logged).",
                &["rule", "verdict"],
            ),
            open_filtered: r.add(must(IntCounter::new(
                "crabpot_kernel_opens_filtered_total",
                "Opens the kernel kept out of the ring buffer (not needed by the policy).",
            ))),
            connect_filtered: r.add(must(IntCounter::new(
                "crabpot_kernel_connects_filtered_total",
                "Connects the allowlist covers, which the kernel counted instead of sending.",
            ))),
            kernel_stops: r.counter_vec(
                "crabpot_kernel_exec_stops_total",
                "Denylisted execs stopped or killed in the kernel, by outcome (frozen, continued, killed).",
                &["outcome"],
            ),
            dropped_by_kind: EventKind::ALL
                .iter()
                .map(|kind| dropped.with_label_values(&[kind.name()]))
                .collect(),
            latency: r.add(must(Histogram::with_opts(
                HistogramOpts::new(
                    "crabpot_detection_latency_seconds",
                    "Kernel event time to alert dispatched.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
                ]),
            ))),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registrar(Registry::new());
        let build = r.gauge_vec(
            "crabpot_build_info",
            "Build information (always 1).",
            &["version", "commit", "rustc"],
        );
        build
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                env!("CRABPOT_GIT_COMMIT"),
                env!("CRABPOT_RUSTC_VERSION"),
            ])
            .set(1.0);
        // The agent's own CPU, resident memory, open fds… (`process_*`).
        #[cfg(target_os = "linux")]
        must(r.0.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )));
        let alerts = r.counter_vec(
            "crabpot_alerts_total",
            "Alerts raised.",
            &["severity", "source"],
        );
        // Every series from 0: `increase()` (deploy/crabpot-alerts.yml) sees no rise in a
        // series whose first sample is already 1, so the first CRITICAL would never fire.
        for severity in Severity::ALL {
            for source in AlertSource::ALL {
                alerts.with_label_values(&[severity.as_str(), source.as_str()]);
            }
        }
        Metrics {
            alerts,
            sink_failures: r.counter_vec(
                "crabpot_sink_failures_total",
                "Alerts a sink lost: webhook deliveries that failed every attempt, alerts \
                 dropped for a lagging sink.",
                &["sink"],
            ),
            sink_suppressed: r.counter_vec(
                "crabpot_sink_suppressed_total",
                "Alerts a sink's rate limit held back (announced to it by one \"N alerts \
                 suppressed\" record; the alerts log has every one).",
                &["sink"],
            ),
            config_info: r.gauge_vec(
                "crabpot_config_info",
                "The configuration in effect (always 1): sha256 of the file read, or of \
                 nothing when no file was read.",
                &["sha256"],
            ),
            last_tick: r.gauge_vec(
                "crabpot_channel_last_tick_timestamp_seconds",
                "Unix time of each channel's last completed tick.",
                &["channel"],
            ),
            layers: r.gauge_vec(
                "crabpot_enforcement_layer",
                "1 for the layer enforcing each rule.",
                &["rule", "layer"],
            ),
            exception_hits: r.counter_vec(
                "crabpot_exception_hits_total",
                "Events an operator's exception silenced, by exception.",
                &["exception"],
            ),
            exceptions: std::sync::OnceLock::new(),
            container: ContainerGauges::new(&r),
            kernel: KernelCounters::new(&r),
            registry: r.0,
        }
    }

    /// The operator's exceptions, whose hits are published (each at 0 from the start).
    pub(crate) fn set_exceptions(&self, exceptions: Arc<crate::policy::exceptions::Exceptions>) {
        for (name, _) in exceptions.hits() {
            self.exception_hits.with_label_values(&[name.as_str()]);
        }
        let _ = self.exceptions.set(exceptions);
    }

    /// `(name, hits)` of each exception, for `crabpot status`.
    pub(crate) fn exception_hits(&self) -> Vec<(String, u64)> {
        self.exceptions.get().map(|e| e.hits()).unwrap_or_default()
    }

    pub fn alert(&self, alert: &Alert, monotonic_now_ns: u64) {
        self.alerts
            .with_label_values(&[alert.severity.as_str(), alert.source.as_str()])
            .inc();
        if let Some(ts) = alert.control.kernel_ts_ns
            && monotonic_now_ns >= ts
        {
            self.kernel
                .latency
                .observe((monotonic_now_ns - ts) as f64 / 1e9);
        }
    }

    pub fn kernel_event(&self, kind: EventKind) {
        if let Some(counter) = EventKind::ALL
            .iter()
            .position(|k| *k == kind)
            .and_then(|i| self.kernel.kernel_events_by_kind.get(i))
        {
            counter.inc();
        }
    }

    /// The kernel's cumulative drop counts per kind (`EventKind::name`).
    pub fn drops(&self, by_kind: &[(String, u64)]) {
        for (name, total) in by_kind {
            let counter = EventKind::ALL
                .iter()
                .position(|k| k.name() == name)
                .and_then(|i| self.kernel.dropped_by_kind.get(i));
            if let Some(counter) = counter
                && *total > counter.get()
            {
                counter.inc_by(total - counter.get());
            }
        }
    }

    /// Publish a sink's failure count (0 until it loses one), so it can be graphed from
    /// the start.
    pub fn sink(&self, sink: &str) {
        self.sink_failures.with_label_values(&[sink]);
    }

    /// One alert a sink lost.
    pub fn sink_failure(&self, sink: &str) {
        self.sink_failures.with_label_values(&[sink]).inc();
    }

    /// One alert a sink's rate limit held back.
    pub(crate) fn sink_suppressed(&self, sink: &str) {
        self.sink_suppressed.with_label_values(&[sink]).inc();
    }

    /// Alerts `sink`'s rate limit held back so far.
    #[cfg(test)]
    pub(crate) fn suppressed(&self, sink: &str) -> u64 {
        self.sink_suppressed.with_label_values(&[sink]).get()
    }

    /// Publish the configuration's digest (replacing the previous one on a reload).
    pub fn config(&self, sha256: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[sha256]).set(1.0);
    }

    /// Advance the network counters to Docker's cumulative rx and tx; a lower value means
    /// the container restarted (its counters began again).
    fn network_bytes(&self, now: [u64; 2]) {
        let Ok(mut seen) = self.container.network_seen.lock() else {
            return;
        };
        for (i, direction) in ["rx", "tx"].into_iter().enumerate() {
            let delta = now[i].checked_sub(seen[i]).unwrap_or(now[i]);
            self.container
                .network_total
                .with_label_values(&[direction])
                .inc_by(delta);
            seen[i] = now[i];
        }
    }

    /// The kernel's counts of filtered opens and connects (running totals).
    pub fn filtered_totals(&self, opens: u64, connects: u64) {
        for (counter, total) in [
            (&self.kernel.open_filtered, opens),
            (&self.kernel.connect_filtered, connects),
        ] {
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        }
    }

    pub fn kernel_stop(&self, outcome: &str) {
        self.kernel.kernel_stops.with_label_values(&[outcome]).inc();
    }

    pub fn decision(&self, rule: &str, verdict: &str) {
        self.kernel
            .blocked
            .with_label_values(&[rule, verdict])
            .inc();
    }

    /// Kernel events received and dropped so far (for the dashboard).
    pub fn event_counts(&self) -> (u64, u64) {
        let received = self
            .kernel
            .kernel_events_by_kind
            .iter()
            .map(|c| c.get())
            .sum();
        let dropped = self.kernel.dropped_by_kind.iter().map(|c| c.get()).sum();
        (received, dropped)
    }

    pub fn layer(&self, rule: &str, layer: &str) {
        self.layers.with_label_values(&[rule, layer]).set(1.0);
    }

    /// The text exposition, gauges refreshed from `views`.
    pub fn render(&self, views: &StateViews) -> String {
        if let Some(sample) = views.stats.borrow().clone() {
            self.container.cpu.set(sample.cpu_percent);
            self.container
                .memory_used
                .set(sample.memory_used_bytes as i64);
            self.container
                .memory_limit
                .set(sample.memory_limit_bytes as i64);
            self.container.pids.set(sample.pids as i64);
            self.container
                .network
                .with_label_values(&["rx"])
                .set(sample.net_rx_bytes as f64);
            self.container
                .network
                .with_label_values(&["tx"])
                .set(sample.net_tx_bytes as f64);
            self.network_bytes([sample.net_rx_bytes, sample.net_tx_bytes]);
        }
        let paused = views.container.borrow().as_ref().is_some_and(|c| c.paused);
        self.container.paused.set(i64::from(paused));
        let trust = *views.trust.borrow();
        self.container.trust.set(i64::from(trust.score));
        self.container
            .quarantined
            .set(i64::from(trust.score < trust.quarantine_below));
        self.render_posture(views.posture.borrow().as_ref());
        // Detached containers leave the series.
        self.container.guarded_trust.reset();
        self.container.guarded_paused.reset();
        for c in views.containers() {
            let label = [c.name.as_str()];
            let gauge = self.container.guarded_trust.with_label_values(&label);
            gauge.set(f64::from(c.trust_score));
            let paused = matches!(c.state.as_str(), "paused" | "quarantined");
            let gauge = self.container.guarded_paused.with_label_values(&label);
            gauge.set(f64::from(u8::from(paused)));
        }
        for (channel, at) in views.ticks.snapshot() {
            if let Ok(time) = chrono::DateTime::parse_from_rfc3339(&at) {
                self.last_tick
                    .with_label_values(&[channel])
                    .set(time.timestamp_millis() as f64 / 1000.0);
            }
        }
        for (name, hits) in self.exception_hits() {
            let counter = self.exception_hits.with_label_values(&[name.as_str()]);
            counter.inc_by(hits.saturating_sub(counter.get()));
        }
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding metrics: {error}");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Metrics {
    /// The latest posture report only: a re-created container's findings replace the old.
    fn render_posture(&self, report: Option<&PostureReport>) {
        self.container.posture_score.reset();
        self.container.posture_findings.reset();
        let Some(report) = report else { return };
        self.container
            .posture_score
            .with_label_values(&[report.container.as_str()])
            .set(f64::from(report.score()));
        for finding in &report.findings {
            self.container
                .posture_findings
                .with_label_values(&[finding.finding.as_str(), finding.severity.as_str()])
                .set(1.0);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// CLOCK_MONOTONIC in ns, the clock of `bpf_ktime_get_ns`.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_by_kind_and_network_counters_only_go_up() {
        let m = Metrics::new();
        m.drops(&[("exec".into(), 3)]);
        m.drops(&[
            ("exec".into(), 5),
            ("open".into(), 1),
            ("nonsense".into(), 9),
        ]);
        assert_eq!(m.event_counts().1, 6);
        m.network_bytes([100, 10]);
        m.network_bytes([150, 10]);
        // The container restarted: Docker's counters began again at 20 and 5.
        m.network_bytes([20, 5]);
        let rx = m.container.network_total.with_label_values(&["rx"]).get();
        let tx = m.container.network_total.with_label_values(&["tx"]).get();
        assert_eq!((rx, tx), (170, 15));
        m.config("abc");
        m.config("def");
        m.sink_failure("webhook");
        let text = {
            let mut out = Vec::new();
            let _ = TextEncoder::new().encode(&m.registry.gather(), &mut out);
            String::from_utf8_lossy(&out).into_owned()
        };
        assert!(text.contains(r#"crabpot_kernel_events_dropped_total{kind="exec"} 5"#));
        assert!(text.contains(r#"crabpot_config_info{sha256="def"} 1"#));
        assert!(
            !text.contains(r#"sha256="abc""#),
            "a reload replaces the digest"
        );
        assert!(text.contains(r#"crabpot_sink_failures_total{sink="webhook"} 1"#));
    }
}
