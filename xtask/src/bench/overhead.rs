//! Syscall overhead: tight loops of openat+close, fork+execve of a static `true`, connect
//! to a closed loopback port, and UDP sends to loopback (one packet each through the
//! per-packet egress hook), on the host and inside the container, with nothing,
//! our agent, bpftrace or auditd watching. Rounds interleave the tracers so drift hits all.
use std::collections::HashMap;

use anyhow::{Context as _, bail};

use super::{
    Bench,
    container::BenchContainer,
    report::{Row, Target},
    stats::summarize,
    tracers::{Running, Tracer},
};
use crate::cmd;

const IN_CONTAINER_LOAD: &str = "/tmp/crabpot-bench-syscalls";
const IN_CONTAINER_TRUE: &str = "/tmp/crabpot-true";
const CLOSED_PORT: &str = "9";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub(crate) enum Op {
    Open,
    Exec,
    Connect,
    Udp,
}

impl Op {
    pub(crate) const ALL: [Op; 4] = [Op::Open, Op::Exec, Op::Connect, Op::Udp];

    fn label(self) -> &'static str {
        match self {
            Op::Open => "openat+close",
            Op::Exec => "fork+execve+wait",
            Op::Connect => "connect (refused)",
            Op::Udp => "UDP sendto loopback (1 packet)",
        }
    }

    fn iterations(self, scale: f64) -> String {
        let base = match self {
            Op::Open => 200_000.0,
            Op::Exec => 2_000.0,
            Op::Connect => 50_000.0,
            Op::Udp => 200_000.0,
        };
        format!("{:.0}", (base * scale).max(100.0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Place {
    Host,
    Container,
}

type Key = (Tracer, Place, Op);

fn parse_ns(output: &str) -> anyhow::Result<f64> {
    output
        .lines()
        .find_map(|l| l.strip_prefix("ns_per_call "))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("the load program printed no ns_per_call: {output}"))
}

fn run_op(bench: &Bench, container: &BenchContainer, place: Place, op: Op) -> anyhow::Result<f64> {
    let n = op.iterations(bench.scale);
    let load = bench.helpers.join("crabpot-bench-syscalls");
    let host_true = bench.helpers.join("crabpot-true");
    let host_true = host_true.to_string_lossy();
    let mut args: Vec<&str> = match op {
        Op::Open => vec!["open", &n],
        Op::Exec => vec!["exec", &n],
        Op::Connect => vec!["connect", &n, CLOSED_PORT],
        Op::Udp => vec!["udp", &n, CLOSED_PORT],
    };
    let output = match place {
        Place::Host => {
            if op == Op::Exec {
                args.push(&host_true);
            }
            cmd::output(&load.to_string_lossy(), &args)?
        }
        Place::Container => {
            if op == Op::Exec {
                args.push(IN_CONTAINER_TRUE);
            }
            let mut command = vec![IN_CONTAINER_LOAD];
            command.extend(args);
            container.exec(&command)?
        }
    };
    parse_ns(&output)
}

pub(super) fn run(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let load = bench.helpers.join("crabpot-bench-syscalls");
    let truth = bench.helpers.join("crabpot-true");
    let container = BenchContainer::start(
        "overhead",
        &bench.image,
        &[(&load, IN_CONTAINER_LOAD), (&truth, IN_CONTAINER_TRUE)],
    )?;
    let tracers: Vec<Tracer> = [
        Tracer::None,
        Tracer::CrabPot,
        Tracer::Bpftrace,
        Tracer::Auditd,
        Tracer::Floor,
    ]
    .into_iter()
    .filter(|t| bench.baselines || matches!(t, Tracer::None | Tracer::CrabPot | Tracer::Floor))
    .collect();
    let samples = sample(bench, &container, &tracers)?;
    rows(bench, &tracers, &samples)
}

/// Every op in both places under every tracer, `bench.rounds` times.
fn sample(
    bench: &Bench,
    container: &BenchContainer,
    tracers: &[Tracer],
) -> anyhow::Result<HashMap<Key, Vec<f64>>> {
    let mut samples: HashMap<Key, Vec<f64>> = HashMap::new();
    for round in 0..bench.rounds {
        eprintln!("xtask bench: overhead round {}/{}", round + 1, bench.rounds);
        // Rotate the order each round so no tracer always runs first or last.
        for i in 0..tracers.len() {
            let tracer = tracers[(i + round) % tracers.len()];
            let running = Running::start(tracer, bench, container)?;
            let mut result = Ok(());
            for place in [Place::Host, Place::Container] {
                for op in bench.ops.iter().copied() {
                    match run_op(bench, container, place, op) {
                        Ok(ns) => samples.entry((tracer, place, op)).or_default().push(ns),
                        Err(e) => result = Err(e),
                    }
                }
            }
            running.stop()?;
            result.with_context(|| format!("measuring with {}", tracer.name()))?;
        }
    }
    Ok(samples)
}

/// The table: ours against no agent (the target), and beside each baseline measured.
fn rows(
    bench: &Bench,
    tracers: &[Tracer],
    samples: &HashMap<Key, Vec<f64>>,
) -> anyhow::Result<Vec<Row>> {
    let median = |key: Key| -> anyhow::Result<(f64, f64)> {
        let values = samples.get(&key).context("missing samples")?;
        let s = summarize(values);
        if s.n == 0 {
            bail!("no samples for {key:?}");
        }
        Ok((s.p50, s.spread()))
    };
    let mut rows = Vec::new();
    for op in bench.ops.iter().copied() {
        let (none_host, _) = median((Tracer::None, Place::Host, op))?;
        let (none_ct, _) = median((Tracer::None, Place::Container, op))?;
        for place in [Place::Host, Place::Container] {
            let (ours, spread) = median((Tracer::CrabPot, place, op))?;
            let where_ = match place {
                Place::Host => "caller on host (b)",
                Place::Container => "caller in container (c)",
            };
            let noisy = if spread > 0.1 {
                format!("spread {:.0}%: noisy", spread * 100.0)
            } else {
                format!("spread {:.0}%", spread * 100.0)
            };
            let (reference, reference_name) = match place {
                Place::Host => (none_host, "no agent (a)"),
                Place::Container => (none_ct, "no agent, in container"),
            };
            // Issue 15's targets: on the host 1.05× no agent; in the container 1.10× for the
            // kinds the policy filters or batches (opens, connects).
            let target = match (place, op) {
                (Place::Host, _) => Some(Target::RatioAtMost(1.05)),
                (Place::Container, Op::Open | Op::Connect) => Some(Target::RatioAtMost(1.10)),
                _ => None,
            };
            let row = Row::new(format!("{}, {where_}", op.label()), "ns/call", ours)
                .against(reference_name, reference)
                .note(noisy);
            rows.push(match target {
                Some(target) => row.target(target),
                None => row,
            });
            if place == Place::Container {
                rows.push(
                    Row::new(format!("{}, {where_}", op.label()), "ns/call", ours)
                        .against("no agent, on host (a)", none_host),
                );
            }
            for baseline in [Tracer::Floor, Tracer::Bpftrace, Tracer::Auditd]
                .into_iter()
                .filter(|t| tracers.contains(t))
            {
                let (theirs, _) = median((baseline, place, op))?;
                rows.push(
                    Row::new(format!("{}, {where_}", op.label()), "ns/call", ours)
                        .against(baseline.name(), theirs)
                        .note(match baseline {
                            Tracer::Floor => format!(
                                "the slow syscall path alone (an empty program on a \
                                 tracepoint never hit): {:.2}× {reference_name}",
                                theirs / reference
                            ),
                            _ => format!(
                                "{} itself: {:.2}× {reference_name}",
                                baseline.name(),
                                theirs / reference
                            ),
                        }),
                );
            }
        }
    }
    Ok(rows)
}
