//! The Docker-side monitor channels and the two loops they all run in: a polling loop that
//! idles while the container is absent or paused, and a streaming loop that (re)opens its
//! stream for the current container with backoff.
pub(crate) mod events;
pub(crate) mod health;
pub(crate) mod logs;
pub(crate) mod network;
pub(crate) mod pids;
pub(crate) mod posture;
pub(crate) mod processes;
pub(crate) mod stats;

use std::{collections::BTreeMap, future::Future, sync::Arc, sync::Mutex, time::Duration};

use bollard::Docker;
use futures_util::{Stream, StreamExt as _};
use tokio::sync::{broadcast, watch};

use crate::model::container::GuardedContainer;
use crate::model::sender::AlertSender;
use crate::{config::MonitorConfig, sources::container::DockerEvent};

/// When each channel last completed a tick (RFC 3339), for status and metrics.
#[derive(Debug, Default)]
pub struct ChannelTicks(Mutex<BTreeMap<&'static str, String>>);

impl ChannelTicks {
    pub fn record(&self, channel: &'static str) {
        if let Ok(mut ticks) = self.0.lock() {
            ticks.insert(channel, crate::model::alert::now_rfc3339());
        }
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, String> {
        self.0.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// What every watcher gets.
#[derive(Clone)]
pub(crate) struct WatchContext {
    pub docker: Docker,
    pub config: Arc<MonitorConfig>,
    pub container: watch::Receiver<Option<GuardedContainer>>,
    pub alerts: AlertSender,
    pub ticks: Arc<ChannelTicks>,
    pub docker_events: broadcast::Sender<DockerEvent>,
}

impl WatchContext {
    /// The container when it is running and not paused.
    pub(crate) fn active_container(&self) -> Option<GuardedContainer> {
        self.container
            .borrow()
            .as_ref()
            .filter(|c| !c.paused)
            .cloned()
    }
}

/// A channel that looks at the container every `interval`.
pub(crate) trait PollingWatcher: Send + 'static {
    const CHANNEL: &'static str;
    fn interval(&self) -> Duration;
    fn tick(
        &mut self,
        ctx: &WatchContext,
        container: &GuardedContainer,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Run a polling channel until the agent stops. Ticks are skipped while the container is
/// absent or paused; a failed tick is logged and the next one tried.
pub(crate) async fn run_polling<W: PollingWatcher>(mut watcher: W, ctx: WatchContext) {
    let mut ticker = tokio::time::interval(watcher.interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(container) = ctx.active_container() else {
            continue;
        };
        if let Err(error) = watcher.tick(&ctx, &container).await {
            tracing::warn!(channel = W::CHANNEL, "{error:#}");
        }
        ctx.ticks.record(W::CHANNEL);
    }
}

/// A channel fed by a Docker stream opened for the current container.
pub(crate) trait StreamWatcher: Send + 'static {
    const CHANNEL: &'static str;
    type Item: Send;
    type Stream: Stream<Item = Result<Self::Item, bollard::errors::Error>> + Send + Unpin;
    fn open(&mut self, ctx: &WatchContext, container: &GuardedContainer) -> Self::Stream;
    fn handle(
        &mut self,
        ctx: &WatchContext,
        container: &GuardedContainer,
        item: Self::Item,
    ) -> impl Future<Output = ()> + Send;
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Run a streaming channel until the agent stops: open the stream for the running container,
/// reopen it when the container changes or the stream ends (daemon restart), with backoff.
pub(crate) async fn run_stream<W: StreamWatcher>(mut watcher: W, ctx: WatchContext) {
    let mut container_rx = ctx.container.clone();
    let mut backoff = Duration::from_millis(250);
    loop {
        let current = container_rx.borrow_and_update().clone();
        let Some(container) = current else {
            if container_rx.changed().await.is_err() {
                return;
            }
            continue;
        };
        let mut stream = watcher.open(&ctx, &container);
        let mut delivered = false;
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(item)) => {
                        delivered = true;
                        watcher.handle(&ctx, &container, item).await;
                        ctx.ticks.record(W::CHANNEL);
                    }
                    Some(Err(error)) => {
                        tracing::debug!(channel = W::CHANNEL, "stream error: {error}");
                        break;
                    }
                    None => break,
                },
                changed = container_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let next = container_rx.borrow().clone();
                    if next.as_ref().map(|c| &c.id) != Some(&container.id)
                        || next.as_ref().map(|c| c.pid) != Some(container.pid)
                    {
                        break; // another run of the container: reopen for it
                    }
                }
            }
        }
        if delivered {
            backoff = Duration::from_millis(250);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
