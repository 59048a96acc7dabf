//! The agent: start the sources, route kernel events through the policy, fan alerts out to
//! the sinks and the auto-pause action, stop cleanly without losing queued alerts.
use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::channels::logs::LogScanner;
use crate::model::sender::AlertSender;
use crate::{
    cli::AgentArgs,
    kernel_side,
    policy::rules::Policy,
    preflight::{self, KernelFeatures},
    settings,
    sinks::{alert_log::AlertLogWriter, http, systemd},
    sources::{bpf, docker},
};

mod learning;
mod signals;
mod start;
mod tasks;
mod units;

/// Queue between the ring-buffer drain and the agent loop, in batches of up to
/// `ring::BATCH` events (64 × 256: at most 16 Ki events in flight).
const BUS_CAPACITY: usize = 64;
/// Queue between all channels and the alert router.
pub const ALERT_CAPACITY: usize = 64 * 1024;
/// How long a clean stop waits for queued alerts to reach the sinks.
const DRAIN_ON_STOP: Duration = Duration::from_secs(5);
/// How long a clean stop waits for the producers to notice the cancellation.
const TASKS_ON_STOP: Duration = Duration::from_secs(3);

/// What start-up prepared before any task runs: settings, the open logs, the token, the
/// Docker client and the kernel side (absent in poll-only mode, with the reason).
struct Prepared {
    settings: settings::Settings,
    config: Arc<crate::config::MonitorConfig>,
    log_writer: AlertLogWriter,
    audit_writer: AlertLogWriter,
    token: String,
    docker: bollard::Docker,
    policy: Arc<Policy>,
    kernel: Option<kernel_side::KernelSide>,
    poll_only_reason: Option<String>,
    /// `--learn`: the session (its recorder, timer and output).
    learning: Option<learning::Learning>,
}

/// The running agent: its tasks, and what a clean stop must drain, in order.
struct Running {
    tasks: tasks::Tasks,
    alerts: AlertSender,
    stop_router: tokio::sync::oneshot::Sender<()>,
    router: JoinHandle<()>,
    audit_task: JoinHandle<()>,
}

/// Prepare (checks, files, token, kernel side), start the tasks, run the kernel-event loop
/// until a stop signal (or its error), then stop in order.
pub async fn run(mut args: AgentArgs) -> anyhow::Result<()> {
    let mut prepared = prepare(&mut args).await?;
    let signals = signals::Signals::install()?;
    let stop_token = CancellationToken::new();
    let learning = prepared.learning.take();
    let recorder = learning.as_ref().map(|l| l.recorder.clone());
    let (running, kernel_loop, bus) = start::start(&args, prepared, signals, &stop_token, recorder);
    if let Some(learning) = &learning {
        learning.announce();
        learning.start_timer(&stop_token);
    }
    let outcome = kernel_loop.run(bus, stop_token.clone()).await;
    // An error in the loop stops everything else too.
    stop_token.cancel();
    systemd::notify("STOPPING=1");
    stop(running).await;
    // Every queued alert has reached the recorder: what was seen so far is written, also
    // when a signal cut the learning short.
    if let Some(learning) = learning {
        learning.finish()?;
    }
    outcome
}

/// Checks, settings, files and the token; the kernel side loaded (or why not).
async fn prepare(args: &mut AgentArgs) -> anyhow::Result<Prepared> {
    preflight::require_root()?;
    preflight::raise_memlock();
    let mut settings = settings::resolve(args)?;
    // The file's `listen:` keys fill in the listener flags not given.
    settings.listeners.apply(args);
    let args = &*args;
    // A bad setting is an error, not a reason to fall back to poll-only mode.
    bpf::loader::check_ring_size(args.ring_buffer_bytes)?;
    // Learn mode carries the configured policy over, then runs with nothing enforced.
    let learning = learning::Learning::new(args, &settings);
    if learning.is_some() {
        settings.monitor.auto_pause = false;
        settings.policy = crate::policy::learn::audit_everything(&settings.policy);
    }
    let config = Arc::new(settings.monitor.clone());
    // Checked here; each guarded container's logs channel compiles its own.
    LogScanner::new(&config.log_patterns)?;
    let (log_writer, audit_writer) = open_logs(&config)?;
    let log_writer = log_writer.with_format(args.output_format);
    check_exposure(args)?;
    let token_path = args
        .token_file
        .clone()
        .unwrap_or_else(crate::paths::token_file);
    let token = http::load_or_create_token(&token_path).with_context(|| {
        format!(
            "cannot read or create the token file {}",
            token_path.display()
        )
    })?;
    KernelFeatures::probe().report();
    let docker = docker::connect().await?;
    let policy = Arc::new(settings.policy.clone());
    let (kernel, poll_only_reason) = if args.no_bpf {
        (None, Some("--no-bpf was given".to_string()))
    } else {
        match kernel_side::start(args, &policy, &config) {
            Ok(kernel) => {
                // Asked for, not possible here: refuse rather than pretend (issue 15).
                let lsm = kernel.enforcer.lsm_rules();
                if let Some(why) = crate::actions::enforcer::unenforceable(&policy, lsm) {
                    anyhow::bail!(why);
                }
                (Some(kernel), None)
            }
            Err(error) => (None, Some(format!("{error:#}"))),
        }
    };
    if let Some(reason) = &poll_only_reason {
        tracing::error!(
            "eBPF unavailable ({reason}): running in poll-only mode (docker top, socket-table \
             and Docker API channels; no kernel events, no in-kernel blocking)"
        );
    }
    Ok(Prepared {
        settings,
        config,
        log_writer,
        audit_writer,
        token,
        docker,
        policy,
        kernel,
        poll_only_reason,
        learning,
    })
}

fn open_logs(
    config: &crate::config::MonitorConfig,
) -> anyhow::Result<(AlertLogWriter, AlertLogWriter)> {
    let log_writer = AlertLogWriter::open(
        &config.alerts_log,
        config.alerts_log_max_bytes,
        config.alerts_log_keep,
    )
    .with_context(|| {
        format!(
            "cannot open the alerts log {}; choose another with --alerts-log",
            config.alerts_log.display()
        )
    })?;
    let audit_path = crate::paths::audit_log(&config.alerts_log);
    let audit_writer = AlertLogWriter::open(
        &audit_path,
        config.alerts_log_max_bytes,
        config.alerts_log_keep,
    )
    .with_context(|| format!("cannot open the audit log {}", audit_path.display()))?;
    Ok((log_writer, audit_writer))
}

/// A listener beyond loopback needs `--listen-remote`.
fn check_exposure(args: &AgentArgs) -> anyhow::Result<()> {
    let exposed = !args.listen.ip().is_loopback()
        || args.metrics_listen.is_some_and(|a| !a.ip().is_loopback());
    if exposed && !args.listen_remote {
        anyhow::bail!(
            "--listen {} / --metrics-listen {:?}: not a loopback address: add --listen-remote \
             to expose the agent beyond this host (every request then needs the token)",
            args.listen,
            args.metrics_listen
        );
    }
    Ok(())
}

/// Stop the producers (cancelled, joined with a deadline), then let every queued alert
/// reach the sinks (bounded): the alerts log last, so nothing raised is lost.
async fn stop(running: Running) {
    let Running {
        tasks,
        alerts,
        stop_router,
        router,
        audit_task,
    } = running;
    tasks.stop(TASKS_ON_STOP).await;
    drop(alerts);
    let _ = stop_router.send(());
    if tokio::time::timeout(DRAIN_ON_STOP, router).await.is_err() {
        tracing::warn!("alerts still queued after {DRAIN_ON_STOP:?} at stop");
    }
    let _ = tokio::time::timeout(DRAIN_ON_STOP, audit_task).await;
}

fn announce(
    args: &AgentArgs,
    settings: &settings::Settings,
    config: &crate::config::MonitorConfig,
    ebpf: bool,
) {
    tracing::info!(
        "crabpot-agent {} started: profiles {}, mode {}, ring buffer {} KiB, alerts to {}, \
         auto-pause {}",
        env!("CARGO_PKG_VERSION"),
        settings.profiles.join("+"),
        if ebpf { "ebpf" } else { "poll-only" },
        args.ring_buffer_bytes / 1024,
        config.alerts_log.display(),
        if config.auto_pause { "on" } else { "off" },
    );
}

/// The start-up line that says which layer enforces each rule.
fn report_layers(policy: &Policy, layers: &[(String, String)]) {
    let layers: Vec<String> = policy
        .rules()
        .zip(layers)
        .map(|((rule, action), (_, layer))| format!("{}={action}/{layer}", rule.as_str()))
        .collect();
    tracing::info!(
        "policy: {} (allowlist: loopback, the container's resolvers on port 53{}{})",
        layers.join(" "),
        policy
            .allow
            .iter()
            .map(|n| format!(", {n}"))
            .collect::<String>(),
        policy
            .allow_hosts
            .iter()
            .map(|h| format!(
                ", {}{}",
                h.name,
                h.port.map(|p| format!(":{p}")).unwrap_or_default()
            ))
            .collect::<String>()
    );
}
