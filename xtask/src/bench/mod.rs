//! `cargo xtask bench`: detection latency, syscall overhead, event throughput and footprint,
//! each beside its baseline measured in the same run, as one table (target/bench/latest.*).
mod agent;
mod container;
mod latency;
mod overhead;
mod report;
mod stats;
mod sys;
mod throughput;
mod tracers;

use std::{path::PathBuf, time::Instant};

use anyhow::Context as _;

use crate::{cmd, setup};

/// Baselines the bench installs for itself (not needed by the tests).
const BASELINE_PACKAGES: &[&str] = &["bpftrace", "auditd"];

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Exec trials in eBPF mode (split into interleaved blocks).
    #[arg(long, default_value_t = 100)]
    pub trials: usize,
    /// Exec trials in the poll-only baseline (each waits for a 15 s `docker top` poll).
    #[arg(long, default_value_t = 8)]
    pub poll_trials: usize,
    /// Rounds of the syscall-overhead comparison.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Scale of the syscall loops (1.0: 200k openat, 2k exec, 50k connect per run).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Ring-buffer sizes in bytes for the throughput runs.
    #[arg(long, value_delimiter = ',', default_values_t = [256 << 10, 4 << 20, 64 << 20])]
    pub ring_sizes: Vec<u32>,
    /// Offered openat rates per second for the flood (0: flat out).
    #[arg(long, value_delimiter = ',', default_values_t = [100_000, 200_000, 400_000, 800_000, 0])]
    pub flood_rates: Vec<u64>,
    /// Concurrent flooding processes in the container.
    #[arg(long, default_value_t = 2)]
    pub flooders: usize,
    /// Sections to run (default all): latency, overhead, throughput.
    #[arg(long, value_delimiter = ',', default_values_t = [
        "latency".to_string(), "overhead".to_string(), "throughput".to_string()])]
    pub only: Vec<String>,
}

/// Everything the stages share.
pub struct Bench {
    pub agent: PathBuf,
    pub helpers: PathBuf,
    pub image: String,
    pub dir: PathBuf,
    pub trials: usize,
    pub poll_trials: usize,
    pub rounds: usize,
    pub scale: f64,
    pub ring_sizes: Vec<u32>,
    pub flood_rates: Vec<u64>,
    pub flooders: usize,
}

/// The static load programs, built with gcc so they also run in the FROM-scratch image.
fn build_helpers(out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let src = cmd::workspace_root().join("xtask/bench");
    for (source, binary) in [
        ("syscalls.c", "crabpot-bench-syscalls"),
        ("true.c", "crabpot-true"),
    ] {
        let source = src.join(source).to_string_lossy().into_owned();
        let binary = out.join(binary).to_string_lossy().into_owned();
        cmd::run("gcc", &["-static", "-O2", "-Wall", "-o", &binary, &source])
            .context("building the bench load programs (needs gcc and libc6-dev)")?;
    }
    Ok(())
}

pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let image = setup::setup()?;
    setup::install_packages(BASELINE_PACKAGES)?;
    let root = cmd::workspace_root();
    let agent = setup::build_release_agent()?;
    let dir = root.join("target/bench");
    let bench = Bench {
        agent,
        helpers: dir.join("bin"),
        image,
        dir: dir.join("run"),
        trials: args.trials.max(1),
        poll_trials: args.poll_trials.max(1),
        rounds: args.rounds.max(1),
        scale: args.scale,
        ring_sizes: args.ring_sizes.clone(),
        flood_rates: args.flood_rates.clone(),
        flooders: args.flooders.max(1),
    };
    build_helpers(&bench.helpers)?;
    let mut report = report::Report {
        machine: sys::machine(),
        ..Default::default()
    };
    let wanted = |name: &str| args.only.iter().any(|s| s == name);
    if let Some(unknown) = args
        .only
        .iter()
        .find(|s| !["latency", "overhead", "throughput"].contains(&s.as_str()))
    {
        anyhow::bail!("--only {unknown}: use latency, overhead or throughput");
    }
    if wanted("latency") {
        report.section("Detection and containment latency", latency::run(&bench)?);
    }
    if wanted("overhead") {
        report.section("Syscall overhead", overhead::run(&bench)?);
    }
    if wanted("throughput") {
        report.section("Event throughput and footprint", throughput::run(&bench)?);
    }
    report.seconds = started.elapsed().as_secs_f64();
    println!("{}", report.markdown());
    report.save(&dir)
}
