//! The agent: start the sources, route kernel events through the policy, fan alerts out to
//! the sinks and the auto-pause action, stop cleanly without losing queued alerts.
use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{broadcast, mpsc, watch},
    task::JoinHandle,
};

use crate::{
    actions,
    alert::{Alert, Severity},
    bus::BusMessage,
    cli::AgentArgs,
    config::MonitorConfig,
    policy::{denylist::Denylist, kernel_rules::KernelRules},
    preflight::{self, KernelFeatures},
    sinks::{
        alert_log::{self, AlertLogWriter},
        dispatcher::Dispatcher,
        event_printer::{EventFormat, ObservedEvent, format_line, print_line},
        terminal,
    },
    sources::{
        bpf::{self, BpfOptions, drops},
        container::{ContainerTracker, GuardedContainer},
        docker,
        lineage::ProcessTable,
        watchers::{
            self, AlertSender, ChannelTicks, WatchContext,
            health::HealthWatcher,
            logs::{LogScanner, LogsWatcher},
            network::NetworkPoll,
            processes::{AlertedPids, ProcessPoll},
            stats::StatsWatcher,
        },
    },
};

/// Queue between the ring-buffer drain and the agent loop.
const BUS_CAPACITY: usize = 16 * 1024;
/// Queue between all channels and the alert router.
const ALERT_CAPACITY: usize = 64 * 1024;
/// How long a clean stop waits for queued alerts to reach the sinks.
const DRAIN_ON_STOP: Duration = Duration::from_secs(5);

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    preflight::require_root()?;
    preflight::raise_memlock();
    let config = Arc::new(args.monitor_config());
    let scanner = LogScanner::new(&config.log_patterns)?;
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
    KernelFeatures::probe().report();
    let docker = docker::connect().await?;
    let kernel = bpf::load(&BpfOptions {
        ring_buffer_bytes: args.ring_buffer_bytes,
    })?;
    tracing::info!(
        "crabpot-agent {} started: profiles {}, {} tracepoints attached, ring buffer {} KiB, \
         alerts to {}, auto-pause {}",
        env!("CARGO_PKG_VERSION"),
        args.profiles().join("+"),
        bpf::loader::TRACEPOINTS.len(),
        args.ring_buffer_bytes / 1024,
        config.alerts_log.display(),
        if config.auto_pause { "on" } else { "off" },
    );
    let bpf::KernelPipeline {
        ebpf: _programs,
        events,
        monitored_cgroups,
        dropped,
    } = kernel;

    let (guarded_tx, guarded) = watch::channel(None);
    let (docker_events, _) = broadcast::channel(256);
    let tracker = ContainerTracker::new(
        docker.clone(),
        config.container.clone(),
        monitored_cgroups,
        guarded_tx,
        docker_events.clone(),
    );
    let mut tasks: Vec<JoinHandle<()>> = vec![tokio::spawn(tracker.run())];

    let (alerts_tx, alerts_rx) = mpsc::channel(ALERT_CAPACITY);
    let alerts = AlertSender::new(alerts_tx, guarded.clone(), config.container.clone());
    let (stop_router, router_stop) = tokio::sync::oneshot::channel();
    let router = start_router(
        &config,
        docker.clone(),
        guarded.clone(),
        alerts.clone(),
        log_writer,
        alerts_rx,
        router_stop,
    );

    let denylist = Arc::new(Denylist::new(&config.process_denylist));
    let alerted_pids = AlertedPids::default();
    let (stats_tx, _stats) = watch::channel(None);
    let ctx = WatchContext {
        docker,
        config: config.clone(),
        container: guarded.clone(),
        alerts: alerts.clone(),
        ticks: Arc::new(ChannelTicks::default()),
        docker_events,
    };
    tasks.extend([
        tokio::spawn(watchers::run_stream(
            StatsWatcher::new(stats_tx),
            ctx.clone(),
        )),
        tokio::spawn(watchers::run_polling(
            ProcessPoll::new(denylist.clone(), alerted_pids.clone(), config.process_poll),
            ctx.clone(),
        )),
        tokio::spawn(watchers::run_polling(
            NetworkPoll::new(config.network_poll),
            ctx.clone(),
        )),
        tokio::spawn(watchers::run_stream(LogsWatcher::new(scanner), ctx.clone())),
        tokio::spawn(HealthWatcher::default().run(ctx.clone())),
        tokio::spawn(watchers::events::run(ctx.clone())),
    ]);
    drop(ctx);

    let (bus_tx, bus) = mpsc::channel(BUS_CAPACITY);
    let drain = tokio::spawn(bpf::ring::drain(events, bus_tx.clone()));
    let drop_watch = tokio::spawn(drops::watch(dropped, bus_tx, Duration::from_millis(500)));
    let rules = KernelRules::new(denylist, config.network_allow.clone(), alerted_pids);
    let outcome = kernel_loop(bus, &args, &guarded, rules, &alerts).await;

    // Stop the producers, then let every queued alert reach the sinks.
    drain.abort();
    drop_watch.abort();
    for task in tasks {
        task.abort();
    }
    drop(alerts);
    let _ = stop_router.send(());
    if tokio::time::timeout(DRAIN_ON_STOP, router).await.is_err() {
        tracing::warn!("alerts still queued after {DRAIN_ON_STOP:?} at stop");
    }
    outcome
}

/// The alert router: every alert to every sink; CRITICALs also to the auto-pause action.
fn start_router(
    config: &MonitorConfig,
    docker: bollard::Docker,
    guarded: watch::Receiver<Option<GuardedContainer>>,
    alerts: AlertSender,
    log_writer: AlertLogWriter,
    mut incoming: mpsc::Receiver<Alert>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> JoinHandle<()> {
    let mut dispatcher = Dispatcher::default();
    dispatcher.add("terminal", false, terminal::run);
    dispatcher.add("alerts-log", true, move |rx| {
        alert_log::writer::run(log_writer, rx)
    });
    let auto_pause = config.auto_pause;
    let (pause_tx, pause_rx) = mpsc::channel(1024);
    let pauser = tokio::spawn(actions::pause::run(docker, pause_rx, guarded, alerts));
    tokio::spawn(async move {
        let mut stopping = false;
        loop {
            let next = if stopping {
                incoming.recv().await
            } else {
                tokio::select! {
                    next = incoming.recv() => next,
                    _ = &mut stop => {
                        // Take no more alerts, but deliver every one already queued.
                        stopping = true;
                        incoming.close();
                        continue;
                    }
                }
            };
            let Some(alert) = next else { break };
            if auto_pause && alert.severity == Severity::Critical {
                // Full only if pausing is already far behind: it is in hand.
                let _ = pause_tx.try_send(alert.clone());
            }
            dispatcher.dispatch(alert).await;
        }
        pauser.abort();
        dispatcher.close().await;
    })
}

/// Route kernel events until a stop signal.
async fn kernel_loop(
    mut bus: mpsc::Receiver<BusMessage>,
    args: &AgentArgs,
    guarded: &watch::Receiver<Option<GuardedContainer>>,
    mut rules: KernelRules,
    alerts: &AlertSender,
) -> anyhow::Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut table = ProcessTable::default();
    loop {
        let message = tokio::select! {
            message = bus.recv() => match message {
                Some(message) => message,
                None => return Ok(()),
            },
            _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); return Ok(()); }
            _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); return Ok(()); }
        };
        match message {
            BusMessage::Kernel(event) => {
                table.observe(&event);
                let wants_lineage = args.events.is_some()
                    || matches!(
                        event.kind(),
                        crabpot_common::EventKind::Exec | crabpot_common::EventKind::Connect
                    );
                let lineage = if wants_lineage {
                    table.lineage(&event)
                } else {
                    Vec::new()
                };
                if let Some(alert) = rules.evaluate(&event, &lineage) {
                    alerts.raise(alert).await;
                }
                if let Some(format) = args.events {
                    let current = guarded.borrow().clone();
                    let (name, id) = match &current {
                        Some(c) => (c.name.as_str(), c.id.as_str()),
                        None => (args.container.as_str(), ""),
                    };
                    let observed = ObservedEvent {
                        container: name,
                        container_id: id,
                        event: &event,
                        lineage: &lineage,
                    };
                    print_line(&format_line(&observed, format))
                        .context("writing an event to stdout")?;
                }
            }
            BusMessage::KernelDrops(report) => {
                tracing::warn!(
                    total = report.total,
                    "kernel ring buffer full: {} events dropped so far ({:?}); raise \
                     --ring-buffer-bytes",
                    report.total,
                    report.by_kind
                );
                if args.events == Some(EventFormat::Json) {
                    let line = serde_json::json!({"kind": "dropped", "total": report.total,
                        "by_kind": report.by_kind});
                    print_line(&line.to_string()).context("writing to stdout")?;
                }
            }
            BusMessage::DecodeError { error, total } => {
                tracing::warn!("undecodable kernel record ({total} so far): {error}");
            }
        }
    }
}
