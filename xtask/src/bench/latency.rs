//! Detection and containment latency: a shell `docker exec`'d into the container, and one
//! exec'd by a program already in it, from the kernel's exec event to (a) the alert line in
//! the JSON-lines log, (b) the freezer reporting FROZEN, and (c) the kernel stopping the
//! shell before its first instruction (`kernel_action_ts_ns` of the alert). Baseline: the
//! agent's poll-only mode (the seed's `docker top` every 15 s), trials interleaved in blocks
//! so drift hits both.
use std::{
    fs::File,
    io::{Read as _, Seek as _, SeekFrom},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    Bench,
    agent::BenchAgent,
    container::BenchContainer,
    report::{Row, Target},
    stats::summarize,
    sys,
};

/// How often the bench samples the alerts log and the freezer while it waits.
const SAMPLE: Duration = Duration::from_micros(200);

#[derive(Default)]
struct Samples {
    alert_ms: Vec<f64>,
    frozen_ms: Vec<f64>,
    stopped_ms: Vec<f64>,
}

/// What the shell alert says of the kernel: its exec time, when it stopped the shell, and
/// the shell's host pid.
#[derive(Clone, Copy, Default)]
struct KernelTimes {
    exec_ns: Option<u64>,
    stop_ns: Option<u64>,
    pid: Option<u64>,
}

/// The first CRITICAL process alert appended to the log after `offset`, and its kernel times.
fn new_shell_alert(log: &Path, offset: u64) -> Option<KernelTimes> {
    let mut file = File::open(log).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|a| a["severity"] == "CRITICAL" && a["source"] == "processes")
        .map(|a| KernelTimes {
            exec_ns: a["details"]["kernel_ts_ns"].as_u64(),
            stop_ns: a["details"]["kernel_action_ts_ns"].as_u64(),
            pid: a["details"]["pid"].as_u64(),
        })
}

/// Wait until the alert is in the log and the freezer is frozen; times in monotonic ns.
fn watch(
    log: &Path,
    offset: u64,
    freezer: &sys::Freezer,
    deadline: Duration,
) -> anyhow::Result<(u64, KernelTimes, u64)> {
    let until = Instant::now() + deadline;
    let (mut alert_at, mut kernel_ts, mut frozen_at) = (None, KernelTimes::default(), None);
    while Instant::now() < until {
        if frozen_at.is_none() && freezer.frozen() {
            frozen_at = Some(sys::monotonic_ns());
        }
        if alert_at.is_none()
            && let Some(ts) = new_shell_alert(log, offset)
        {
            alert_at = Some(sys::monotonic_ns());
            kernel_ts = ts;
        }
        if let (Some(a), Some(f)) = (alert_at, frozen_at) {
            return Ok((a, kernel_ts, f));
        }
        std::thread::sleep(SAMPLE);
    }
    bail!(
        "no {} within {deadline:?}",
        if alert_at.is_none() {
            "shell alert"
        } else {
            "freeze"
        }
    )
}

/// Where the next alert line will start.
fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

fn ms(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e6
}

fn resume(agent: &mut BenchAgent, freezer: &sys::Freezer) -> anyhow::Result<()> {
    // As an operator would: once the agent reports the pause, resume through it.
    agent.wait_state("paused", Duration::from_secs(20))?;
    agent.resume()?;
    agent.wait_state("running", Duration::from_secs(20))?;
    if freezer.frozen() {
        bail!("the agent reports the container running but its freezer is still frozen");
    }
    Ok(())
}

/// The shell `docker exec` starts: runc's multi-threaded init execs it, and that exec
/// must first end runc's other threads.
const DOCKER_EXEC_SHELL: &[&str] = &["sh", "-c", "true"];
/// A shell exec'd by a single-threaded program already in the container (as the gateway's
/// spawned children exec theirs): the exec itself is short.
const INSIDE_SHELL: &[&str] = &["crabpot-evade", "exec", "/bin/sh", "sh", "-c", "true"];

/// eBPF mode: run `command` (which execs a shell), timed from the kernel's own exec
/// timestamp of the shell.
fn kernel_trials(
    bench: &Bench,
    container: &BenchContainer,
    trials: usize,
    into: &mut Samples,
    command: &[&str],
) -> anyhow::Result<()> {
    let mut agent = BenchAgent::start(
        &bench.agent,
        &bench.dir.join("latency-ebpf"),
        &container.name,
        &[],
    )?;
    let freezer = sys::Freezer::of_process(container.main_pid()?)?;
    for _ in 0..trials {
        let offset = log_len(&agent.alerts_log);
        let mut exec = container.spawn_exec(command)?;
        let (alert_at, kernel, frozen_at) =
            watch(&agent.alerts_log, offset, &freezer, Duration::from_secs(10))?;
        let kernel_ts = kernel
            .exec_ns
            .context("the shell alert carries no kernel_ts_ns")?;
        into.alert_ms.push(ms(kernel_ts, alert_at));
        into.frozen_ms.push(ms(kernel_ts, frozen_at));
        if let Some(stop) = kernel.stop_ns {
            into.stopped_ms.push(ms(kernel_ts, stop));
        }
        resume(&mut agent, &freezer)?;
        // The shell stays stopped after a resume: end it, so `docker exec` returns.
        if let Some(pid) = kernel.pid {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        exec.wait().context("waiting for docker exec")?;
    }
    agent.stop()
}

/// Poll-only mode: a shell that stays (`docker top` must see it), timed from its start time.
fn poll_trials(
    bench: &Bench,
    container: &BenchContainer,
    trials: usize,
    into: &mut Samples,
) -> anyhow::Result<()> {
    let mut agent = BenchAgent::start(
        &bench.agent,
        &bench.dir.join("latency-poll"),
        &container.name,
        &["--no-bpf"],
    )?;
    let freezer = sys::Freezer::of_process(container.main_pid()?)?;
    for _ in 0..trials {
        let offset = log_len(&agent.alerts_log);
        let before: Vec<u32> = container_pids(container)?;
        let mut exec = container.spawn_exec(&["sh", "-c", "sleep 100; true"])?;
        let shell = wait_new_shell(container, &before)?;
        let started = sys::start_time_ns(shell)?;
        let (alert_at, _, frozen_at) =
            watch(&agent.alerts_log, offset, &freezer, Duration::from_secs(40))?;
        into.alert_ms.push(ms(started, alert_at));
        into.frozen_ms.push(ms(started, frozen_at));
        resume(&mut agent, &freezer)?;
        // SAFETY: killing the shell we started in the container, by its host pid.
        unsafe { libc::kill(shell as i32, libc::SIGKILL) };
        exec.wait().context("waiting for docker exec")?;
    }
    agent.stop()
}

fn container_pids(container: &BenchContainer) -> anyhow::Result<Vec<u32>> {
    let main = container.main_pid()?;
    let cgroup = std::fs::read_to_string(format!("/proc/{main}/cgroup"))?;
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .context("no cgroup2 entry")?;
    let procs = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .find_map(|root| std::fs::read_to_string(format!("{root}{path}/cgroup.procs")).ok())
        .context("reading the container's cgroup.procs")?;
    Ok(procs
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

fn wait_new_shell(container: &BenchContainer, before: &[u32]) -> anyhow::Result<u32> {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        for pid in container_pids(container)? {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if !before.contains(&pid) && comm.trim() == "sh" {
                return Ok(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("the shell started by docker exec did not appear in the container")
}

pub(super) fn run(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let container = BenchContainer::start("latency", &bench.image, &[])?;
    let (mut ours, mut poll) = (Samples::default(), Samples::default());
    let mut inside = Samples::default();
    let blocks = 2;
    for block in 0..blocks {
        eprintln!("xtask bench: latency block {}/{blocks}", block + 1);
        let trials = bench.trials.div_ceil(blocks);
        kernel_trials(bench, &container, trials, &mut ours, DOCKER_EXEC_SHELL)?;
        kernel_trials(bench, &container, trials, &mut inside, INSIDE_SHELL)?;
        poll_trials(
            bench,
            &container,
            bench.poll_trials.div_ceil(blocks),
            &mut poll,
        )?;
    }
    let (a, f) = (summarize(&ours.alert_ms), summarize(&ours.frozen_ms));
    let s = summarize(&ours.stopped_ms);
    let (pa, pf) = (summarize(&poll.alert_ms), summarize(&poll.frozen_ms));
    let (ia, is, ifr) = (
        summarize(&inside.alert_ms),
        summarize(&inside.stopped_ms),
        summarize(&inside.frozen_ms),
    );
    let noisy = |n: usize| {
        if n < 20 {
            format!("n={n}: few trials, noisy")
        } else {
            format!("n={n}")
        }
    };
    Ok(vec![
        Row::new("shell exec → stopped in kernel, p50", "ms", s.p50).note(format!(
            "n={}: `docker exec sh`, from the exec's entry to the SIGSTOP at sched_process_exec \
             (includes runc ending its threads)",
            s.n
        )),
        Row::new("shell exec → stopped in kernel, p99", "ms", s.p99).target(Target::AtMost(1.0)),
        Row::new("shell exec → stopped in kernel, max", "ms", s.max),
        Row::new("shell exec'd inside → stopped in kernel, p50", "ms", is.p50).note(format!(
            "n={}: a program in the container execs sh (crabpot-evade exec)",
            is.n
        )),
        Row::new("shell exec'd inside → stopped in kernel, p99", "ms", is.p99)
            .target(Target::AtMost(1.0)),
        Row::new("shell exec'd inside → stopped in kernel, max", "ms", is.max),
        Row::new("shell exec'd inside → alert written, p99", "ms", ia.p99)
            .target(Target::AtMost(5.0)),
        Row::new("shell exec'd inside → container frozen, p99", "ms", ifr.p99)
            .target(Target::AtMost(20.0)),
        Row::new("shell exec → alert written, p50", "ms", a.p50)
            .against("poll-only p50", pa.p50)
            .note(noisy(a.n)),
        Row::new("shell exec → alert written, p99", "ms", a.p99)
            .against("poll-only p99", pa.p99)
            .target(Target::AtMost(5.0))
            .note(format!("poll-only {}", noisy(pa.n))),
        Row::new("shell exec → alert written, max", "ms", a.max).against("poll-only max", pa.max),
        Row::new("shell exec → container frozen, p50", "ms", f.p50)
            .against("poll-only p50", pf.p50),
        Row::new("shell exec → container frozen, p99", "ms", f.p99)
            .against("poll-only p99", pf.p99)
            .target(Target::AtMost(20.0)),
        Row::new("shell exec → container frozen, max", "ms", f.max)
            .against("poll-only max", pf.max),
    ])
}
