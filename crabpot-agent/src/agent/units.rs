//! The guarded containers, one unit each: its tracker (cgroup in the kernel filter), its
//! Docker-side channels and the sender that names it in every record. Units are attached by
//! name at start (`--container`, waiting for a container not created yet) and by selector
//! when a matching container starts (Docker events); a selected container is detached when
//! it is removed (its channels stopped, its cgroup out of the kernel filter; the enforcer
//! unpins its hooks when it leaves the set).
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use bollard::{
    Docker,
    models::ContainerSummaryStateEnum,
    query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder},
};
use futures_util::StreamExt as _;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    actions::kernel_allow::SharedAllow,
    channels::{
        self as watchers, ChannelTicks, WatchContext,
        health::HealthWatcher,
        logs::{LogScanner, LogsWatcher},
        network::NetworkPoll,
        processes::ProcessPoll,
        stats::{StatsSample, StatsWatcher},
    },
    config::MonitorConfig,
    model::{
        alert::Alert,
        container::{Guarded, GuardedContainer, GuardedUnit},
        sender::AlertSender,
    },
    policy::{exceptions::Exceptions, posture::PostureReport, rules::Policy},
    sources::{
        container::ContainerTracker,
        guard::SharedGuard,
        select::{Selector, any_matches},
    },
};

use super::{start::Shared, tasks::Tasks};

/// How often the container list is re-read even without Docker events (a backstop for an
/// event missed while the stream was being re-established).
const RESYNC_EVERY: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a detached container's channels get to stop.
const UNIT_STOP: Duration = Duration::from_secs(2);

/// The stats and posture feeds the metrics and the dashboard show (the first unit's).
pub(super) type Views = (
    watch::Sender<Option<StatsSample>>,
    watch::Sender<Option<PostureReport>>,
);

/// What every unit's tasks share.
pub(super) struct UnitParts {
    pub docker: Docker,
    pub config: Arc<MonitorConfig>,
    pub guard: Option<SharedGuard>,
    pub alerts: mpsc::Sender<Alert>,
    pub ticks: Arc<ChannelTicks>,
    pub shared: Shared,
    pub exceptions: Arc<Exceptions>,
    pub policy: watch::Receiver<Arc<Policy>>,
    pub allow: Option<SharedAllow>,
    /// Taken by the first unit attached.
    pub views: Option<Views>,
    pub stop: CancellationToken,
}

struct Unit {
    tasks: Tasks,
    container: watch::Receiver<Option<GuardedContainer>>,
    /// Attached by a selector (detached when removed), not by name (kept, waited for).
    selected: bool,
}

pub(super) struct Units {
    parts: UnitParts,
    units: HashMap<String, Unit>,
    registry: watch::Sender<Guarded>,
    selectors: Vec<Selector>,
}

impl Units {
    /// The units of the containers guarded by name, attached now; the set they are in.
    pub(super) fn new(parts: UnitParts) -> (Self, watch::Receiver<Guarded>) {
        let selectors = parts
            .config
            .select
            .iter()
            .filter_map(|s| Selector::parse(s).ok())
            .collect();
        let names = parts.config.containers.clone();
        let (registry, guarded) = watch::channel(Guarded::new());
        let mut units = Units {
            parts,
            units: HashMap::new(),
            registry,
            selectors,
        };
        for name in names {
            units.attach(&name, false);
        }
        (units, guarded)
    }

    /// Start guarding container `name`: its tracker, its channels, its place in the set.
    fn attach(&mut self, name: &str, selected: bool) {
        if self.units.contains_key(name) {
            return;
        }
        if selected {
            tracing::info!("container `{name}` matches a selector: guarding it");
        }
        let parts = &mut self.parts;
        let mut tasks = Tasks::new(parts.stop.child_token());
        let (current, container) = watch::channel(None);
        let alerts = AlertSender::new(parts.alerts.clone(), container.clone(), name.to_string());
        // In the set before its tracker publishes it: every part can place its records.
        self.registry.send_modify(|guarded| {
            let unit = GuardedUnit {
                container: container.clone(),
                alerts: alerts.clone(),
            };
            guarded.insert(name.to_string(), unit);
        });
        let (docker_events, _) = broadcast::channel(256);
        let tracker = ContainerTracker::new(
            parts.docker.clone(),
            name.to_string(),
            parts.guard.clone(),
            current,
            docker_events.clone(),
        );
        tasks.spawn("container tracker", tracker.run());
        let ctx = WatchContext {
            docker: parts.docker.clone(),
            config: parts.config.clone(),
            container: container.clone(),
            alerts,
            ticks: parts.ticks.clone(),
            docker_events,
        };
        let views = parts.views.take();
        spawn_channels(&mut tasks, ctx, parts, views);
        let unit = Unit {
            tasks,
            container,
            selected,
        };
        self.units.insert(name.to_string(), unit);
    }

    /// Stop guarding container `name`: out of the set first (no record is routed to it any
    /// more), then its channels stopped and its cgroup out of the kernel filter.
    async fn detach(&mut self, name: &str) {
        let Some(unit) = self.units.remove(name) else {
            return;
        };
        self.registry.send_modify(|guarded| {
            guarded.remove(name);
        });
        unit.tasks.stop(UNIT_STOP).await;
        let cgroup = unit.container.borrow().as_ref().map(|c| c.cgroup.id);
        if let (Some(id), Some(guard)) = (cgroup, &self.parts.guard) {
            let mut maps = guard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(error) = maps.remove(id) {
                tracing::warn!("cannot remove cgroup {id} from the kernel filter: {error}");
            }
        }
        tracing::info!("container `{name}` removed: no longer guarded");
    }

    /// Follow Docker's container starts and removals while selectors are given; without
    /// them the named units simply live until the agent stops.
    pub(super) async fn run(mut self) {
        if self.selectors.is_empty() {
            return std::future::pending().await;
        }
        let mut backoff = Duration::from_millis(250);
        loop {
            let filters = HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                (
                    "event".to_string(),
                    vec!["start".to_string(), "destroy".to_string()],
                ),
            ]);
            let options = EventsOptionsBuilder::new().filters(&filters).build();
            let mut events = self.parts.docker.events(Some(options));
            let mut resync = tokio::time::interval(RESYNC_EVERY);
            loop {
                tokio::select! {
                    message = events.next() => match message {
                        Some(Ok(event)) => {
                            backoff = Duration::from_millis(250);
                            self.on_event(event).await;
                        }
                        Some(Err(error)) => {
                            tracing::warn!("docker event stream failed: {error}; re-subscribing");
                            break;
                        }
                        None => break,
                    },
                    _ = resync.tick() => self.scan().await,
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// A container started (attach it if a selector matches) or was removed (detach it if
    /// a selector attached it). Docker puts the container's labels in the event attributes.
    async fn on_event(&mut self, event: bollard::models::EventMessage) {
        let action = event.action.unwrap_or_default();
        let attributes = event
            .actor
            .and_then(|actor| actor.attributes)
            .unwrap_or_default();
        let Some(name) = attributes.get("name").cloned() else {
            return;
        };
        match action.as_str() {
            "start" if any_matches(&self.selectors, &name, &attributes) => {
                self.attach(&name, true);
            }
            "destroy" if self.units.get(&name).is_some_and(|u| u.selected) => {
                self.detach(&name).await;
            }
            _ => {}
        }
    }

    /// Attach every running container a selector matches; detach selected ones that are gone.
    async fn scan(&mut self) {
        let options = ListContainersOptionsBuilder::new().all(true).build();
        let listed = match self.parts.docker.list_containers(Some(options)).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!("cannot list containers: {error}");
                return;
            }
        };
        let mut present = HashSet::new();
        for summary in listed {
            let Some(name) = summary
                .names
                .as_ref()
                .and_then(|names| names.first())
                .map(|n| n.trim_start_matches('/').to_string())
            else {
                continue;
            };
            let labels = summary.labels.unwrap_or_default();
            let running = summary.state == Some(ContainerSummaryStateEnum::RUNNING);
            if running && any_matches(&self.selectors, &name, &labels) {
                self.attach(&name, true);
            }
            present.insert(name);
        }
        let gone: Vec<String> = self
            .units
            .iter()
            .filter(|(name, unit)| unit.selected && !present.contains(*name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.detach(&name).await;
        }
    }
}

/// The Docker-side channels of one container.
fn spawn_channels(tasks: &mut Tasks, ctx: WatchContext, parts: &UnitParts, views: Option<Views>) {
    let shared = &parts.shared;
    let config = &parts.config;
    let (stats_tx, posture_tx) = views.unwrap_or_else(|| {
        // Not shown in the metrics: each container's own, kept while it runs.
        (watch::channel(None).0, watch::channel(None).0)
    });
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
    .with_operator(shared.glass.clone(), parts.exceptions.clone());
    tasks.spawn(
        "process channel",
        watchers::run_polling(processes, ctx.clone()),
    );
    let network = NetworkPoll::new(config.network_poll, parts.policy.clone())
        .with_dynamic_allow(parts.allow.clone());
    tasks.spawn(
        "network channel",
        watchers::run_polling(network, ctx.clone()),
    );
    // The patterns compiled once at start-up: they compile again.
    match LogScanner::new(&config.log_patterns) {
        Ok(scanner) => tasks.spawn(
            "logs channel",
            watchers::run_stream(LogsWatcher::new(scanner), ctx.clone()),
        ),
        Err(error) => tracing::error!("logs channel not started: {error}"),
    }
    tasks.spawn(
        "pids channel",
        watchers::run_polling(watchers::pids::PidsWatcher::default(), ctx.clone()),
    );
    tasks.spawn("health channel", HealthWatcher::default().run(ctx.clone()));
    tasks.spawn(
        "posture channel",
        watchers::posture::PostureWatcher::new(posture_tx).run(ctx.clone()),
    );
    tasks.spawn("events channel", watchers::events::run(ctx));
}
