//! Event throughput and footprint: an openat flood from inside the container at set rates,
//! per ring-buffer size; events drained and dropped as the agent's own /metrics count them;
//! the agent's RSS and CPU at idle and during the flood.
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{
    Bench,
    agent::BenchAgent,
    container::BenchContainer,
    report::{Row, Target},
    sys,
};

const IN_CONTAINER_LOAD: &str = "/tmp/crabpot-bench-syscalls";
const EVENTS: &str = "crabpot_kernel_events_total";
const DROPPED: &str = "crabpot_kernel_events_dropped_total";
const FLOOD_SECONDS: &str = "3";

struct Step {
    offered_per_s: f64,
    drained_per_s: f64,
    drop_fraction: f64,
    agent_cpu_percent: f64,
    agent_rss_mib: f64,
}

fn counts(agent: &BenchAgent) -> anyhow::Result<(f64, f64)> {
    Ok((
        agent.metric(EVENTS, "kind=\"open\"")?,
        agent.metric(DROPPED, "")?,
    ))
}

/// Wait until the agent's counters stop moving: everything sent has been drained.
fn settle(agent: &BenchAgent) -> anyhow::Result<(f64, f64, Instant)> {
    let mut last = counts(agent)?;
    let mut last_change = Instant::now();
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
        let now = counts(agent)?;
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= Duration::from_millis(500) {
            break;
        }
    }
    Ok((last.0, last.1, last_change))
}

fn flood(
    bench: &Bench,
    agent: &BenchAgent,
    container: &BenchContainer,
    rate: u64,
) -> anyhow::Result<Step> {
    let (events0, dropped0, _) = settle(agent)?;
    let cpu0 = sys::cpu_seconds(agent.pid())?;
    let started = Instant::now();
    // One flooder per core, each offering its share of the rate.
    let share = (rate / bench.flooders as u64).to_string();
    let flooders = (0..bench.flooders)
        .map(|_| container.spawn_exec_piped(&[IN_CONTAINER_LOAD, "flood", FLOOD_SECONDS, &share]))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut calls = 0.0;
    let mut seconds: f64 = 0.0;
    for flooder in flooders {
        let output = flooder
            .wait_with_output()
            .context("waiting for a flooder")?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut fields = text.split_whitespace();
        calls += fields
            .nth(1)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("a flooder printed no count: {text}"))?;
        seconds = seconds.max(fields.nth(1).and_then(|v| v.parse().ok()).unwrap_or(3.0));
    }
    let rss = sys::rss_mib(agent.pid())?;
    let (events1, dropped1, drained_at) = settle(agent)?;
    let cpu1 = sys::cpu_seconds(agent.pid())?;
    let drained = events1 - events0;
    let busy = drained_at
        .duration_since(started)
        .as_secs_f64()
        .max(seconds);
    Ok(Step {
        offered_per_s: calls / seconds,
        drained_per_s: drained / busy,
        drop_fraction: (dropped1 - dropped0) / (drained + dropped1 - dropped0).max(1.0),
        agent_cpu_percent: (cpu1 - cpu0) / busy * 100.0,
        agent_rss_mib: rss,
    })
}

pub(super) fn run(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let load = bench.helpers.join("crabpot-bench-syscalls");
    let container =
        BenchContainer::start("throughput", &bench.image, &[(&load, IN_CONTAINER_LOAD)])?;
    let mut rows = Vec::new();
    for (i, ring) in bench.ring_sizes.iter().enumerate() {
        let ring_arg = ring.to_string();
        let agent = BenchAgent::start(
            &bench.agent,
            &bench.dir.join("throughput"),
            &container.name,
            &["--ring-buffer-bytes", &ring_arg, "--no-auto-pause"],
        )?;
        if i == 0 {
            rows.extend(idle_rows(&agent)?);
        }
        rows.extend(ring_rows(bench, &agent, &container, *ring)?);
        agent.stop()?;
    }
    Ok(rows)
}

/// The agent's CPU over 10 s of idle, and its RSS.
fn idle_rows(agent: &BenchAgent) -> anyhow::Result<Vec<Row>> {
    let (cpu0, t0) = (sys::cpu_seconds(agent.pid())?, Instant::now());
    std::thread::sleep(Duration::from_secs(10));
    let cpu = (sys::cpu_seconds(agent.pid())? - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    Ok(vec![
        Row::new("agent CPU at idle (10 s)", "%", cpu)
            .note("one core = 100 %; clock-tick resolution"),
        Row::new("agent RSS at idle", "MiB", sys::rss_mib(agent.pid())?),
    ])
}

/// The floods at every offered rate under one ring size.
fn ring_rows(
    bench: &Bench,
    agent: &BenchAgent,
    container: &BenchContainer,
    ring: u32,
) -> anyhow::Result<Vec<Row>> {
    let ring_label = format!("{} KiB ring", ring / 1024);
    let mut best_clean = 0.0f64;
    let mut flat_out = None;
    for &rate in &bench.flood_rates {
        let offered = if rate == 0 {
            "flat out".into()
        } else {
            rate.to_string()
        };
        eprintln!("xtask bench: flood {ring_label}, rate {offered}");
        let step = flood(bench, agent, container, rate)?;
        if step.drop_fraction == 0.0 {
            best_clean = best_clean.max(step.drained_per_s);
        }
        if rate == 0 {
            flat_out = Some(step);
        }
    }
    let mut rows = vec![
        Row::new(
            format!("events/s drained with zero drops, {ring_label}"),
            "events/s",
            best_clean,
        )
        .target(Target::AtLeast(1_000_000.0))
        .note(format!(
            "offered rates {:?}/s (0 = flat out)",
            bench.flood_rates
        )),
    ];
    if let Some(step) = flat_out {
        rows.extend(flat_out_rows(&ring_label, &step));
    }
    Ok(rows)
}

/// What the flat-out flood drained, and what it cost the agent.
fn flat_out_rows(ring_label: &str, step: &Step) -> Vec<Row> {
    let mut rows = vec![
        Row::new(
            format!("flat-out flood, {ring_label}: drained"),
            "events/s",
            step.drained_per_s,
        )
        .against("offered by the flooder", step.offered_per_s)
        .note(format!("{:.1} % dropped", step.drop_fraction * 100.0)),
        Row::new(
            format!("agent CPU during flat-out flood, {ring_label}"),
            "%",
            step.agent_cpu_percent,
        )
        .note("one core = 100 %"),
    ];
    if step.agent_cpu_percent > 0.0 {
        rows.push(
            Row::new(
                format!("drain capacity per core of agent CPU, {ring_label}"),
                "events/s",
                step.drained_per_s / (step.agent_cpu_percent / 100.0),
            )
            .target(Target::AtLeast(1_000_000.0))
            .note(
                "derived: drained events/s ÷ agent CPU share (the flooders, not the \
                 agent, are the limit on 2 cores)",
            ),
        );
    }
    rows.push(Row::new(
        format!("agent RSS during flat-out flood, {ring_label}"),
        "MiB",
        step.agent_rss_mib,
    ));
    rows
}
