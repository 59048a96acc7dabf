//! The guarded container as the agent knows it at a moment: what every part reads.
use std::{path::PathBuf, time::Instant};

/// The container as last resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardedContainer {
    pub name: String,
    pub id: String,
    /// The image as the container was created from it (`Config.Image`).
    pub image: String,
    pub pid: u32,
    pub cgroup: ProcessCgroup,
    /// Frozen by `docker pause` (ours or anyone's).
    pub paused: bool,
    /// Docker's `State.StartedAt` of this run.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The configured main process: `Path` then `Args` (Entrypoint + Cmd, shell form
    /// included).
    pub command: Vec<String>,
    /// The argv Docker runs as the health probe (`Config.Healthcheck.Test`), if any.
    pub health_probe: Option<Vec<String>>,
    /// When Docker was asked to stop, restart, kill or remove this run (a `kill` event with
    /// a terminating signal); nothing may freeze it then.
    pub stopping_since: Option<Instant>,
}

/// Where a process lives in the cgroup2 tree, and that directory's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessCgroup {
    pub directory: PathBuf,
    pub id: u64,
    /// The path from the cgroup2 root (`/docker/<id>`), as the kernel names it.
    pub relative: String,
}

/// One guarded container as every part reaches it: its own feed (absent while it is not
/// running) and the sender that stamps its records with its name and id.
#[derive(Clone)]
pub struct GuardedUnit {
    pub container: tokio::sync::watch::Receiver<Option<GuardedContainer>>,
    pub alerts: super::sender::AlertSender,
}

/// Every guarded container, by name (the `--container` name, or the name of a container a
/// `--select` matched). One container is a set of one.
pub type Guarded = std::collections::BTreeMap<String, GuardedUnit>;

/// The guarded container a record names: by Docker id, else by name; the only one when a
/// single container is guarded and the record names none.
pub(crate) fn unit_named<'a>(
    guarded: &'a Guarded,
    name: &str,
    id: &str,
) -> Option<(&'a String, &'a GuardedUnit)> {
    let by_id = (!id.is_empty())
        .then(|| {
            guarded
                .iter()
                .find(|(_, unit)| unit.container.borrow().as_ref().is_some_and(|c| c.id == id))
        })
        .flatten();
    by_id
        .or_else(|| guarded.get_key_value(name))
        .or_else(|| match guarded.len() {
            1 if name.is_empty() => guarded.iter().next(),
            _ => None,
        })
}

/// Follows the feed of every guarded container: which one changed, kept in step with the
/// set (containers attached and detached).
#[derive(Default)]
pub(crate) struct Feeds {
    feeds:
        std::collections::BTreeMap<String, tokio::sync::watch::Receiver<Option<GuardedContainer>>>,
}

impl Feeds {
    /// Follow exactly the containers of `guarded`; the names newly followed.
    pub(crate) fn sync(&mut self, guarded: &Guarded) -> Vec<String> {
        self.feeds.retain(|name, _| guarded.contains_key(name));
        let mut added = Vec::new();
        for (name, unit) in guarded {
            if !self.feeds.contains_key(name) {
                let mut feed = unit.container.clone();
                // What it holds now is handled by the caller as the newly followed state.
                feed.borrow_and_update();
                self.feeds.insert(name.clone(), feed);
                added.push(name.clone());
            }
        }
        added
    }

    /// The name of the next container whose state changes (or whose feed ends: it is then
    /// no longer followed); never returns while nothing is followed.
    pub(crate) async fn changed(&mut self) -> String {
        if self.feeds.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.feeds.iter_mut().map(|(name, feed)| {
            Box::pin(async move { (name.clone(), feed.changed().await.is_ok()) })
        });
        let ((name, open), _, _) = futures_util::future::select_all(waits).await;
        if open {
            if let Some(feed) = self.feeds.get_mut(&name) {
                feed.borrow_and_update();
            }
        } else {
            self.feeds.remove(&name);
        }
        name
    }
}
