//! Starting the agent's tasks: the sources, the alert router, the Docker-side channels, the
//! ring-buffer drain and the HTTP listener; returns the kernel-event loop to run.
use crate::actions::decide::{DecisionDesk, DeskParts};
use crate::policy::{break_glass::BreakGlass, decisions::DecisionStore, exceptions::Exceptions};
use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

use crate::model::sender::AlertSender;
use crate::{
    actions::dns_learn::DnsLearner,
    channels::ChannelTicks,
    events::Judges,
    model::container::{Feeds, Guarded, GuardedContainer},
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
    sources::bpf::{self, bus::BusMessage, drops},
};

use super::{
    ALERT_CAPACITY, BUS_CAPACITY, Prepared, Running, announce, report_layers,
    signals::Signals,
    tasks::Tasks,
    units::{UnitParts, Units},
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
    let (mut e, p) = start_event_path(args, prepared, stop, learn.clone());
    let tasks = &mut e.running.tasks;
    let (trust, trust_rx) = watch::channel(p.settings.trust);
    let (trusts, trusts_rx) = watch::channel(std::collections::BTreeMap::new());
    let (trust_resets_tx, trust_resets) = mpsc::channel(8);
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let desk = DeskParts {
        store: e.decisions,
        docker: p.docker.clone(),
        guarded: e.primary.clone(),
        alerts: e.running.alerts.clone(),
        audit: e.audit_tx.clone(),
        trust_resets: trust_resets_tx.clone(),
        reload: reload_tx.clone(),
        config_dir: p.settings.config_dir.clone(),
        last_expiry_check: std::sync::Mutex::new(None),
    };
    let desk = start_desk(tasks, &p.config, stop, desk);
    let http_state = HttpState {
        metrics: e.metrics.clone(),
        views: StateViews {
            container: e.primary.clone(),
            stats: e.views.0,
            posture: e.views.1,
            trust: trust_rx,
            ticks: e.ticks,
            guarded: e.guarded.clone(),
            trusts: trusts_rx,
        },
        token: Arc::new(p.token),
        remote: args.listen_remote,
        info: static_info(&p.settings, e.layers),
        docker: p.docker,
        hub: e.hub.clone(),
        trust_resets: trust_resets_tx,
        break_glass: e.shared.glass.clone(),
        decisions: desk,
    };
    start_http(tasks, args, http_state, e.hub, &e.primary, &e.metrics);
    let reload = Reload {
        requests: (reload_tx, reload_rx),
        base_tx: e.sources.base_tx,
        exceptions: p.settings.exceptions.clone(),
    };
    let control = (signals, stop, reload);
    start_control(tasks, args, control, &e.running.alerts, &e.metrics);
    let kernel_loop = KernelLoop {
        args: args.clone(),
        guarded: e.guarded,
        judges: judges(e.shared),
        policy: e.sources.policy_rx,
        alerts: e.running.alerts.clone(),
        audit: e.audit_tx,
        trust,
        trusts,
        trust_start: p.settings.trust,
        trust_resets,
        metrics: e.metrics,
        dns: DnsLearner::new(e.sources.allow),
        exceptions: p.settings.exceptions.clone(),
        learn,
    };
    (e.running, kernel_loop, e.bus)
}

/// The event path, started: what the HTTP API, the decision desk and the kernel-event loop
/// are then built from.
struct EventPath {
    /// Its tasks and what a clean stop drains; later parts add their tasks.
    running: Running,
    metrics: Arc<Metrics>,
    layers: Vec<(String, String)>,
    sources: Sources,
    hub: dashboard::Hub,
    decisions: DecisionStore,
    ticks: Arc<ChannelTicks>,
    shared: Shared,
    guarded: watch::Receiver<Guarded>,
    views: ChannelViews,
    primary: watch::Receiver<Option<GuardedContainer>>,
    bus: Option<mpsc::Receiver<BusMessage>>,
    audit_tx: mpsc::Sender<Arc<crate::model::alert::Alert>>,
}

/// What the rest of the start takes from the prepared agent, once the event path has
/// taken its part (the kernel side, the log writers).
struct Remaining {
    settings: settings::Settings,
    config: Arc<crate::config::MonitorConfig>,
    docker: bollard::Docker,
    token: String,
}

/// The sources, the guarded containers, the alert router, the ring-buffer drain and the
/// audit writer, in that order: each part follows the ones before.
fn start_event_path(
    args: &AgentArgs,
    prepared: Prepared,
    stop: &CancellationToken,
    learn: Option<Arc<crate::policy::learn::Recorder>>,
) -> (EventPath, Remaining) {
    // Taken apart field by field as each part is started.
    let p = prepared;
    let (config, policy, docker) = (p.config, p.policy, p.docker);
    let (metrics, layers) = observe_layers(args, &p.settings, &config, &policy, p.kernel.as_ref());
    let mut tasks = Tasks::new(stop.clone());
    let mut sources = start_sources(&mut tasks, &policy, p.kernel);
    if let Some(map) = sources.filtered.take() {
        watch_filtered(&mut tasks, map, &metrics);
    }
    let hub = dashboard::Hub::default();
    let decisions = DecisionStore::open(crate::policy::decisions::state_file());
    let (alerts_tx, alerts_rx) = mpsc::channel(ALERT_CAPACITY);
    let ticks = Arc::new(ChannelTicks::default());
    metrics.set_exceptions(p.settings.exceptions.clone());
    let shared = Shared::new(&config, BreakGlass::default());
    let (guarded, views) = start_units(
        &mut tasks,
        (&docker, &config, stop),
        (&alerts_tx, &ticks, &shared, &p.settings.exceptions),
        &mut sources,
    );
    let primary = primary_container(&mut tasks, &config, &guarded);
    let alerts = AlertSender::new(alerts_tx, primary.clone(), config.container.clone());
    let (stop_router, router) = start_router(
        args,
        &config,
        &docker,
        &guarded,
        &metrics,
        &hub,
        (p.log_writer, decisions.clone()),
        (p.poll_only_reason, learn),
        (&alerts, alerts_rx),
    );
    let bus = start_drain(&mut tasks, sources.events.take(), sources.dropped.take());
    let (audit_tx, audit_rx) = mpsc::channel(SINK_QUEUE);
    let audit_task = tokio::spawn(alert_log::writer::run(p.audit_writer, audit_rx));
    let running = Running {
        tasks,
        alerts,
        stop_router,
        router,
        audit_task,
    };
    let path = EventPath {
        running,
        metrics,
        layers,
        sources,
        hub,
        decisions,
        ticks,
        shared,
        guarded,
        views,
        primary,
        bus,
        audit_tx,
    };
    let remaining = Remaining {
        settings: p.settings,
        config,
        docker,
        token: p.token,
    };
    (path, remaining)
}

/// The decision desk (approve, deny) and, with `decision_timeout:`, the task that answers
/// the decisions nobody answered in time.
fn start_desk(
    tasks: &mut Tasks,
    config: &crate::config::MonitorConfig,
    stop: &CancellationToken,
    parts: DeskParts,
) -> DecisionDesk {
    let desk = DecisionDesk::new(parts);
    if let Some(timeout) = config.decision_timeout {
        let timeouts = desk
            .clone()
            .run_timeouts(timeout, config.on_timeout, stop.clone());
        tasks.spawn("decision timeouts", timeouts);
    }
    desk
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

/// The kernel's counts of opens and connects it kept out of the ring buffer, into the metrics.
fn watch_filtered(
    tasks: &mut Tasks,
    map: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
    metrics: &Arc<Metrics>,
) {
    let metrics = metrics.clone();
    tasks.spawn("filtered counter watch", async move {
        let every = Duration::from_millis(500);
        let report = move |(opens, connects)| metrics.filtered_totals(opens, connects);
        if let Err(error) = drops::watch_filtered(map, report, every).await {
            tracing::error!("filtered counter watch stopped: {error:#}");
        }
    });
}

/// What a reload (SIGHUP, `crabpot approve --always`) replaces, and its request queue.
struct Reload {
    requests: (mpsc::Sender<()>, mpsc::Receiver<()>),
    base_tx: watch::Sender<Arc<Policy>>,
    exceptions: Arc<Exceptions>,
}

/// The systemd watchdog and readiness, the signal handler and the SIGHUP reload.
fn start_control(
    tasks: &mut Tasks,
    args: &AgentArgs,
    (signals, stop, reload): (Signals, &CancellationToken, Reload),
    alerts: &AlertSender,
    metrics: &Arc<Metrics>,
) {
    let (reload_tx, reload_rx) = reload.requests;
    tasks.spawn("signals", signals.run(stop.clone(), reload_tx));
    tasks.spawn(
        "reload",
        reload::run(
            args.clone(),
            reload_rx,
            reload.base_tx,
            alerts.clone(),
            metrics.clone(),
            reload.exceptions,
        ),
    );
    // Only under systemd with WatchdogSec= (otherwise there is nothing to ping).
    if systemd::watchdog_interval().is_some() {
        tasks.spawn("systemd watchdog", systemd::watchdog());
    }
    systemd::notify("READY=1");
}

/// The sources every later part follows: the kernel's cgroup filter (for the container
/// trackers), the host-name resolver, the in-kernel enforcer (started with the set of
/// guarded containers).
struct Sources {
    allow: Option<crate::actions::kernel_allow::SharedAllow>,
    events: Option<aya::maps::RingBuf<aya::maps::MapData>>,
    dropped: Option<aya::maps::PerCpuArray<aya::maps::MapData, u64>>,
    filtered: Option<aya::maps::PerCpuArray<aya::maps::MapData, u64>>,
    guard: Option<crate::sources::guard::SharedGuard>,
    enforcer: Option<crate::actions::enforcer::Enforcer>,
    base_tx: watch::Sender<Arc<Policy>>,
    policy_rx: watch::Receiver<Arc<Policy>>,
}

fn start_sources(
    tasks: &mut Tasks,
    policy: &Arc<Policy>,
    kernel: Option<kernel_side::KernelSide>,
) -> Sources {
    let allow = kernel.as_ref().map(|k| k.enforcer.allow());
    let (events, dropped, filtered, guard, enforcer) = match kernel {
        Some(k) => (
            Some(k.events),
            Some(k.dropped),
            Some(k.filtered),
            Some(Arc::new(std::sync::Mutex::new(k.guard))),
            Some(k.enforcer),
        ),
        None => (None, None, None, None, None),
    };
    // SIGHUP replaces the base policy; the host resolver publishes it, names resolved.
    let (base_tx, base_rx) = watch::channel(policy.clone());
    let (policy_tx, policy_rx) = watch::channel(policy.clone());
    tasks.spawn(
        "host-name resolver",
        hosts::keep_resolved(base_rx, policy_tx),
    );
    Sources {
        allow,
        events,
        dropped,
        filtered,
        guard,
        enforcer,
        base_tx,
        policy_rx,
    }
}

/// The guarded containers (named ones attached now, selected ones as they start) and the
/// in-kernel enforcer that hooks each of them; the set they are in, and the stats and
/// posture feeds of the first one.
fn start_units(
    tasks: &mut Tasks,
    (docker, config, stop): (
        &bollard::Docker,
        &Arc<crate::config::MonitorConfig>,
        &CancellationToken,
    ),
    (alerts, ticks, shared, exceptions): UnitShared<'_>,
    sources: &mut Sources,
) -> (watch::Receiver<Guarded>, ChannelViews) {
    let (stats_tx, stats_rx) = watch::channel(None);
    let (posture_tx, posture_rx) = watch::channel(None);
    let (units, guarded) = Units::new(UnitParts {
        docker: docker.clone(),
        config: config.clone(),
        guard: sources.guard.take(),
        alerts: alerts.clone(),
        ticks: ticks.clone(),
        shared: shared.clone(),
        exceptions: exceptions.clone(),
        policy: sources.policy_rx.clone(),
        allow: sources.allow.clone(),
        views: Some((stats_tx, posture_tx)),
        stop: stop.clone(),
    });
    tasks.spawn("guarded containers", units.run());
    if let Some(enforcer) = sources.enforcer.take() {
        tasks.spawn(
            "in-kernel enforcer",
            enforcer.run(guarded.clone(), sources.policy_rx.clone()),
        );
    }
    (guarded, (stats_rx, posture_rx))
}

/// What the channels publish for the metrics and the dashboard: stats and posture.
type ChannelViews = (
    watch::Receiver<Option<crate::channels::stats::StatsSample>>,
    watch::Receiver<Option<crate::policy::posture::PostureReport>>,
);

/// What every guarded container's channels share with the rest of the agent.
type UnitShared<'a> = (
    &'a mpsc::Sender<crate::model::alert::Alert>,
    &'a Arc<ChannelTicks>,
    &'a Shared,
    &'a Arc<crate::policy::exceptions::Exceptions>,
);

/// The container the agent-wide views (metrics, the dashboard's header, status) and
/// agent-wide records describe: the first named, else the first selected one guarded.
fn primary_container(
    tasks: &mut Tasks,
    config: &crate::config::MonitorConfig,
    guarded: &watch::Receiver<Guarded>,
) -> watch::Receiver<Option<GuardedContainer>> {
    if let Some(unit) = guarded.borrow().get(&config.container) {
        return unit.container.clone();
    }
    let (primary_tx, primary) = watch::channel(None);
    tasks.spawn(
        "first guarded container",
        follow_first(guarded.clone(), primary_tx),
    );
    primary
}

/// Publish the state of the first container in the set, whichever it is at the moment.
async fn follow_first(
    mut guarded: watch::Receiver<Guarded>,
    primary: watch::Sender<Option<GuardedContainer>>,
) {
    let mut feeds = Feeds::default();
    loop {
        let first = {
            let set = guarded.borrow_and_update();
            feeds.sync(&set);
            set.values()
                .next()
                .and_then(|u| u.container.borrow().clone())
        };
        primary.send_if_modified(|current| {
            let changed = *current != first;
            *current = first;
            changed
        });
        tokio::select! {
            changed = guarded.changed() => if changed.is_err() { return },
            _ = feeds.changed() => {}
        }
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
    guarded: &watch::Receiver<Guarded>,
    metrics: &Arc<Metrics>,
    hub: &dashboard::Hub,
    (log_writer, decisions): (AlertLogWriter, DecisionStore),
    (poll_only_reason, learn): (Option<String>, Option<Arc<crate::policy::learn::Recorder>>),
    (alerts, alerts_rx): (&AlertSender, mpsc::Receiver<crate::model::alert::Alert>),
) -> (tokio::sync::oneshot::Sender<()>, JoinHandle<()>) {
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
        delivery: crate::sinks::delivery::Delivery::from_args(args),
        decisions,
    }
    .start_learning(alerts_rx, router_stop, learn);
    (stop_router, router)
}

/// What the `docker top` backstop shares with the kernel rules: one denylist, one set of
/// executable identities, one record of what was alerted, the health probes.
#[derive(Clone)]
pub(super) struct Shared {
    pub denylist: Arc<Denylist>,
    pub identity: Arc<ExeIdentity>,
    pub alerted_pids: AlertedPids,
    pub probes: crate::policy::origin::Probes,
    pub glass: BreakGlass,
}

impl Shared {
    fn new(config: &crate::config::MonitorConfig, glass: BreakGlass) -> Self {
        Shared {
            denylist: Arc::new(Denylist::new(&config.process_denylist)),
            identity: Arc::new(ExeIdentity::new(&config.process_denylist)),
            alerted_pids: AlertedPids::default(),
            probes: crate::policy::origin::Probes::default(),
            glass,
        }
    }
}

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
    guarded: &watch::Receiver<Option<GuardedContainer>>,
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
            http_state.views.clone(),
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
