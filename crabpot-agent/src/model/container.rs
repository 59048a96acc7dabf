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
