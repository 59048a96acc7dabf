//! Load: 10 000 alerts a second for 30 s through the agent's real alert router (the same
//! `AlertRouter` the agent starts: terminal, JSON-lines alerts log, dashboard hub, metrics),
//! with the real HTTP listener on 127.0.0.1:0 serving 50 real WebSocket clients, five of
//! which never read, and `/metrics` scraped every second. It asserts behaviour, not speed:
//! no alert missing or doubled in the alerts log and every line valid JSON, the producers
//! never held up, the slow clients dropped while the fast ones keep receiving, and the
//! process's peak RSS under a bound.
//!
//! Ignored by plain `cargo test` (it takes half a minute); `cargo xtask test` runs it:
//! `cargo test -p crabpot-agent --test load -- --ignored --nocapture`.
//! `CRABPOT_LOAD_SECONDS` shortens it for a quick local look.
mod load_support;

use std::{
    collections::HashSet,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use crabpot_agent::{Alert, read_alerts};
use load_support::{
    Agent, ClientReport, StderrTo, fast_client, peak_rss_kib, scrape_metrics, slow_client,
};

const RATE: u64 = 10_000;
const CLIENTS: usize = 50;
const SLOW_CLIENTS: usize = 5;
/// Peak resident memory of this whole process (agent parts, 50 clients, the test itself),
/// before the log is read back: 300 000 queued alerts alone would pass it.
const RSS_BOUND_MIB: u64 = 256;

fn seconds() -> u64 {
    std::env::var("CRABPOT_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// The sequence number a load alert carries.
fn seq_of(alert: &Alert) -> Option<u64> {
    alert.details.get("seq").and_then(|v| v.as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "half a minute of load; run by `cargo xtask test` with --ignored"]
async fn ten_thousand_alerts_a_second_lose_nothing_and_never_wait_for_slow_clients() {
    let secs = seconds();
    let total = RATE * secs;
    let dir = std::env::temp_dir().join(format!("crabpot-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    // The terminal sink writes every alert to stderr: into a file here, not the test log.
    let stderr = StderrTo::file(&dir.join("terminal.log")).expect("redirect stderr");
    let outcome = run(&dir, secs).await;
    drop(stderr);
    let run = outcome.expect("load run");
    // Before reading the whole log back into this process.
    let peak_rss = peak_rss_kib().unwrap_or(u64::MAX) / 1024;

    let report = read_alerts(&dir.join("alerts.log"));
    let mut seen = HashSet::new();
    let mut doubled = 0u64;
    for alert in &report.alerts {
        match seq_of(alert) {
            Some(seq) if seen.insert(seq) => {}
            _ => doubled += 1,
        }
    }
    let missing = (0..total).filter(|s| !seen.contains(s)).count();
    let fast: Vec<&ClientReport> = run.fast.iter().collect();
    let fewest = fast.iter().map(|c| c.alerts).min().unwrap_or(0);
    let most_behind = fast.iter().map(|c| c.max_behind).max().unwrap_or(0);
    eprintln!(
        "load: {total} alerts in {:.1} s ({:.0}/s); alerts log: {} lines, {missing} missing, \
         {doubled} doubled or unnumbered, {} malformed; drained {:.2} s after the last alert; \
         dashboard: {} of {SLOW_CLIENTS} slow clients dropped after {:.1} s, fast clients \
         received {fewest}..{} alerts, at most {most_behind} alerts behind; {} scrapes \
         (slowest {:.0} ms), router stalled at {} of them; peak RSS {peak_rss} MiB (bound {RSS_BOUND_MIB} MiB)",
        run.produce_secs,
        total as f64 / run.produce_secs,
        report.alerts.len(),
        report.problems.len(),
        run.drain_secs,
        run.slow_dropped,
        run.slow_dropped_after.unwrap_or(f64::NAN),
        fast.iter().map(|c| c.alerts).max().unwrap_or(0),
        run.scrapes,
        run.slowest_scrape_ms,
        run.router_stalls,
    );

    assert!(report.problems.is_empty(), "{:?}", &report.problems[..]);
    assert_eq!((missing, doubled), (0, 0), "alerts lost or doubled");
    assert_eq!(report.alerts.len() as u64, total);
    // A router that waited for a stuck client would stop: the alerts would back up into the
    // producers within seconds. Only the lossless alerts log may slow them, and only as far
    // as the CPU does (a debug build on two shared cores reaches about half the rate).
    assert!(
        total as f64 / run.produce_secs > RATE as f64 / 3.0,
        "producing {total} alerts took {:.1} s: something waited",
        run.produce_secs
    );
    assert_eq!(
        run.slow_dropped, SLOW_CLIENTS,
        "slow clients still connected"
    );
    assert!(
        run.slow_closed_by_agent,
        "a slow client's connection was not closed"
    );
    assert_eq!(fast.len(), CLIENTS - SLOW_CLIENTS);
    for client in &fast {
        assert!(!client.dropped, "fast client {} was dropped", client.id);
        assert!(
            client.in_order,
            "fast client {} saw alerts out of order",
            client.id
        );
        assert!(
            client.received_at_end,
            "fast client {} stopped receiving before the end",
            client.id
        );
    }
    assert!(
        run.scrape_failures == 0 && run.scrapes + 2 >= secs,
        "{} scrapes, {} failed",
        run.scrapes,
        run.scrape_failures
    );
    assert_eq!(run.metrics_alerts, total, "/metrics alert count");
    assert_eq!(
        run.router_stalls, 0,
        "the router stopped taking alerts for a second"
    );
    assert!(
        peak_rss < RSS_BOUND_MIB,
        "peak RSS {peak_rss} MiB over {RSS_BOUND_MIB}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

struct RunFigures {
    produce_secs: f64,
    drain_secs: f64,
    fast: Vec<ClientReport>,
    slow_dropped: usize,
    slow_dropped_after: Option<f64>,
    slow_closed_by_agent: bool,
    scrapes: u64,
    scrape_failures: u64,
    /// Scrapes (one a second) at which the router had taken no alert since the last one.
    router_stalls: usize,
    slowest_scrape_ms: f64,
    metrics_alerts: u64,
}

async fn run(dir: &std::path::Path, secs: u64) -> anyhow::Result<RunFigures> {
    let total = RATE * secs;
    let agent = Agent::start(dir).await?;
    let fast_count = CLIENTS - SLOW_CLIENTS;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut fast = Vec::new();
    for id in 0..fast_count {
        fast.push(tokio::spawn(fast_client(
            id,
            agent.address,
            agent.produced.clone(),
            stop_rx.clone(),
        )));
    }
    let mut slow = Vec::new();
    for _ in 0..SLOW_CLIENTS {
        slow.push(slow_client(agent.address).await?);
    }
    agent.wait_for_clients(CLIENTS).await?;
    let scraper = tokio::spawn(scrape_metrics(agent.address, stop_rx.clone()));

    // The producers: a tick every 10 ms, each raising its share, catching up if late.
    let started = Instant::now();
    let mut slow_dropped_after = None;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let per_tick = RATE / 100;
    let mut seq = 0;
    while seq < total {
        if started.elapsed() > Duration::from_secs(2 * secs + 10) {
            anyhow::bail!("producers held up: {seq} of {total} alerts raised");
        }
        tick.tick().await;
        for _ in 0..per_tick.min(total - seq) {
            agent.raise(seq).await;
            seq += 1;
        }
        agent.produced.store(seq, Ordering::Relaxed);
        if slow_dropped_after.is_none() && agent.hub.clients() <= fast_count {
            slow_dropped_after = Some(started.elapsed().as_secs_f64());
        }
    }
    let produce_secs = started.elapsed().as_secs_f64();
    // Let the fast clients see the last second, then stop them and the scraper.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected = agent.hub.clients();
    let _ = stop_tx.send(true);
    let mut fast_reports = Vec::new();
    for client in fast {
        fast_reports.push(client.await??);
    }
    let scrape = scraper.await??;
    let fast_dropped = fast_reports.iter().filter(|c| c.dropped).count();

    let drain_started = Instant::now();
    let address = agent.address;
    let server = agent.stop().await?;
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let metrics_alerts = load_support::alerts_counted(address).await?;
    server.abort();
    let mut slow_closed_by_agent = true;
    for client in slow {
        slow_closed_by_agent &= load_support::closed_by_agent(client).await;
    }
    Ok(RunFigures {
        produce_secs,
        drain_secs,
        fast: fast_reports,
        slow_dropped: CLIENTS.saturating_sub(connected + fast_dropped),
        slow_dropped_after,
        slow_closed_by_agent,
        router_stalls: scrape
            .counted
            .windows(2)
            .filter(|w| w[1] <= w[0] && w[0] < total)
            .count(),
        scrapes: scrape.scrapes,
        scrape_failures: scrape.failures,
        slowest_scrape_ms: scrape.slowest_ms,
        metrics_alerts,
    })
}
