//! Undoing a mount that completed before its caller was killed: unmount it in every mount
//! namespace of the container's processes (a caller that unshared its own namespace may
//! have a child keeping it, and the mount, alive). Done with syscalls on a throwaway thread
//! (never by running a program, which would be resolved inside the container's filesystem).
use std::{
    collections::BTreeMap,
    ffi::CString,
    fs::File,
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::Path,
    time::Duration,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UndoOutcome {
    Unmounted,
    NotMounted,
    Failed(String),
}

fn step(name: &str, rc: libc::c_int) -> Result<(), std::io::Error> {
    if rc == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    Err(std::io::Error::new(
        error.kind(),
        format!("{name}: {error}"),
    ))
}

fn unmount_once(container_pid: u32, target: &CString) -> Result<(), std::io::Error> {
    let namespace = File::open(format!("/proc/{container_pid}/ns/mnt"))?;
    let root = File::open(format!("/proc/{container_pid}/root"))?;
    // SAFETY: plain syscalls on this throwaway thread only: unshare gives it its own fs
    // context, so joining the container's mount namespace and root does not affect the rest
    // of the agent. The target is then resolved as the container sees it.
    unsafe {
        step("unshare", libc::unshare(libc::CLONE_FS))?;
        step(
            "setns",
            libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNS),
        )?;
        step("fchdir", libc::fchdir(root.as_raw_fd()))?;
        step("chroot", libc::chroot(c".".as_ptr()))?;
        step(
            "umount",
            libc::umount2(target.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW),
        )?;
    }
    Ok(())
}

/// One process in each distinct mount namespace among `pids` (by the namespace's inode).
pub(crate) fn namespace_representatives(pids: &[u32]) -> Vec<u32> {
    let mut by_namespace: BTreeMap<u64, u32> = BTreeMap::new();
    for pid in pids {
        if let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/ns/mnt")) {
            by_namespace.entry(meta.ino()).or_insert(*pid);
        }
    }
    by_namespace.into_values().collect()
}

/// Try the unmount once in each namespace; `Ok(true)` when it was undone somewhere.
async fn unmount_everywhere(pids: Vec<u32>, target: &CString) -> Result<bool, std::io::Error> {
    let mut undone = false;
    for pid in pids {
        let target_c = target.clone();
        let result = tokio::task::spawn_blocking(move || {
            std::thread::spawn(move || unmount_once(pid, &target_c))
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("unmount thread panicked")))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match result {
            Ok(()) => undone = true,
            // EINVAL: not a mount point (yet) here; ENOENT: no such path here; the process
            // may also have exited since it was listed.
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::NotFound
                ) || error.raw_os_error() == Some(libc::ESRCH) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(undone)
}

/// Unmount `target` in every mount namespace of the processes in the container's cgroup
/// `cgroup_dir` (its subtree included; `container_pid`'s namespace always), retrying
/// briefly: the event may arrive before the killed call has finished mounting.
pub(crate) async fn unmount_in_container(
    container_pid: u32,
    cgroup_dir: &Path,
    target: String,
) -> UndoOutcome {
    let Ok(target_c) = CString::new(target.clone()) else {
        return UndoOutcome::Failed(format!("target `{target}` contains a NUL byte"));
    };
    for attempt in 0..10 {
        let mut pids = vec![container_pid];
        pids.extend(crate::sources::guard::subtree_pids(cgroup_dir));
        let representatives = namespace_representatives(&pids);
        match unmount_everywhere(representatives, &target_c).await {
            Ok(true) => return UndoOutcome::Unmounted,
            Ok(false) if attempt < 9 => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(false) => return UndoOutcome::NotMounted,
            Err(error) => return UndoOutcome::Failed(error.to_string()),
        }
    }
    UndoOutcome::NotMounted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_per_mount_namespace() {
        let own = std::process::id();
        // Our process twice, and a pid that cannot exist: one namespace.
        assert_eq!(namespace_representatives(&[own, own, u32::MAX]), vec![own]);
        assert!(namespace_representatives(&[]).is_empty());
    }
}
