//! Freezing the container's cgroup ourselves, the instant a CRITICAL arrives, before Docker
//! is asked to pause it (the Docker round trip — dockerd, containerd, runc — takes tens of
//! milliseconds). We write the same freezer Docker's runtime uses (cgroup v1 `freezer.state`
//! when the freezer controller is on v1, as on hybrid hosts; cgroup v2 `cgroup.freeze`
//! otherwise), so `docker pause` agrees and `docker unpause` thaws it.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freezer {
    /// cgroup v1: `<freezer mount>/<path>/freezer.state` (FROZEN / THAWED).
    V1(PathBuf),
    /// cgroup v2: `<cgroup dir>/cgroup.freeze` (1 / 0).
    V2(PathBuf),
}

/// The mount point of the cgroup v1 freezer hierarchy, from /proc/self/mountinfo text.
pub fn v1_freezer_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut fs = right.split_whitespace();
        let (fstype, _source, options) = (fs.next()?, fs.next()?, fs.next()?);
        let is_freezer = fstype == "cgroup" && options.split(',').any(|o| o == "freezer");
        is_freezer.then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap_or_default()))
    })
}

/// The v1 freezer path of a process, from /proc/PID/cgroup text (`N:freezer:/path`).
pub fn v1_freezer_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "freezer")
            .then_some(path)
    })
}

impl Freezer {
    /// The freezer Docker's runtime uses for the container whose main process is `pid`,
    /// `unified_dir` being its cgroup v2 directory.
    pub fn of(pid: u32, unified_dir: &Path) -> io::Result<Freezer> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        let proc_cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        if let (Some(mount), Some(path)) =
            (v1_freezer_mount(&mountinfo), v1_freezer_path(&proc_cgroup))
        {
            let state = mount
                .join(path.trim_start_matches('/'))
                .join("freezer.state");
            if state.exists() {
                return Ok(Freezer::V1(state));
            }
        }
        Ok(Freezer::V2(unified_dir.join("cgroup.freeze")))
    }

    fn write(&self, frozen: bool) -> io::Result<()> {
        match self {
            Freezer::V1(path) => fs::write(path, if frozen { "FROZEN" } else { "THAWED" }),
            Freezer::V2(path) => fs::write(path, if frozen { "1" } else { "0" }),
        }
    }

    /// Start freezing every task of the container (the kernel completes it asynchronously).
    pub fn freeze(&self) -> io::Result<()> {
        self.write(true)
    }

    pub fn thaw(&self) -> io::Result<()> {
        self.write(false)
    }

    /// Whether the freezer is asked to freeze (whoever asked).
    pub fn is_frozen(&self) -> io::Result<bool> {
        let text = fs::read_to_string(self.path())?;
        Ok(match self {
            Freezer::V1(_) => text.trim() != "THAWED",
            Freezer::V2(_) => text.trim() == "1",
        })
    }

    /// Thaw what Docker does not know is paused (our direct freeze when `docker pause`
    /// failed); `true` when it was frozen.
    pub fn thaw_leftover(pid: u32, unified_dir: &Path) -> io::Result<bool> {
        let freezer = Freezer::of(pid, unified_dir)?;
        if !freezer.is_frozen()? {
            return Ok(false);
        }
        freezer.thaw()?;
        Ok(true)
    }

    pub fn path(&self) -> &Path {
        match self {
            Freezer::V1(path) | Freezer::V2(path) => path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v1_freezer_of_a_hybrid_host() {
        let mountinfo = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
36 30 0:32 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
37 30 0:33 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
38 30 0:34 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct";
        assert_eq!(
            v1_freezer_mount(mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup/freezer"))
        );
        let proc_cgroup = "9:name=systemd:/docker/abc\n6:freezer:/docker/abc\n0::/docker/abc\n";
        assert_eq!(v1_freezer_path(proc_cgroup), Some("/docker/abc"));
    }

    #[test]
    fn pure_cgroup2_hosts_have_no_v1_freezer() {
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate";
        assert_eq!(v1_freezer_mount(mountinfo), None);
        assert_eq!(v1_freezer_path("0::/system.slice/docker-abc.scope\n"), None);
    }
}
