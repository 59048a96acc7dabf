//! Undoing a mount that completed before its caller was killed: unmount it inside the
//! container's mount namespace. Done with syscalls on a throwaway thread (never by running
//! a program, which would be resolved inside the container's filesystem).
use std::{ffi::CString, fs::File, os::fd::AsRawFd as _, time::Duration};

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

/// Unmount `target` in the mount namespace of `container_pid`, retrying briefly: the event
/// may arrive before the killed call has finished mounting.
pub(crate) async fn unmount_in_container(container_pid: u32, target: String) -> UndoOutcome {
    let Ok(target_c) = CString::new(target.clone()) else {
        return UndoOutcome::Failed(format!("target `{target}` contains a NUL byte"));
    };
    for attempt in 0..10 {
        let target_c = target_c.clone();
        let result = tokio::task::spawn_blocking(move || {
            std::thread::spawn(move || unmount_once(container_pid, &target_c))
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("unmount thread panicked")))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match result {
            Ok(()) => return UndoOutcome::Unmounted,
            // EINVAL: not a mount point (yet); ENOENT: no such path, so nothing mounted there.
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::NotFound
                ) =>
            {
                if attempt == 9 {
                    return UndoOutcome::NotMounted;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => return UndoOutcome::Failed(error.to_string()),
        }
    }
    UndoOutcome::NotMounted
}
