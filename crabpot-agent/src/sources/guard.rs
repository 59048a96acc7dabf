//! The kernel's view of which cgroups (and processes) are guarded: the cgroup ids with their
//! depth, the depths in use (so child cgroups of the container stay guarded), each guarded
//! cgroup's path (to tell a move inside its subtree from a move out), and the processes that
//! belong to it wherever they go (seeded here from `cgroup.procs`, then kept by the kernel
//! at fork, exec and exit).
use std::path::Path;

use aya::maps::{Array, HashMap, MapData};
use crabpot_common::{CGROUP_PATH_LEN, GuardPath};

use crate::model::container::ProcessCgroup;

/// Directories walked when seeding the tracked processes (bounds a hostile tree).
const MAX_SEED_DIRS: usize = 4096;

/// The kernel's filter, shared by the trackers of every guarded container.
pub(crate) type SharedGuard = std::sync::Arc<std::sync::Mutex<GuardMaps>>;

pub struct GuardMaps {
    pub cgroups: HashMap<MapData, u64, u32>,
    pub levels: Array<MapData, u64>,
    pub paths: HashMap<MapData, u64, GuardPath>,
    pub tracked: HashMap<MapData, u32, u64>,
    /// `[agent, kernel]` epochs of the kernel's per-CPU guard memo; the agent bumps slot 0.
    pub epoch: Array<MapData, u64>,
}

/// A cgroup's depth: the number of components of its path from the cgroup2 root.
pub(crate) fn level(relative: &str) -> u32 {
    relative.split('/').filter(|c| !c.is_empty()).count() as u32
}

/// The path as the kernel writes it in `cgroup_attach_task` records; `None` when too long.
pub(crate) fn guard_path(id: u64, relative: &str) -> Option<GuardPath> {
    let trimmed = format!("/{}", relative.trim_matches('/'));
    let bytes = trimmed.as_bytes();
    if bytes.len() >= CGROUP_PATH_LEN {
        return None;
    }
    let mut path = [0u8; CGROUP_PATH_LEN];
    path[..bytes.len()].copy_from_slice(bytes);
    Some(GuardPath {
        id,
        len: bytes.len() as u32,
        _pad: 0,
        path,
    })
}

/// Every process in `dir` and the cgroups below it.
pub(crate) fn subtree_pids(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    let mut walked = 0;
    while let Some(dir) = pending.pop() {
        walked += 1;
        if walked > MAX_SEED_DIRS {
            break;
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            pending.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    pids
}

impl GuardMaps {
    /// Guard `cgroup` (its subtree included) and track the processes in it now.
    pub fn add(&mut self, cgroup: &ProcessCgroup) -> Result<(), aya::maps::MapError> {
        let depth = level(&cgroup.relative);
        self.cgroups.insert(cgroup.id, depth, 0)?;
        match guard_path(cgroup.id, &cgroup.relative) {
            Some(path) => self.paths.insert(cgroup.id, path, 0)?,
            None => tracing::warn!(
                "cgroup path {} is too long to compare: moves into its child cgroups will be \
                 reported as leaving it",
                cgroup.relative
            ),
        }
        self.sync_levels()?;
        for pid in subtree_pids(&cgroup.directory) {
            // A full table is reported by the kernel side's drop counters, not fatal here.
            let _ = self.tracked.insert(pid, cgroup.id, 0);
        }
        self.bump_epoch()
    }

    /// Stop guarding cgroup `id`.
    pub fn remove(&mut self, id: u64) -> Result<(), aya::maps::MapError> {
        for result in [self.cgroups.remove(&id), self.paths.remove(&id)] {
            match result {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(error) => return Err(error),
            }
        }
        let stale: Vec<u32> = self
            .tracked
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, guard)| *guard == id)
            .map(|(pid, _)| pid)
            .collect();
        for pid in stale {
            let _ = self.tracked.remove(&pid);
        }
        self.sync_levels()?;
        self.bump_epoch()
    }

    /// Void the kernel's memo of who is guarded: made before this change, it may be wrong.
    fn bump_epoch(&mut self) -> Result<(), aya::maps::MapError> {
        let epoch = self.epoch.get(&0, 0)?;
        self.epoch.set(0, epoch.wrapping_add(1), 0)
    }

    /// Recompute the bit mask of the guarded depths.
    fn sync_levels(&mut self) -> Result<(), aya::maps::MapError> {
        let mask = self
            .cgroups
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, depth)| *depth < 64)
            .fold(0u64, |mask, (_, depth)| mask | (1u64 << depth));
        self.levels.set(0, mask, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_and_path_follow_the_cgroup2_tree() {
        assert_eq!(level("/"), 0);
        assert_eq!(level("/docker/abc"), 2);
        assert_eq!(level("/system.slice/docker-abc.scope"), 2);
        let path = guard_path(5, "/docker/abc").expect("fits");
        assert_eq!(&path.path[..path.len as usize], b"/docker/abc");
        assert_eq!(path.path[path.len as usize], 0);
        assert!(guard_path(5, &"x".repeat(200)).is_none());
    }
}
