//! Starting the agent's tasks: the sources, the alert router, the Docker-side channels, the
//! ring-buffer drain and the HTTP listener; returns the kernel-event loop to run.
use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{broadcast, mpsc, watch},
    task::JoinHandle,
};

use crate::{
    cli::{AgentArgs, Toasts},
    kernel_side,
    pipeline::KernelLoop,
    policy::{
        denylist::Denylist,
        dns_learn::DnsLearner,
        exe_identity::ExeIdentity,
        hosts,
        kernel_rules::KernelRules,
        rules::{Action, Policy},
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
        bpf::{self, decode::RuleName, drops},
        container::ContainerTracker,
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

use super::{ALERT_CAPACITY, BUS_CAPACITY, Prepared, Running, announce, report_layers};

/// Start every task: sources, sinks, channels, the HTTP listener; returns the kernel-event
/// loop to run, its bus, and the sender that keeps the bus open in poll-only mode.
pub(super) fn start(
    args: &AgentArgs,
    prepared: Prepared,
) -> (
    Running,
    KernelLoop,
    mpsc::Receiver<crate::sources::bpf::bus::BusMessage>,
    mpsc::Sender<crate::sources::bpf::bus::BusMessage>,
) {
    let Prepared {
        settings,
        config,
        scanner,
        log_writer,
        audit_writer,
        token,
        docker,
        policy,
        kernel,
        poll_only_reason,
    } = prepared;
    announce(args, &settings, &config, kernel.is_some());
    let layers = kernel_side::layers(&policy, kernel.as_ref());
    report_layers(&policy, &layers);
    let metrics = Arc::new(Metrics::new());
    for (rule, layer) in &layers {
        metrics.layer(rule, layer);
    }
    let Sources {
        mut tasks,
        allow,
        events,
        dropped,
        open_filtered,
        base_tx,
        policy_rx,
        guarded,
        docker_events,
    } = start_sources(&config, &docker, &policy, kernel);
    if let Some(map) = open_filtered {
        let metrics = metrics.clone();
        tasks.push(tokio::spawn(async move {
            let every = Duration::from_millis(500);
            let report = move |total| metrics.open_filtered_total(total);
            if let Err(error) = drops::watch_filtered(map, report, every).await {
                tracing::error!("filtered-open counter watch stopped: {error:#}");
            }
        }));
    }
    let hub = dashboard::Hub::default();
    let (alerts, stop_router, router) = start_router(
        args,
        &config,
        &docker,
        &guarded,
        &metrics,
        &hub,
        log_writer,
        poll_only_reason,
    );
    let denylist = Arc::new(Denylist::new(&config.process_denylist));
    let identity = Arc::new(ExeIdentity::new(&config.process_denylist));
    let alerted_pids = AlertedPids::default();
    let probes = crate::policy::origin::Probes::default();
    let (stats_tx, stats_rx) = watch::channel(None);
    let ticks = Arc::new(ChannelTicks::default());
    let ctx = WatchContext {
        docker: docker.clone(),
        config: config.clone(),
        container: guarded.clone(),
        alerts: alerts.clone(),
        ticks: ticks.clone(),
        docker_events,
    };
    let channels = Channels {
        stats_tx,
        denylist: denylist.clone(),
        identity: identity.clone(),
        alerted_pids: alerted_pids.clone(),
        probes: probes.clone(),
        allow: allow.clone(),
        scanner,
    };
    tasks.extend(start_channels(ctx, &config, channels));
    let (bus_tx, bus) = mpsc::channel(BUS_CAPACITY);
    // Held until the end: in poll-only mode nothing else sends, and the loop must still run.
    let bus_keepalive = bus_tx.clone();
    if let (Some(events), Some(dropped)) = (events, dropped) {
        tasks.extend(start_drain(events, dropped, bus_tx));
    }
    let rules = kernel_rules(&config, &policy, denylist, identity, alerted_pids, probes);
    let (audit_tx, audit_rx) = mpsc::channel(SINK_QUEUE);
    let audit_task = tokio::spawn(alert_log::writer::run(audit_writer, audit_rx));
    let (trust, trust_rx) = watch::channel(settings.trust);
    let (trust_resets_tx, trust_resets) = mpsc::channel(8);
    let http_state = HttpState {
        metrics: metrics.clone(),
        views: StateViews {
            container: guarded.clone(),
            stats: stats_rx,
            trust: trust_rx,
            ticks,
        },
        token: Arc::new(token),
        remote: args.listen_remote,
        info: static_info(&settings, layers),
        docker,
        hub: hub.clone(),
        trust_resets: trust_resets_tx,
    };
    tasks.extend(start_http(args, http_state, hub, &guarded, &metrics));
    tasks.push(tokio::spawn(systemd::watchdog()));
    systemd::notify("READY=1");
    tasks.push(tokio::spawn(reload::on_sighup(
        args.clone(),
        base_tx,
        alerts.clone(),
    )));
    let kernel_loop = KernelLoop {
        args: args.clone(),
        guarded,
        rules,
        policy: policy_rx,
        alerts: alerts.clone(),
        audit: audit_tx,
        trust,
        trust_resets,
        metrics,
        dns: DnsLearner::new(allow),
    };
    let running = Running {
        tasks,
        alerts,
        stop_router,
        router,
        audit_task,
    };
    (running, kernel_loop, bus, bus_keepalive)
}

/// The sources every later part follows: the container tracker (the guarded container and
/// its Docker events), the host-name resolver, the in-kernel enforcer.
struct Sources {
    tasks: Vec<JoinHandle<()>>,
    allow: Option<crate::actions::kernel_allow::SharedAllow>,
    events: Option<aya::maps::RingBuf<aya::maps::MapData>>,
    dropped: Option<aya::maps::PerCpuArray<aya::maps::MapData, u64>>,
    open_filtered: Option<aya::maps::PerCpuArray<aya::maps::MapData, u64>>,
    base_tx: watch::Sender<Arc<Policy>>,
    policy_rx: watch::Receiver<Arc<Policy>>,
    guarded: watch::Receiver<Option<crate::sources::container::GuardedContainer>>,
    docker_events: broadcast::Sender<crate::sources::container::DockerEvent>,
}

fn start_sources(
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
            Some(k.cgroups),
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
    let mut tasks: Vec<JoinHandle<()>> = vec![
        tokio::spawn(tracker.run()),
        tokio::spawn(hosts::keep_resolved(base_rx, policy_tx)),
    ];
    if let Some(enforcer) = enforcer {
        tasks.push(tokio::spawn(
            enforcer.run(guarded.clone(), policy_rx.clone()),
        ));
    }
    Sources {
        tasks,
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

/// The exec/connect rules of the kernel-event loop, sharing the denylist and identities
/// with the `docker top` backstop.
fn kernel_rules(
    config: &crate::config::MonitorConfig,
    policy: &Policy,
    denylist: Arc<Denylist>,
    identity: Arc<ExeIdentity>,
    alerted_pids: AlertedPids,
    probes: crate::policy::origin::Probes,
) -> KernelRules {
    let rules = KernelRules::new(
        denylist,
        identity,
        config.network_allow.clone(),
        alerted_pids,
    )
    .with_probes(probes);
    if policy.action(RuleName::Connect) != Action::Off {
        rules.without_connect_alerts()
    } else {
        rules
    }
}

fn static_info(settings: &settings::Settings, layers: Vec<(String, String)>) -> Arc<StaticInfo> {
    Arc::new(StaticInfo {
        version: env!("CARGO_PKG_VERSION"),
        profiles: settings.profiles.clone(),
        layers,
        dashboard_url: String::new(),
        started_at: crate::alert::now_rfc3339(),
    })
}

/// The alert router (sinks and auto-pause) and the sender every channel raises through.
#[allow(clippy::too_many_arguments)]
fn start_router(
    args: &AgentArgs,
    config: &crate::config::MonitorConfig,
    docker: &bollard::Docker,
    guarded: &watch::Receiver<Option<crate::sources::container::GuardedContainer>>,
    metrics: &Arc<Metrics>,
    hub: &dashboard::Hub,
    log_writer: AlertLogWriter,
    poll_only_reason: Option<String>,
) -> (
    AlertSender,
    tokio::sync::oneshot::Sender<()>,
    JoinHandle<()>,
) {
    let (alerts_tx, alerts_rx) = mpsc::channel(ALERT_CAPACITY);
    let alerts = AlertSender::new(alerts_tx, guarded.clone(), config.container.clone());
    if let Some(reason) = poll_only_reason {
        let alert = crate::alert::Alert::new(
            crate::alert::Severity::Warning,
            crate::alert::AlertSource::Policy,
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
    .start(alerts_rx, router_stop);
    (alerts, stop_router, router)
}

/// What the Docker-side channels share with the kernel rules.
struct Channels {
    stats_tx: watch::Sender<Option<crate::sources::watchers::stats::StatsSample>>,
    denylist: Arc<Denylist>,
    identity: Arc<ExeIdentity>,
    alerted_pids: AlertedPids,
    probes: crate::policy::origin::Probes,
    allow: Option<crate::actions::kernel_allow::SharedAllow>,
    scanner: LogScanner,
}

/// The six Docker-side channels.
fn start_channels(
    ctx: WatchContext,
    config: &crate::config::MonitorConfig,
    channels: Channels,
) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(watchers::run_stream(
            StatsWatcher::new(channels.stats_tx),
            ctx.clone(),
        )),
        tokio::spawn(watchers::run_polling(
            ProcessPoll::new(
                channels.denylist,
                channels.identity,
                channels.alerted_pids,
                config.process_poll,
            )
            .with_probes(channels.probes),
            ctx.clone(),
        )),
        tokio::spawn(watchers::run_polling(
            NetworkPoll::new(config.network_poll).with_dynamic_allow(channels.allow),
            ctx.clone(),
        )),
        tokio::spawn(watchers::run_stream(
            LogsWatcher::new(channels.scanner),
            ctx.clone(),
        )),
        tokio::spawn(HealthWatcher::default().run(ctx.clone())),
        tokio::spawn(watchers::events::run(ctx)),
    ]
}

/// The ring-buffer drain and the drop-counter watch.
fn start_drain(
    events: aya::maps::RingBuf<aya::maps::MapData>,
    dropped: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    bus_tx: mpsc::Sender<crate::sources::bpf::bus::BusMessage>,
) -> Vec<JoinHandle<()>> {
    let watch_tx = bus_tx.clone();
    vec![
        tokio::spawn(async move {
            if let Err(error) = bpf::ring::drain(events, bus_tx).await {
                tracing::error!("ring buffer drain stopped: {error:#}");
            }
        }),
        tokio::spawn(async move {
            if let Err(error) = drops::watch(dropped, watch_tx, Duration::from_millis(500)).await {
                tracing::error!("drop counter watch stopped: {error:#}");
            }
        }),
    ]
}

/// The HTTP listener (dashboard, /metrics, control), the optional metrics-only listener and
/// the dashboard's state feed.
fn start_http(
    args: &AgentArgs,
    mut http_state: HttpState,
    hub: dashboard::Hub,
    guarded: &watch::Receiver<Option<crate::sources::container::GuardedContainer>>,
    metrics: &Arc<Metrics>,
) -> Vec<JoinHandle<()>> {
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
    let mut tasks = vec![tokio::spawn(dashboard::hub::follow_state(
        hub,
        http_state.views.stats.clone(),
        guarded.clone(),
        http_state.views.trust.clone(),
        bpf_mode,
        move || {
            let (events, dropped) = counter_source.event_counts();
            serde_json::json!({"events": events, "dropped": dropped})
        },
    ))];
    if let Some(address) = args.metrics_listen {
        let router = http::metrics_router(http_state.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(error) = http::serve_router(address, router).await {
                tracing::error!("metrics listener stopped: {error:#}");
            }
        }));
    }
    let listen = args.listen;
    tasks.push(tokio::spawn(async move {
        if let Err(error) = http::serve(listen, http_state).await {
            tracing::error!("HTTP listener stopped: {error:#}");
        }
    }));
    tracing::info!("status and metrics: http://{listen}/metrics; control: {dashboard_url}");
    tasks
}
