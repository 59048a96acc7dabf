//! The path an open really names, for the `/proc` rule: `openat(dirfd, "../proc/1/environ")`
//! from `/tmp`, `/tmp/../proc/…` and `/proc/self/root/proc/…` all open `/proc/…`.
//!
//! Relative paths are joined to the caller's cwd (or dirfd) as read from the host's
//! `/proc/<pid>/cwd` (`/proc/<pid>/fd/<n>`), which shows it as the container sees it; `.`,
//! `..` and repeated slashes are then folded lexically, and `/proc/<self|pid>/root` (the
//! container's own root) is dropped. When the process has already exited its cwd cannot be
//! read: the path is then taken as relative to `/`, since `..` at the root stays at the root
//! and the usual escape (`../../../proc/…`) climbs past it anyway.
const AT_FDCWD: i32 = -100;

/// How the effective path was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EffectivePath {
    pub path: String,
    /// The base directory of a relative path could not be read (the process is gone).
    pub base_unknown: bool,
}

/// Fold `.`, `..` and empty components of an absolute path.
pub(crate) fn lexical(path: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts
}

fn is_self_or_pid(part: &str) -> bool {
    part == "self" || part == "thread-self" || part.bytes().all(|b| b.is_ascii_digit())
}

/// The path `path` opened by process `tgid` relative to `dirfd` names, made absolute and
/// normalised as the container sees it. `kernel_base` is the base directory the kernel
/// read at the open (in procfs only): it is the truth of that moment and needs no
/// process, so it is preferred to `/proc/<pid>/cwd` read now. Symbolic links outside /proc
/// are followed in the container's root, read through `/proc/<pid>/root`, while the
/// process lives (else through the container's main process, `container_pid`): Docker's
/// `/dev/fd` → `/proc/self/fd` makes `/dev/fd/../../1/environ` another process's environment.
pub(crate) fn effective(
    (tgid, container_pid): (u32, Option<u32>),
    dirfd: i32,
    path: &str,
    kernel_base: Option<&str>,
) -> EffectivePath {
    let own = if dirfd == AT_FDCWD {
        Base::Cwd
    } else {
        Base::Fd(dirfd)
    };
    let read_base = |what| {
        if let Some(base) = kernel_base.filter(|_| what == own) {
            return Some(base.to_string());
        }
        let link = match what {
            Base::Cwd => format!("/proc/{tgid}/cwd"),
            Base::Fd(fd) => format!("/proc/{tgid}/fd/{fd}"),
        };
        std::fs::read_link(link)
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p.starts_with('/'))
    };
    // The container's root as one of its processes sees it (none when all are gone), found
    // at the first link to read: /proc paths, most of what is judged, read none.
    let root = std::cell::OnceCell::new();
    let read_link = |inside: &str| {
        let root = root.get_or_init(|| {
            std::iter::once(tgid)
                .chain(container_pid)
                .map(|pid| format!("/proc/{pid}/root"))
                .find(|root| std::fs::metadata(root).is_ok())
        });
        let root = root.as_ref()?;
        std::fs::read_link(format!("{root}{inside}"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    };
    effective_with(path, dirfd, read_base, read_link)
}

/// A directory a path can be relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Base {
    Cwd,
    Fd(i32),
}

/// Symbolic links followed in one path at most (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// [`effective`] with the base directories read by `read_base` and the targets of symbolic
/// links (an absolute path in the container; `None`: not a link) by `read_link`. Components
/// are walked in order, so a `..` after a link or the magic links `/proc/<x>/root` and
/// `/proc/self/cwd` applies to what they point to, as in the kernel. Links under /proc are
/// not read from outside (`self` would name the reader); the magic ones are handled here.
pub(crate) fn effective_with(
    path: &str,
    dirfd: i32,
    read_base: impl Fn(Base) -> Option<String>,
    read_link: impl Fn(&str) -> Option<String>,
) -> EffectivePath {
    let mut base_unknown = false;
    let mut parts: Vec<String> = Vec::new();
    if !path.starts_with('/') {
        let base = if dirfd == AT_FDCWD {
            Base::Cwd
        } else {
            Base::Fd(dirfd)
        };
        match read_base(base) {
            Some(dir) => parts.extend(lexical(&dir).into_iter().map(String::from)),
            None => base_unknown = true,
        }
    }
    let mut queue: std::collections::VecDeque<String> = path.split('/').map(String::from).collect();
    let mut links = 0;
    while let Some(part) = queue.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => parts.push(part),
        }
        if parts[0] != "proc" {
            if links < MAX_LINKS
                && let Some(target) = read_link(&format!("/{}", parts.join("/")))
            {
                links += 1;
                parts.pop();
                if target.starts_with('/') {
                    parts.clear();
                }
                let rest = std::mem::take(&mut queue);
                queue.extend(target.split('/').map(String::from));
                queue.extend(rest);
            }
            continue;
        }
        if proc_magic(&mut parts, &read_base) {
            base_unknown = true;
        }
    }
    EffectivePath {
        path: format!("/{}", parts.join("/")),
        base_unknown,
    }
}

/// `/proc/<self|pid>/root` (the container's own root) and `/proc/self/cwd` at the end of
/// `parts` are replaced by what they name; true when that was a cwd that could not be read.
fn proc_magic(parts: &mut Vec<String>, read_base: impl Fn(Base) -> Option<String>) -> bool {
    let magic = match parts.as_slice() {
        [proc, who, last] if proc == "proc" && is_self_or_pid(who) => last.as_str(),
        _ => return false,
    };
    match magic {
        "root" => parts.clear(),
        "cwd" if matches!(parts[1].as_str(), "self" | "thread-self") => {
            parts.clear();
            match read_base(Base::Cwd) {
                Some(cwd) => parts.extend(lexical(&cwd).into_iter().map(String::from)),
                None => return true,
            }
        }
        _ => {}
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(which: Base) -> Option<String> {
        match which {
            Base::Cwd => Some("/tmp".to_string()),
            Base::Fd(3) => Some("/var/lib".to_string()),
            Base::Fd(_) => None,
        }
    }

    fn at(path: &str, dirfd: i32) -> EffectivePath {
        effective_with(path, dirfd, base, |_| None)
    }

    /// A container with Docker's `/dev/fd`, a link to the root, a relative link into
    /// /proc, a chain of two, and a loop.
    fn linked(path: &str) -> String {
        effective_with(path, AT_FDCWD, base, |inside| {
            let target = match inside {
                "/dev/fd" => "/proc/self/fd",
                "/tmp/r" => "/",
                "/tmp/p" => "../proc",
                "/tmp/chain" => "r/proc/1",
                "/tmp/loop" => "/tmp/loop",
                "/proc" => unreachable!("links under /proc are not read"),
                _ => return None,
            };
            Some(target.to_string())
        })
        .path
    }

    #[test]
    fn follows_links_in_the_container() {
        assert_eq!(linked("/dev/fd/../../1/environ"), "/proc/1/environ");
        assert_eq!(linked("/tmp/r/proc/1/environ"), "/proc/1/environ");
        assert_eq!(linked("r/proc/1/maps"), "/proc/1/maps");
        assert_eq!(linked("/tmp/p/1/mem"), "/proc/1/mem");
        assert_eq!(linked("/tmp/chain/environ"), "/proc/1/environ");
        assert_eq!(linked("/dev/fd/3"), "/proc/self/fd/3");
        // A loop stops after the kernel's limit, as the open itself would fail.
        assert_eq!(linked("/tmp/loop/x"), "/tmp/loop/x");
        assert_eq!(linked("/etc/passwd"), "/etc/passwd");
    }

    #[test]
    fn folds_relative_and_dotted_paths() {
        assert_eq!(
            at("../proc/self/environ", AT_FDCWD).path,
            "/proc/self/environ"
        );
        assert_eq!(at("../../proc/1/status", 3).path, "/proc/1/status");
        assert_eq!(
            at("/tmp/.././/proc/./1/environ", AT_FDCWD).path,
            "/proc/1/environ"
        );
        assert_eq!(at("x/y", AT_FDCWD).path, "/tmp/x/y");
        assert_eq!(at("/../../proc/1/maps", AT_FDCWD).path, "/proc/1/maps");
    }

    #[test]
    fn drops_the_containers_own_root() {
        assert_eq!(
            at("/proc/self/root/proc/1/environ", AT_FDCWD).path,
            "/proc/1/environ"
        );
        assert_eq!(
            at("/proc/thread-self/root/proc/self/root/etc/passwd", AT_FDCWD).path,
            "/etc/passwd"
        );
        assert_eq!(
            at("/proc/1/root/proc/2/cmdline", AT_FDCWD).path,
            "/proc/2/cmdline"
        );
        assert_eq!(
            at("/proc/self/cwd/../proc/1/environ", AT_FDCWD).path,
            "/proc/1/environ"
        );
    }

    #[test]
    fn an_unknown_base_is_taken_as_the_root() {
        let found = at("../../proc/1/environ", 9);
        assert_eq!(found.path, "/proc/1/environ");
        assert!(found.base_unknown);
        assert!(!at("/proc/1/status", AT_FDCWD).base_unknown);
    }
}
