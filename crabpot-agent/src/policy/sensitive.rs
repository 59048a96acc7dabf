//! Reads that deserve an alert, not only an audit line: another process's `environ`, `mem`,
//! `maps` or `cmdline` under /proc (where an app keeps its tokens: the OpenClaw gateway's is
//! in PID 1's environment), and well-known secret files. A process reading its own entries
//! (`/proc/self/…`, or its own pid) is ordinary.
use std::fs;

/// /proc entries of a process that expose its secrets or memory.
const PROC_ENTRIES: &[&str] = &["environ", "mem", "maps", "cmdline"];
/// Files that hold credentials wherever they are found.
const SECRET_FILES: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/shadow-",
    "/etc/sudoers",
];
/// Path pieces of credential stores in a home directory.
const SECRET_PIECES: &[&str] = &[
    "/.ssh/id_",
    "/.aws/credentials",
    "/.docker/config.json",
    "/.kube/config",
    "/.git-credentials",
    "/.netrc",
    "/.gnupg/",
];

/// Why a normalised `path` is a sensitive read; `None` when it is not. `caller_ns_tgid`
/// gives the opener's pid inside the container when known; it is asked only for /proc
/// entries of a numbered process (it reads /proc, so not on every open).
pub(crate) fn reason(path: &str, caller_ns_tgid: impl FnOnce() -> Option<u32>) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/proc/") {
        let mut parts = rest.split('/');
        let (owner, entry) = (parts.next()?, parts.next()?);
        // /proc/<pid>/task/<tid>/<entry> names the same process's entry.
        let entry = match (entry, parts.next(), parts.next()) {
            ("task", Some(_), Some(inner)) => inner,
            _ => entry,
        };
        if !PROC_ENTRIES.contains(&entry) || matches!(owner, "self" | "thread-self") {
            return None;
        }
        let pid: u32 = owner.parse().ok()?;
        if caller_ns_tgid() == Some(pid) {
            return None;
        }
        return Some(format!("read of process {pid}'s {entry}"));
    }
    if SECRET_FILES.contains(&path) || SECRET_PIECES.iter().any(|piece| path.contains(piece)) {
        return Some(format!("read of the secret file {path}"));
    }
    None
}

/// The pid of host process `tgid` inside its own (the container's) PID namespace: the last
/// field of `NSpid:` in its status. `None` when it is gone.
pub(crate) fn ns_tgid(tgid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{tgid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("NSpid:"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_process_environ_is_sensitive_its_own_is_not() {
        assert!(reason("/proc/1/environ", || Some(7)).is_some());
        assert!(
            reason("/proc/1/environ", || None).is_some(),
            "caller gone: not its own"
        );
        assert_eq!(reason("/proc/1/environ", || Some(1)), None);
        assert_eq!(reason("/proc/self/environ", || Some(7)), None);
        assert_eq!(reason("/proc/thread-self/maps", || Some(7)), None);
        assert!(reason("/proc/12/task/13/mem", || Some(7)).is_some());
        assert_eq!(reason("/proc/1/status", || Some(7)), None);
        assert_eq!(reason("/proc/meminfo", || Some(7)), None);
        assert_eq!(reason("/proc/sys/kernel/hostname", || Some(7)), None);
    }

    #[test]
    fn secret_files_are_sensitive() {
        assert!(reason("/etc/shadow", || None).is_some());
        assert!(reason("/root/.ssh/id_ed25519", || None).is_some());
        assert!(reason("/home/node/.aws/credentials", || None).is_some());
        assert_eq!(reason("/etc/passwd", || None), None);
        assert_eq!(reason("/root/.ssh/known_hosts", || None), None);
    }

    #[test]
    fn our_own_namespace_pid_is_read_from_status() {
        let me = std::process::id();
        assert_eq!(ns_tgid(me), Some(me), "the test runs in the host namespace");
    }
}
