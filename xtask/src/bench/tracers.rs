//! What watches the syscalls during an overhead run: nothing, our agent, or a baseline —
//! `bpftrace` on the same tracepoints filtered to the container's cgroup, or `auditd` with
//! rules for the same syscalls (audit cannot filter by cgroup: it sees the whole host).
use std::{
    io::{BufRead as _, BufReader},
    os::unix::fs::MetadataExt as _,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{Bench, agent::BenchAgent, container::BenchContainer};
use crate::cmd;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Tracer {
    None,
    CrabPot,
    Bpftrace,
    Auditd,
    /// The floor any syscall-tracepoint tool pays: once one such tracepoint is attached,
    /// every syscall of every task takes the kernel's slow entry and exit path. Measured
    /// with an empty program on `sys_enter_acct`, which nothing here calls.
    Floor,
}

impl Tracer {
    pub(super) fn name(self) -> &'static str {
        match self {
            Tracer::None => "no agent",
            Tracer::CrabPot => "CrabPot",
            Tracer::Bpftrace => "bpftrace",
            Tracer::Auditd => "auditd",
            Tracer::Floor => "floor: any syscall tracepoint",
        }
    }
}

pub(super) enum Running {
    None,
    CrabPot(Box<BenchAgent>),
    Bpftrace(Child),
    Auditd(Child),
}

const SYSCALLS: &[&str] = &["execve", "execveat", "openat", "connect", "mount", "ptrace"];

/// The cgroup2 id (inode) of the container's cgroup, as bpftrace's `cgroup` builtin sees it.
fn cgroup_id(container: &BenchContainer) -> anyhow::Result<u64> {
    let main = container.main_pid()?;
    let cgroup = std::fs::read_to_string(format!("/proc/{main}/cgroup"))?;
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .context("no cgroup2 entry")?;
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if let Ok(meta) = std::fs::metadata(format!("{root}{path}")) {
            return Ok(meta.ino());
        }
    }
    bail!("the container's cgroup2 directory {path} was not found")
}

fn bpftrace_script(cgroup: u64) -> String {
    SYSCALLS
        .iter()
        .map(|s| {
            let what = match *s {
                "execve" | "execveat" | "openat" => "str(args->filename)",
                _ => "\"\"",
            };
            format!(
                "tracepoint:syscalls:sys_enter_{s} /cgroup == {cgroup}/ \
                 {{ printf(\"{s} %d %d %s %s\\n\", pid, tid, comm, {what}); }}\n"
            )
        })
        .collect()
}

/// An empty program on a syscall tracepoint that never fires (see [`Tracer::Floor`]).
const FLOOR_SCRIPT: &str = "tracepoint:syscalls:sys_enter_acct { }";

fn start_bpftrace(script: &str) -> anyhow::Result<Child> {
    let mut child = Command::new("bpftrace")
        .args(["-e", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting bpftrace (Debian package bpftrace)")?;
    let stdout = child.stdout.take().context("bpftrace stdout")?;
    let (ready_tx, ready_rx) = mpsc::channel();
    // Like our agent, bpftrace's output is consumed: every line read, then discarded.
    std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("Attaching")
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(());
            }
        }
    });
    if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        bail!("bpftrace did not attach within 60 s");
    }
    // "Attaching" is printed just before the probes are attached.
    std::thread::sleep(Duration::from_millis(500));
    Ok(child)
}

fn start_auditd() -> anyhow::Result<Child> {
    let _ = cmd::succeeds("auditctl", &["-D"]);
    let child = Command::new("auditd")
        .args(["-n", "-s", "enable"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting auditd (Debian package auditd)")?;
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let status = cmd::output("auditctl", &["-s"]).unwrap_or_default();
        if status
            .lines()
            .any(|l| l.starts_with("pid ") && l.trim() != "pid 0")
        {
            break;
        }
        if Instant::now() > until {
            bail!("auditd did not register with the kernel within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cmd::output("auditctl", &["-b", "8192"])?;
    let mut rule = vec!["-a", "always,exit", "-F", "arch=b64"];
    for s in SYSCALLS {
        rule.extend(["-S", s]);
    }
    rule.extend(["-k", "crabpot-bench"]);
    cmd::output("auditctl", &rule).context("adding the audit rule")?;
    Ok(child)
}

impl Running {
    pub(super) fn start(
        tracer: Tracer,
        bench: &Bench,
        container: &BenchContainer,
    ) -> anyhow::Result<Self> {
        Ok(match tracer {
            Tracer::None => Running::None,
            Tracer::CrabPot => Running::CrabPot(Box::new(BenchAgent::start(
                &bench.agent,
                &bench.dir.join("overhead"),
                &container.name,
                &["--no-auto-pause"],
            )?)),
            Tracer::Bpftrace => {
                Running::Bpftrace(start_bpftrace(&bpftrace_script(cgroup_id(container)?))?)
            }
            Tracer::Floor => Running::Bpftrace(start_bpftrace(FLOOR_SCRIPT)?),
            Tracer::Auditd => Running::Auditd(start_auditd()?),
        })
    }

    pub(super) fn stop(self) -> anyhow::Result<()> {
        match self {
            Running::None => Ok(()),
            Running::CrabPot(agent) => (*agent).stop(),
            Running::Bpftrace(mut child) => {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
                child.wait()?;
                Ok(())
            }
            Running::Auditd(mut child) => {
                let _ = cmd::succeeds("auditctl", &["-D"]);
                // SAFETY: signalling our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                child.wait()?;
                let _ = cmd::succeeds("auditctl", &["-e", "0"]);
                Ok(())
            }
        }
    }
}
