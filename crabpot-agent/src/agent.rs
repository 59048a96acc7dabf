//! The agent: start the sources, route kernel events through the policy, fan alerts out to
//! the sinks and the auto-pause action, stop cleanly without losing queued alerts.
use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{
    sync::{broadcast, mpsc, watch},
    task::JoinHandle,
};

use crate::{
    actions::enforcer::{self, Enforcer},
    cli::{AgentArgs, Toasts},
    pipeline::KernelLoop,
    policy::{
        denylist::Denylist,
        hosts,
        kernel_rules::KernelRules,
        rules::{Action, Policy},
    },
    preflight::{self, KernelFeatures},
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
        bpf::{self, BpfOptions, decode::RuleName, drops},
        container::ContainerTracker,
        docker,
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

/// `--check-config`: validate and summarise without starting. Exit code 0 or 2.
pub fn check_config(args: &AgentArgs) -> std::process::ExitCode {
    match settings::resolve(args) {
        Ok(settings) => {
            let source = settings
                .file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "no file (defaults and flags)".into());
            println!("configuration OK: {source}");
            println!("container: {}", settings.monitor.container);
            println!("profiles: {}", settings.profiles.join("+"));
            for (rule, action) in settings.policy.rules() {
                println!("rule {}: {action}", rule.as_str());
            }
            let allow: Vec<String> = settings
                .policy
                .allow
                .iter()
                .map(|a| a.to_string())
                .chain(settings.policy.allow_hosts.iter().map(|h| h.name.clone()))
                .collect();
            println!("allow: loopback {}", allow.join(" "));
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("crabpot-agent: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    preflight::require_root()?;
    preflight::raise_memlock();
    let settings = settings::resolve(&args)?;
    let config = Arc::new(settings.monitor.clone());
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
    let audit_path = config.alerts_log.with_file_name("audit.log");
    let audit_writer = AlertLogWriter::open(
        &audit_path,
        config.alerts_log_max_bytes,
        config.alerts_log_keep,
    )
    .with_context(|| format!("cannot open the audit log {}", audit_path.display()))?;
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
    let token_path = args
        .token_file
        .clone()
        .unwrap_or_else(|| crate::config::effective_home().join(".crabpot/dashboard.token"));
    let token = http::load_or_create_token(&token_path).with_context(|| {
        format!(
            "cannot read or create the token file {}",
            token_path.display()
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
        settings.profiles.join("+"),
        bpf::loader::TRACEPOINTS.len(),
        args.ring_buffer_bytes / 1024,
        config.alerts_log.display(),
        if config.auto_pause { "on" } else { "off" },
    );
    let bpf::KernelPipeline {
        mut ebpf,
        events,
        monitored_cgroups,
        dropped,
        policy: policy_maps,
    } = kernel;
    let policy = Arc::new(settings.policy.clone());
    let lsm = bpf::lsm::attach_lsm(&mut ebpf);
    let mut enforcer = Enforcer::new(ebpf, policy_maps)?;
    match &lsm {
        bpf::lsm::LsmOutcome::Attached(programs) => {
            tracing::info!(
                "BPF LSM attached ({}): mount and ptrace are refused in the kernel",
                programs.join(", ")
            );
            enforcer.set_lsm_rules(&[RuleName::Mount, RuleName::Ptrace, RuleName::Exec])?;
        }
        bpf::lsm::LsmOutcome::Unavailable { reason } => tracing::info!(
            "BPF LSM unavailable: {reason}. Blocking mount and ptrace falls back to killing the \
             caller and freezing the container"
        ),
    }
    enforcer.apply(&policy)?;
    report_layers(&policy, enforcer.lsm_rules());
    let metrics = Arc::new(Metrics::new());
    let layers: Vec<(String, String)> = policy
        .rules()
        .map(|(rule, action)| {
            let layer = enforcer::layer(rule, action, enforcer.lsm_rules().contains(&rule));
            metrics.layer(rule.as_str(), layer);
            (rule.as_str().to_string(), layer.to_string())
        })
        .collect();
    // SIGHUP replaces the base policy; the host resolver publishes it, names resolved.
    let (base_tx, base_rx) = watch::channel(policy.clone());
    let (policy_tx, policy_rx) = watch::channel(policy.clone());

    let (guarded_tx, guarded) = watch::channel(None);
    let (docker_events, _) = broadcast::channel(256);
    let tracker = ContainerTracker::new(
        docker.clone(),
        config.container.clone(),
        monitored_cgroups,
        guarded_tx,
        docker_events.clone(),
    );
    let mut tasks: Vec<JoinHandle<()>> = vec![
        tokio::spawn(tracker.run()),
        tokio::spawn(enforcer.run(guarded.clone(), policy_rx.clone())),
        tokio::spawn(hosts::keep_resolved(base_rx, policy_tx)),
    ];

    let hub = dashboard::Hub::default();
    let (alerts_tx, alerts_rx) = mpsc::channel(ALERT_CAPACITY);
    let alerts = AlertSender::new(alerts_tx, guarded.clone(), config.container.clone());
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

    let denylist = Arc::new(Denylist::new(&config.process_denylist));
    let alerted_pids = AlertedPids::default();
    let (stats_tx, stats_rx) = watch::channel(None);
    let ticks = Arc::new(ChannelTicks::default());
    let ctx_docker = docker.clone();
    let ctx = WatchContext {
        docker,
        config: config.clone(),
        container: guarded.clone(),
        alerts: alerts.clone(),
        ticks: ticks.clone(),
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
    let mut rules = KernelRules::new(denylist, config.network_allow.clone(), alerted_pids);
    if policy.action(RuleName::Connect) != Action::Off {
        rules = rules.without_connect_alerts();
    }
    let (audit_tx, audit_rx) = mpsc::channel(SINK_QUEUE);
    let audit_task = tokio::spawn(alert_log::writer::run(audit_writer, audit_rx));
    let (trust, trust_rx) = watch::channel(settings.trust);
    let dashboard_url = format!("http://{}/?token={token}", args.listen);
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
        info: Arc::new(StaticInfo {
            version: env!("CARGO_PKG_VERSION"),
            profiles: settings.profiles.clone(),
            layers,
            dashboard_url: dashboard_url.clone(),
            started_at: crate::alert::now_rfc3339(),
        }),
        docker: ctx_docker.clone(),
        hub: hub.clone(),
    };
    let bpf_mode: serde_json::Value = http_state
        .info
        .layers
        .iter()
        .map(|(rule, layer)| (rule.clone(), serde_json::Value::from(layer.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let counter_source = metrics.clone();
    tasks.push(tokio::spawn(dashboard::hub::follow_state(
        hub,
        http_state.views.stats.clone(),
        guarded.clone(),
        http_state.views.trust.clone(),
        bpf_mode,
        move || {
            let (events, dropped) = counter_source.event_counts();
            serde_json::json!({"events": events, "dropped": dropped})
        },
    )));
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
    tasks.push(tokio::spawn(systemd::watchdog()));
    systemd::notify("READY=1");
    tasks.push(tokio::spawn(reload::on_sighup(
        args.clone(),
        base_tx,
        alerts.clone(),
    )));
    let kernel_loop = KernelLoop {
        args: args.clone(),
        guarded: guarded.clone(),
        rules,
        policy: policy_rx,
        alerts: alerts.clone(),
        audit: audit_tx,
        trust,
        metrics: metrics.clone(),
    };
    let outcome = kernel_loop.run(bus).await;
    systemd::notify("STOPPING=1");

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
    let _ = tokio::time::timeout(DRAIN_ON_STOP, audit_task).await;
    outcome
}

/// The start-up line that says which layer enforces each rule.
fn report_layers(policy: &Policy, lsm_rules: &[RuleName]) {
    let layers: Vec<String> = policy
        .rules()
        .map(|(rule, action)| {
            let layer = enforcer::layer(rule, action, lsm_rules.contains(&rule));
            format!("{}={action}/{layer}", rule.as_str())
        })
        .collect();
    tracing::info!(
        "policy: {} (allowlist: loopback{}{})",
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
