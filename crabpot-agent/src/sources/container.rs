//! Following the guarded container: find it by name, resolve its cgroup, keep the kernel's
//! `MONITORED_CGROUPS` map pointing at it across restarts, re-creation and daemon restarts.
use std::{
    collections::HashMap as StdHashMap,
    time::{Duration, Instant},
};

use bollard::{
    Docker,
    models::ContainerInspectResponse,
    query_parameters::{EventsOptionsBuilder, InspectContainerOptions},
};
use futures_util::StreamExt as _;
use tokio::sync::{broadcast, watch};

use crate::model::container::GuardedContainer;
use crate::sources::{cgroup::cgroup_of_pid, docker::is_not_found, guard::SharedGuard};

/// Signals with which a Docker `kill` event means the container is being stopped (stop,
/// restart and `rm -f` send TERM then KILL; INT and QUIT are common stop signals).
const STOP_SIGNALS: [&str; 4] = ["15", "9", "2", "3"];

/// Whether a Docker event is a request to end the container's run.
pub(crate) fn is_stop_request(event: &DockerEvent) -> bool {
    event.action == "kill"
        && event
            .attributes
            .get("signal")
            .is_some_and(|signal| STOP_SIGNALS.contains(&signal.as_str()))
}

/// A Docker event about the guarded container, as the tracker received it.
#[derive(Debug, Clone)]
pub(crate) struct DockerEvent {
    /// e.g. `die`, `start`, `health_status: unhealthy`, `exec_start: sh`.
    pub action: String,
    pub time_nano: i64,
    pub attributes: StdHashMap<String, String>,
}

/// How often the container is re-inspected even without Docker events (a backstop for an
/// event missed while the event stream was being (re)established).
const RESYNC_EVERY: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) struct ContainerTracker {
    docker: Docker,
    name: String,
    /// The kernel's cgroup filter; absent in poll-only mode.
    cgroups: Option<SharedGuard>,
    current: watch::Sender<Option<GuardedContainer>>,
    events: broadcast::Sender<DockerEvent>,
    said_missing: bool,
}

impl ContainerTracker {
    pub(crate) fn new(
        docker: Docker,
        name: String,
        cgroups: Option<SharedGuard>,
        current: watch::Sender<Option<GuardedContainer>>,
        events: broadcast::Sender<DockerEvent>,
    ) -> Self {
        Self {
            docker,
            name,
            cgroups,
            current,
            events,
            said_missing: false,
        }
    }

    /// Runs until the agent stops.
    pub(crate) async fn run(mut self) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let filters = StdHashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("container".to_string(), vec![self.name.clone()]),
            ]);
            let options = EventsOptionsBuilder::new().filters(&filters).build();
            let mut events = self.docker.events(Some(options));
            self.refresh().await;
            let mut resync = tokio::time::interval(RESYNC_EVERY);
            loop {
                tokio::select! {
                    message = events.next() => match message {
                        Some(Ok(event)) => {
                            tracing::debug!(action = ?event.action, "docker event");
                            backoff = Duration::from_millis(250);
                            self.refresh().await;
                            let event = DockerEvent {
                                action: event.action.unwrap_or_default(),
                                time_nano: event.time_nano.unwrap_or(0),
                                attributes: event
                                    .actor
                                    .and_then(|actor| actor.attributes)
                                    .unwrap_or_default(),
                            };
                            // Marked before anyone hears of the event, so the pauser never
                            // freezes a container Docker is shutting down.
                            if is_stop_request(&event) {
                                self.current.send_modify(|current| {
                                    if let Some(current) = current {
                                        // Each request (Docker's SIGKILL after the stop
                                        // timeout too) restarts the grace period.
                                        current.stopping_since = Some(Instant::now());
                                    }
                                });
                            }
                            let _ = self.events.send(event);
                        }
                        Some(Err(error)) => {
                            tracing::warn!("docker event stream failed: {error}; re-subscribing");
                            break;
                        }
                        None => {
                            tracing::warn!("docker event stream ended; re-subscribing");
                            break;
                        }
                    },
                    _ = resync.tick() => self.refresh().await,
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Inspect the container; `None` (the map emptied when it is gone) when that fails.
    async fn inspect(&mut self) -> Option<ContainerInspectResponse> {
        match self
            .docker
            .inspect_container(&self.name, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => {
                self.said_missing = false;
                Some(info)
            }
            Err(error) if is_not_found(&error) => {
                if !self.said_missing {
                    tracing::warn!(
                        "container `{}` not found; waiting for it to be created (e.g. `docker \
                         run -d --name {} …`)",
                        self.name,
                        self.name
                    );
                    self.said_missing = true;
                }
                self.set(None);
                None
            }
            Err(error) => {
                tracing::warn!("cannot inspect container `{}`: {error}", self.name);
                None
            }
        }
    }

    /// Inspect the container and make the kernel map match what we find.
    async fn refresh(&mut self) {
        let Some(found) = self.inspect().await else {
            return;
        };
        let (command, health_probe) = launch_spec(&found);
        let image = found
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let state = found.state.unwrap_or_default();
        let pid = state.pid.unwrap_or(0);
        let id = found.id.unwrap_or_default();
        if state.running != Some(true) || pid <= 0 {
            if self.current.borrow().is_some() {
                tracing::info!("container `{}` stopped; waiting for it to start", self.name);
            }
            self.set(None);
            return;
        }
        let pid = pid as u32;
        let paused = state.paused == Some(true);
        let started_at = state
            .started_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        let same_run = self
            .current
            .borrow()
            .as_ref()
            .filter(|current| current.id == id && current.pid == pid)
            .cloned();
        if let Some(mut current) = same_run {
            if current.paused != paused {
                tracing::info!(
                    "container `{}` {}",
                    self.name,
                    if paused { "paused" } else { "resumed" }
                );
                current.paused = paused;
                self.set(Some(current));
            }
            return;
        }
        match cgroup_of_pid(pid) {
            Ok(cgroup) => {
                tracing::info!(
                    "guarding container `{}` ({}), pid {pid}, cgroup {} (id {})",
                    self.name,
                    short(&id),
                    cgroup.directory.display(),
                    cgroup.id
                );
                self.set(Some(GuardedContainer {
                    name: self.name.clone(),
                    id,
                    image,
                    pid,
                    cgroup,
                    paused,
                    started_at,
                    command,
                    health_probe,
                    stopping_since: None,
                }));
            }
            Err(error) => tracing::error!(
                "container `{}` is running but its cgroup cannot be resolved: {error}",
                self.name
            ),
        }
    }

    /// Publish the new state and update the kernel map: add the new id before removing the
    /// old one so no moment is unguarded.
    fn set(&mut self, next: Option<GuardedContainer>) {
        let previous = self.current.borrow().as_ref().map(|c| c.cgroup.id);
        let next_id = next.as_ref().map(|c| c.cgroup.id);
        // A poisoned lock still holds valid maps: keep guarding with them.
        let mut maps = self
            .cgroups
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if let Some(cgroup) = next.as_ref().map(|c| &c.cgroup)
            && Some(cgroup.id) != previous
            && let Some(cgroups) = maps.as_mut()
            && let Err(error) = cgroups.add(cgroup)
        {
            tracing::error!(
                "cannot add cgroup {} to the kernel filter: {error}",
                cgroup.id
            );
        }
        if let Some(old) = previous
            && Some(old) != next_id
            && let Some(cgroups) = maps.as_mut()
            && let Err(error) = cgroups.remove(old)
        {
            tracing::warn!("cannot remove stale cgroup {old} from the kernel filter: {error}");
        }
        drop(maps);
        self.current.send_replace(next);
    }
}

/// What Docker starts in the container: the main process's argv (`Path` then `Args`, i.e.
/// Entrypoint + Cmd with a shell form already expanded) and the health probe's argv.
fn launch_spec(found: &ContainerInspectResponse) -> (Vec<String>, Option<Vec<String>>) {
    let command = found
        .path
        .iter()
        .chain(found.args.iter().flatten())
        .cloned()
        .collect();
    let config = found.config.as_ref();
    let probe = config
        .and_then(|config| config.healthcheck.as_ref())
        .and_then(|health| health.test.as_deref())
        .and_then(|test| health_argv(test, config.and_then(|c| c.shell.as_deref())));
    (command, probe)
}

/// The 12-character short form of a container id.
pub(crate) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The argv Docker runs for a `Config.Healthcheck.Test`: `["CMD", a, b…]` is `a b…`,
/// `["CMD-SHELL", cmd]` is the container's `Config.Shell` (`/bin/sh -c` unless a `SHELL`
/// instruction set another) then `cmd`; `NONE` or an empty test is no probe.
pub(crate) fn health_argv(test: &[String], shell: Option<&[String]>) -> Option<Vec<String>> {
    let default_shell = ["/bin/sh".to_string(), "-c".to_string()];
    let shell = shell.filter(|s| !s.is_empty()).unwrap_or(&default_shell);
    match test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        Some((kind, [command])) if kind == "CMD-SHELL" => {
            Some(shell.iter().chain([command]).cloned().collect())
        }
        _ => None,
    }
}
