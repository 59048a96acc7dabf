//! Resolving a process's cgroup v2 id: the inode of its directory in the cgroup2 tree, which
//! is what `bpf_get_current_cgroup_id()` returns for it in the kernel.
//!
//! Docker may run with the cgroupfs driver on a v1 host (the process is still placed in the
//! cgroup2 tree, e.g. `0::/docker/<id>` under `/sys/fs/cgroup/unified`) or on a pure v2 host
//! with the systemd driver (`0::/system.slice/docker-<id>.scope`). The path is always read
//! from `/proc/<pid>/cgroup`, never guessed.
use crate::model::container::ProcessCgroup;
use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub(crate) enum CgroupError {
    #[error(
        "no cgroup2 filesystem is mounted (looked in /proc/self/mountinfo); mount one with \
         `mount -t cgroup2 none /sys/fs/cgroup/unified` or boot with cgroup v2"
    )]
    NoCgroup2Mount,
    #[error("process {pid} has no cgroup v2 entry (`0::/…`) in /proc/{pid}/cgroup")]
    NoUnifiedEntry { pid: u32 },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The mount point of the cgroup2 filesystem, from the text of `/proc/self/mountinfo`.
pub(crate) fn cgroup2_mount_point(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fstype = after.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let mount_point = before.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_octal(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup v2 path (`0::<path>` line) from the text of `/proc/<pid>/cgroup`.
pub(crate) fn unified_cgroup_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::trim_end)
}

fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Resolve the cgroup v2 directory and id of `pid` as seen from this (host) process.
pub(crate) fn cgroup_of_pid(pid: u32) -> Result<ProcessCgroup, CgroupError> {
    let mount_point = cgroup2_mount_point(&read(Path::new("/proc/self/mountinfo"))?)
        .ok_or(CgroupError::NoCgroup2Mount)?;
    let proc_cgroup = read(&PathBuf::from(format!("/proc/{pid}/cgroup")))?;
    let relative = unified_cgroup_path(&proc_cgroup).ok_or(CgroupError::NoUnifiedEntry { pid })?;
    let directory = mount_point.join(relative.trim_start_matches('/'));
    let metadata = std::fs::metadata(&directory).map_err(|source| CgroupError::Io {
        path: directory.clone(),
        source,
    })?;
    Ok(ProcessCgroup {
        directory,
        id: metadata.ino(),
        relative: relative.to_string(),
    })
}

/// The mount point of the cgroup v1 hierarchy that carries `controller`, from the text of
/// `/proc/self/mountinfo` (its super options name the controllers).
pub(crate) fn v1_mount_point(mountinfo: &str, controller: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let mut fields = after.split_whitespace();
        if fields.next()? != "cgroup" {
            return None;
        }
        let options = fields.nth(1)?;
        if !options.split(',').any(|o| o == controller) {
            return None;
        }
        Some(PathBuf::from(unescape_octal(
            before.split_whitespace().nth(4)?,
        )))
    })
}

/// The v1 path of `controller` (`N:pids:/docker/<id>` line) in `/proc/<pid>/cgroup`.
pub(crate) fn v1_cgroup_path<'a>(proc_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.trim_end())
    })
}

/// The `pids.events` file of `pid`'s pids cgroup, which counts the forks refused at the
/// limit (`max N`): in the v1 `pids` hierarchy when the host mounts one (Docker's cgroupfs
/// driver on a hybrid host keeps the limit there), else in the cgroup2 directory.
pub(crate) fn pids_events_path(pid: u32) -> Result<PathBuf, CgroupError> {
    let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
    let proc_cgroup = read(&PathBuf::from(format!("/proc/{pid}/cgroup")))?;
    if let (Some(mount), Some(relative)) = (
        v1_mount_point(&mountinfo, "pids"),
        v1_cgroup_path(&proc_cgroup, "pids"),
    ) {
        return Ok(mount
            .join(relative.trim_start_matches('/'))
            .join("pids.events"));
    }
    Ok(cgroup_of_pid(pid)?.directory.join("pids.events"))
}

/// The `max` counter of a `pids.events` text.
pub(crate) fn pids_max_events(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("max ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_pids_cgroup_on_v1_and_reads_its_counter() {
        let info = "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v1_mount_point(info, "pids"),
            Some(PathBuf::from("/sys/fs/cgroup/pids"))
        );
        assert_eq!(v1_mount_point(info, "memory"), None);
        assert_eq!(v1_mount_point(HYBRID_MOUNTINFO, "pids"), None);
        let cgroup = "8:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/docker/abc\n";
        assert_eq!(v1_cgroup_path(cgroup, "pids"), Some("/docker/abc"));
        assert_eq!(v1_cgroup_path(cgroup, "cpuacct"), Some("/docker/abc"));
        assert_eq!(v1_cgroup_path("0::/x\n", "pids"), None);
        assert_eq!(pids_max_events("max 17\n"), Some(17));
        assert_eq!(pids_max_events("max 0"), Some(0));
        assert_eq!(pids_max_events("garbage"), None);
        let own = pids_events_path(std::process::id()).expect("own pids cgroup");
        assert!(own.ends_with("pids.events"), "{own:?}");
    }

    const HYBRID_MOUNTINFO: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
35 24 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
37 35 0:32 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
";

    #[test]
    fn finds_cgroup2_on_a_hybrid_host() {
        assert_eq!(
            cgroup2_mount_point(HYBRID_MOUNTINFO),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn finds_cgroup2_on_a_pure_v2_host_and_unescapes() {
        let info = "30 1 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount_point(info),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let info = "30 1 0:26 / /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount_point(info), Some(PathBuf::from("/mnt/my cg")));
        assert_eq!(cgroup2_mount_point("garbage\n\n - \n"), None);
    }

    #[test]
    fn reads_the_unified_line_for_both_docker_drivers() {
        let cgroupfs = "12:pids:/docker/abc\n1:name=systemd:/docker/abc\n0::/docker/abc\n";
        assert_eq!(unified_cgroup_path(cgroupfs), Some("/docker/abc"));
        let systemd = "0::/system.slice/docker-abc.scope\n";
        assert_eq!(
            unified_cgroup_path(systemd),
            Some("/system.slice/docker-abc.scope")
        );
        assert_eq!(unified_cgroup_path("12:pids:/docker/abc\n"), None);
    }

    #[test]
    fn resolves_our_own_cgroup() {
        // Every process has an entry on the hosts we support; the id is the directory's inode.
        let own = cgroup_of_pid(std::process::id()).expect("own cgroup resolves");
        assert!(own.directory.is_dir());
        assert!(own.id > 0);
    }
}
