//! Host facts the bench reads: the monotonic clock the kernel stamps events with, process
//! RSS and CPU time, the container's freezer, free ports, machine description.
use std::{fs, net::TcpListener, path::PathBuf};

use anyhow::{Context as _, bail};

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`, so comparable with kernel_ts_ns.
pub(super) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// Fields of /proc/PID/stat after the command name (field 3 is index 0).
fn stat_fields(pid: u32) -> anyhow::Result<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        bail!("unexpected /proc/{pid}/stat: {stat}");
    };
    Ok(rest.split_whitespace().map(str::to_string).collect())
}

/// User + system CPU time of a process, in seconds.
pub(super) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let fields = stat_fields(pid)?;
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat has no field {}", i + 3))
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / clock_ticks_per_second() as f64)
}

/// When a process started, as CLOCK_MONOTONIC ns (clock-tick resolution).
pub(super) fn start_time_ns(pid: u32) -> anyhow::Result<u64> {
    let fields = stat_fields(pid)?;
    let ticks: u64 = fields
        .get(19)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("/proc/{pid}/stat has no start time"))?;
    Ok(ticks * 1_000_000_000 / clock_ticks_per_second())
}

/// Resident set size of a process, in MiB.
pub(super) fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib / 1024.0)
}

/// A port nobody listens on right now, for an agent's HTTP listener.
pub(super) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The freezer state of a container: cgroup v1 `freezer.state`, or cgroup v2 `cgroup.events`.
pub(super) struct Freezer {
    path: PathBuf,
    v1: bool,
}

impl Freezer {
    /// The freezer of the cgroup that process `pid` (the container's main process) is in.
    pub(super) fn of_process(pid: u32) -> anyhow::Result<Freezer> {
        let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .with_context(|| format!("reading /proc/{pid}/cgroup"))?;
        let entry = |prefix: &str| {
            cgroups
                .lines()
                .find_map(|l| l.split_once(prefix).map(|(_, p)| p.to_string()))
        };
        if let Some(path) = entry(":freezer:") {
            let file = PathBuf::from(format!("/sys/fs/cgroup/freezer{path}/freezer.state"));
            if file.exists() {
                return Ok(Freezer {
                    path: file,
                    v1: true,
                });
            }
        }
        if let Some(path) = entry("0::") {
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                let file = PathBuf::from(format!("{root}{path}/cgroup.events"));
                if file.exists() {
                    return Ok(Freezer {
                        path: file,
                        v1: false,
                    });
                }
            }
        }
        bail!("no freezer found for process {pid} (looked in /proc/{pid}/cgroup)")
    }

    pub(super) fn frozen(&self) -> bool {
        let Ok(text) = fs::read_to_string(&self.path) else {
            return false;
        };
        if self.v1 {
            text.trim() == "FROZEN"
        } else {
            text.lines().any(|l| l.trim() == "frozen 1")
        }
    }
}

/// One line describing the machine, for the table's header.
pub(super) fn machine() -> String {
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // SAFETY: sysconf has no preconditions.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {mem_gib:.0} GiB, Linux {}",
        kernel.trim()
    )
}
