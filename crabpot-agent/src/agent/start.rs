//! Starting the agent's tasks: the sources, the alert router, the Docker-side channels, the
//! ring-buffer drain and the HTTP listener; returns the kernel-event loop to run.
use crate::policy::{break_glass::BreakGlass, exceptions::Exceptions};
use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{broadcast, mpsc, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use crate::model::sender::AlertSender;
use crate::{
    actions::dns_learn::DnsLearner,
    channels::{
        self as watchers, ChannelTicks, WatchContext,
        health::HealthWatcher,
        logs::{LogScanner, LogsWatcher},
        network::NetworkPoll,
        processes::ProcessPoll,
        stats::StatsWatcher,
    },
    events::Judges,
    policy::alerted::AlertedPids,
};
use crate::{
    cli::{AgentArgs, Toasts},
    kernel_side,
    pipeline::KernelLoop,
    policy::{
        denylist::Denylist, exe_identity::ExeIdentity, hosts, kernel_rules::KernelRules,
        rules::Policy,
    },
    reload, settings,
    sinks::{
        alert_log::{self, AlertLogWriter},
        dashboard,
        dispatcher::SINK_QUEUE,
        http::{self, HttpState, StaticInfo},
        metrics::{Metrics, StateViews},
        router::AlertRouter,
        systemd, toast,
    },
    sources::{
        bpf::{self, bus::BusMessage, drops},
        container::ContainerTracker,
    },
};

use super::{
    ALERT_CAPACITY, BUS_CAPACITY, Prepared, Running, announce, report_layers, signals::Signals,
    tasks::Tasks,
};

/// Start every task: sources, sinks, channels, the HTTP listener, the signal handler;
/// returns what runs them and the kernel-event loop with its bus (none in poll-only mode).
pub(super) fn start(
    args: &AgentArgs,
    prepared: Prepared,
    signals: Signals,
    stop: &CancellationToken,
    learn: Option<Arc<crate::policy::learn::Recorder>>,
) -> (Running, KernelLoop, Option<mpsc::Receiver<BusMessage>>) {
    // Taken apart field by field as each part is started.
    let p = prepared;
    let (config, policy, docker) = (p.config, p.policy, p.docker);
    let (metrics, layers) = observe_layers(args, &p.settings, &config, &policy, p.kernel.as_ref());
    let mut tasks = Tasks::new(stop.clone());
    let mut sources = start_sources(&mut tasks, &config, &docker, &policy, p.kernel);
    if let Some(map) = sources.open_filtered.take() {
        watch_filtered_opens(&mut tasks, map, &metrics);
    }
    let hub = dashboard::Hub::default();
    let (alerts, stop_router, router) = start_router(
        args,
        &config,
        &docker,
        &sources.guarded,
        &metrics,
        &hub,
        p.log_writer,
        (p.poll_only_reason, learn.clone()),
    );
    let ticks = Arc::new(ChannelTicks::default());
    let ctx = watch_context(&docker, &config, &sources, &alerts, &ticks);
    metrics.set_exceptions(p.settings.exceptions.clone());
    let operator = (BreakGlass::default(), p.settings.exceptions.clone());
    let (shared, (stats_rx, posture_rx)) =
        start_channels(&mut tasks, ctx, &config, &sources, p.scanner, operator);
    let break_glass = shared.glass.clone();
    let bus = start_drain(&mut tasks, sources.events, sources.dropped);
    let (audit_tx, audit_rx) = mpsc::channel(SINK_QUEUE);
    let audit_task = tokio::spawn(alert_log::writer::run(p.audit_writer, audit_rx));
    let (trust, trust_rx) = watch::channel(p.settings.trust);
    let (trust_resets_tx, trust_resets) = mpsc::channel(8);
    let http_state = HttpState {
        metrics: metrics.clone(),
        views: StateViews {
            container: sources.guarded.clone(),
            stats: stats_rx,
            posture: posture_rx,
            trust: trust_rx,
            ticks,
        },
        token: Arc::new(p.token),
        remote: args.listen_remote,
        info: static_info(&p.settings, layers),
        docker,
        hub: hub.clone(),
        trust_resets: trust_resets_tx,
        break_glass,
    };
    start_http(
        &mut tasks,
        args,
        http_state,
        hub,
        &sources.guarded,
        &metrics,
    );
    let base_tx = sources.base_tx;
    start_control(&mut tasks, args, signals, stop, base_tx, &alerts, &metrics);
    let kernel_loop = KernelLoop {
        args: args.clone(),
        guarded: sources.guarded,
        judges: judges(shared),
        policy: sources.policy_rx,
        alerts: alerts.clone(),
        audit: audit_tx,
        trust,
        trust_resets,
        metrics,
        dns: DnsLearner::new(sources.allow),
        exceptions: p.settings.exceptions.clone(),
        learn,
    };
    let running = Running {
        tasks,
        alerts,
        stop_router,
        router,
        audit_task,
    };
    (running, kernel_loop, bus)
}

/// What every Docker-side channel shares: the engine, the settings, the container, where
/// alerts go and where ticks are recorded.
fn watch_context(
    docker: &bollard::Docker,
    config: &Arc<crate::config::MonitorConfig>,
    sources: &Sources,
    alerts: &AlertSender,
    ticks: &Arc<ChannelTicks>,
) -> WatchContext {
    WatchContext {
        docker: docker.clone(),
        config: config.clone(),
        container: sources.guarded.clone(),
        alerts: alerts.clone(),
        ticks: ticks.clone(),
        docker_events: sources.docker_events.clone(),
    }
}

/// Announce the start, say which layer enforces each rule, and publish that in metrics.
fn observe_layers(
    args: &AgentArgs,
    settings: &settings::Settings,
    config: &crate::config::MonitorConfig,
    policy: &Policy,
    kernel: Option<&kernel_side::KernelSide>,
) -> (Arc<Metrics>, Vec<(String, String)>) {
    announce(args, settings, config, kernel.is_some());
    let layers = kernel_side::layers(policy, kernel);
    report_layers(policy, &layers);
    let metrics = Arc::new(Metrics::new());
    metrics.config(&settings::config_sha256(settings.file.as_deref()));
    for (rule, layer) in &layers {
        metrics.layer(rule, layer);
    }
    (metrics, layers)
}

/// The kernel's count of opens it kept out of the ring buffer, into the metrics.
fn watch_filtered_opens(
    tasks: &mut Tasks,
    map: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    metrics: &Arc<Metrics>,
) {
    let metrics = metrics.clone();
    tasks.spawn("filtered-open counter watch", async move {
        let every = Duration::from_millis(500);
        let report = move |total| metrics.open_filtered_total(total);
        if let Err(error) = drops::watch_filtered(map, report, every).await {
            tracing::error!("filtered-open counter watch stopped: {error:#}");
        }
    });
}

/// The systemd watchdog and readiness, the signal handler and the SIGHUP reload.
fn start_control(
    tasks: &mut Tasks,
    args: &AgentArgs,
    signals: Signals,
    stop: &CancellationToken,
    base_tx: watch::Sender<Arc<Policy>>,
    alerts: &AlertSender,
    metrics: &Arc<Metrics>,
) {
    let (reload_tx, reload_rx) = mpsc::channel(1);
    tasks.spawn("signals", signals.run(stop.clone(), reload_tx));
    tasks.spawn(
        "reload",
        reload::run(
            args.clone(),
            reload_rx,
            base_tx,
            alerts.clone(),
            metrics.clone(),
        ),
    );
    // Only under systemd with WatchdogSec= (otherwise there is nothing to ping).
    if systemd::watchdog_interval().is_some() {
        tasks.spawn("systemd watchdog", systemd::watchdog());
    }
    systemd::notify("READY=1");
}

/// The sources every later part follows: the container tracker (the guarded container and
/// its Docker events), the host-name resolver, the in-kernel enforcer.
struct Sources {
    allow: Option<crate::actions::kernel_allow::SharedAllow>,
    events: Option<aya::maps::RingBuf<aya::maps::MapData>>,
    dropped: Option<aya::maps::PerCpuArray<aya::maps::MapData, u64>>,
    open_filtered: Option<aya::maps::PerCpuArray<aya::maps::MapData, u64>>,
    base_tx: watch::Sender<Arc<Policy>>,
    policy_rx: watch::Receiver<Arc<Policy>>,
    guarded: watch::Receiver<Option<crate::model::container::GuardedContainer>>,
    docker_events: broadcast::Sender<crate::sources::container::DockerEvent>,
}

fn start_sources(
    tasks: &mut Tasks,
    config: &crate::config::MonitorConfig,
    docker: &bollard::Docker,
    policy: &Arc<Policy>,
    kernel: Option<kernel_side::KernelSide>,
) -> Sources {
    let allow = kernel.as_ref().map(|k| k.enforcer.allow());
    let (events, dropped, open_filtered, cgroups, enforcer) = match kernel {
        Some(k) => (
            Some(k.events),
            Some(k.dropped),
            Some(k.open_filtered),
            Some(k.guard),
            Some(k.enforcer),
        ),
        None => (None, None, None, None, None),
    };
    // SIGHUP replaces the base policy; the host resolver publishes it, names resolved.
    let (base_tx, base_rx) = watch::channel(policy.clone());
    let (policy_tx, policy_rx) = watch::channel(policy.clone());
    let (guarded_tx, guarded) = watch::channel(None);
    let (docker_events, _) = broadcast::channel(256);
    let tracker = ContainerTracker::new(
        docker.clone(),
        config.container.clone(),
        cgroups,
        guarded_tx,
        docker_events.clone(),
    );
    tasks.spawn("container tracker", tracker.run());
    tasks.spawn(
        "host-name resolver",
        hosts::keep_resolved(base_rx, policy_tx),
    );
    if let Some(enforcer) = enforcer {
        tasks.spawn(
            "in-kernel enforcer",
            enforcer.run(guarded.clone(), policy_rx.clone()),
        );
    }
    Sources {
        allow,
        events,
        dropped,
        open_filtered,
        base_tx,
        policy_rx,
        guarded,
        docker_events,
    }
}

/// The kernel-event judges, sharing the denylist, the identities, what was alerted and
/// the health probes with the `docker top` backstop.
fn judges(shared: Shared) -> Judges {
    Judges::new(
        KernelRules::new(shared.denylist, shared.identity, shared.alerted_pids)
            .with_probes(shared.probes)
            .with_break_glass(shared.glass),
    )
}

fn static_info(settings: &settings::Settings, layers: Vec<(String, String)>) -> Arc<StaticInfo> {
    Arc::new(StaticInfo {
        version: env!("CARGO_PKG_VERSION"),
        profiles: settings.profiles.clone(),
        layers,
        dashboard_url: String::new(),
        started_at: crate::model::alert::now_rfc3339(),
    })
}

/// The alert router (sinks and auto-pause) and the sender every channel raises through.
#[allow(clippy::too_many_arguments)]
fn start_router(
    args: &AgentArgs,
    config: &crate::config::MonitorConfig,
    docker: &bollard::Docker,
    guarded: &watch::Receiver<Option<crate::model::container::GuardedContainer>>,
    metrics: &Arc<Metrics>,
    hub: &dashboard::Hub,
    log_writer: AlertLogWriter,
    (poll_only_reason, learn): (Option<String>, Option<Arc<crate::policy::learn::Recorder>>),
) -> (
    AlertSender,
    tokio::sync::oneshot::Sender<()>,
    JoinHandle<()>,
) {
    let (alerts_tx, alerts_rx) = mpsc::channel(ALERT_CAPACITY);
    let alerts = AlertSender::new(alerts_tx, guarded.clone(), config.container.clone());
    if let Some(reason) = poll_only_reason {
        let alert = crate::model::alert::Alert::new(
            crate::model::alert::Severity::Warning,
            crate::model::alert::AlertSource::Policy,
            format!(
                "eBPF unavailable, poll-only mode: no kernel events and no in-kernel blocking \
                 ({reason})"
            ),
        );
        let sender = alerts.clone();
        tokio::spawn(async move { sender.raise(alert).await });
    }
    let (stop_router, router_stop) = tokio::sync::oneshot::channel();
    let router = AlertRouter {
        metrics: metrics.clone(),
        auto_pause: config.auto_pause,
        docker: docker.clone(),
        guarded: guarded.clone(),
        alerts: alerts.clone(),
        log_writer,
        toasts: match args.toasts {
            Toasts::On => true,
            Toasts::Off => false,
            Toasts::Auto => toast::detect(),
        },
        webhook: args.webhook.clone().map(|url| (url, args.webhook_format)),
        dashboard: hub.clone(),
    }
    .start_learning(alerts_rx, router_stop, learn);
    (alerts, stop_router, router)
}

/// What the `docker top` backstop shares with the kernel rules: one denylist, one set of
/// executable identities, one record of what was alerted, the health probes.
struct Shared {
    denylist: Arc<Denylist>,
    identity: Arc<ExeIdentity>,
    alerted_pids: AlertedPids,
    probes: crate::policy::origin::Probes,
    glass: BreakGlass,
}

/// The six Docker-side channels; returns what the kernel rules share with them and the
/// stats feed.
fn start_channels(
    tasks: &mut Tasks,
    ctx: WatchContext,
    config: &crate::config::MonitorConfig,
    sources: &Sources,
    scanner: LogScanner,
    (glass, exceptions): (BreakGlass, Arc<Exceptions>),
) -> (Shared, ChannelViews) {
    let shared = Shared {
        denylist: Arc::new(Denylist::new(&config.process_denylist)),
        identity: Arc::new(ExeIdentity::new(&config.process_denylist)),
        alerted_pids: AlertedPids::default(),
        probes: crate::policy::origin::Probes::default(),
        glass,
    };
    let (stats_tx, stats_rx) = watch::channel(None);
    tasks.spawn(
        "stats channel",
        watchers::run_stream(StatsWatcher::new(stats_tx), ctx.clone()),
    );
    let processes = ProcessPoll::new(
        shared.denylist.clone(),
        shared.identity.clone(),
        shared.alerted_pids.clone(),
        config.process_poll,
    )
    .with_probes(shared.probes.clone())
    .with_operator(shared.glass.clone(), exceptions);
    tasks.spawn(
        "process channel",
        watchers::run_polling(processes, ctx.clone()),
    );
    let network = NetworkPoll::new(config.network_poll, sources.policy_rx.clone())
        .with_dynamic_allow(sources.allow.clone());
    tasks.spawn(
        "network channel",
        watchers::run_polling(network, ctx.clone()),
    );
    tasks.spawn(
        "logs channel",
        watchers::run_stream(LogsWatcher::new(scanner), ctx.clone()),
    );
    tasks.spawn(
        "pids channel",
        watchers::run_polling(watchers::pids::PidsWatcher::default(), ctx.clone()),
    );
    tasks.spawn("health channel", HealthWatcher::default().run(ctx.clone()));
    let (posture_tx, posture_rx) = watch::channel(None);
    tasks.spawn(
        "posture channel",
        watchers::posture::PostureWatcher::new(posture_tx).run(ctx.clone()),
    );
    tasks.spawn("events channel", watchers::events::run(ctx));
    (shared, (stats_rx, posture_rx))
}

/// What the channels publish for the metrics and the dashboard: stats and posture.
type ChannelViews = (
    watch::Receiver<Option<crate::channels::stats::StatsSample>>,
    watch::Receiver<Option<crate::policy::posture::PostureReport>>,
);

/// The ring-buffer drain and the drop-counter watch, feeding the bus the kernel loop
/// reads; no bus without a kernel side.
fn start_drain(
    tasks: &mut Tasks,
    events: Option<aya::maps::RingBuf<aya::maps::MapData>>,
    dropped: Option<aya::maps::PerCpuArray<aya::maps::MapData, u64>>,
) -> Option<mpsc::Receiver<BusMessage>> {
    let (events, dropped) = events.zip(dropped)?;
    let (bus_tx, bus) = mpsc::channel(BUS_CAPACITY);
    let watch_tx = bus_tx.clone();
    tasks.spawn("ring-buffer drain", async move {
        if let Err(error) = bpf::ring::drain(events, bus_tx, crate::events::decode).await {
            tracing::error!("ring buffer drain stopped: {error:#}");
        }
    });
    tasks.spawn("drop-counter watch", async move {
        if let Err(error) = drops::watch(dropped, watch_tx, Duration::from_millis(500)).await {
            tracing::error!("drop counter watch stopped: {error:#}");
        }
    });
    Some(bus)
}

/// The HTTP listener (dashboard, /metrics, control), the optional metrics-only listener and
/// the dashboard's state feed.
fn start_http(
    tasks: &mut Tasks,
    args: &AgentArgs,
    mut http_state: HttpState,
    hub: dashboard::Hub,
    guarded: &watch::Receiver<Option<crate::model::container::GuardedContainer>>,
    metrics: &Arc<Metrics>,
) {
    let dashboard_url = format!("http://{}/?token={}", args.listen, http_state.token);
    if let Some(info) = Arc::get_mut(&mut http_state.info) {
        info.dashboard_url = dashboard_url.clone();
    }
    let bpf_mode: serde_json::Value = http_state
        .info
        .layers
        .iter()
        .map(|(rule, layer)| (rule.clone(), serde_json::Value::from(layer.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let counter_source = metrics.clone();
    tasks.spawn(
        "dashboard state feed",
        dashboard::hub::follow_state(
            hub,
            http_state.views.stats.clone(),
            guarded.clone(),
            http_state.views.trust.clone(),
            bpf_mode,
            move || {
                let (events, dropped) = counter_source.event_counts();
                serde_json::json!({"events": events, "dropped": dropped})
            },
        ),
    );
    if let Some(address) = args.metrics_listen {
        let router = http::metrics_router(http_state.clone());
        tasks.spawn("metrics listener", async move {
            if let Err(error) = http::serve_router(address, router).await {
                tracing::error!("metrics listener stopped: {error:#}");
            }
        });
    }
    let listen = args.listen;
    tasks.spawn("HTTP listener", async move {
        if let Err(error) = http::serve(listen, http_state).await {
            tracing::error!("HTTP listener stopped: {error:#}");
        }
    });
    tracing::info!("status and metrics: http://{listen}/metrics; control: {dashboard_url}");
}
