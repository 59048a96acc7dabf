use std::collections::HashMap;

use bollard::models::{ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats};

use super::*;

fn cpu(total: u64, system: u64) -> ContainerCpuStats {
    ContainerCpuStats {
        cpu_usage: Some(ContainerCpuUsage {
            total_usage: Some(total),
            ..Default::default()
        }),
        system_cpu_usage: Some(system),
        online_cpus: Some(2),
        ..Default::default()
    }
}

#[test]
fn cpu_percent_from_deltas() {
    let stats = ContainerStatsResponse {
        cpu_stats: Some(cpu(1_500, 10_000)),
        precpu_stats: Some(cpu(1_000, 9_000)),
        ..Default::default()
    };
    // 500 of 1000 system ticks on 2 CPUs: one full core = 100 %.
    assert_eq!(cpu_percent(&stats), Some(100.0));
    let idle = ContainerStatsResponse {
        cpu_stats: Some(cpu(1_000, 9_000)),
        precpu_stats: Some(cpu(1_000, 9_000)),
        ..Default::default()
    };
    assert_eq!(cpu_percent(&idle), None, "no system delta yet");
}

#[test]
fn memory_excludes_inactive_file_cache() {
    let stats = ContainerStatsResponse {
        memory_stats: Some(ContainerMemoryStats {
            usage: Some(900),
            limit: Some(1000),
            stats: Some(HashMap::from([("inactive_file".to_string(), 300)])),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(memory_used(&stats), Some((600, 1000)));
}

#[test]
fn an_episode_alerts_once_after_the_sustain_window() {
    let mut episode = Episode::default();
    let t0 = Instant::now();
    let sustain = Duration::from_secs(30);
    assert_eq!(episode.observe(true, sustain, t0), None);
    assert_eq!(
        episode.observe(true, sustain, t0 + Duration::from_secs(29)),
        None
    );
    assert_eq!(
        episode.observe(true, sustain, t0 + Duration::from_secs(30)),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        episode.observe(true, sustain, t0 + Duration::from_secs(60)),
        None
    );
    // Dropping below ends the episode; a new one needs the full window again.
    assert_eq!(
        episode.observe(false, sustain, t0 + Duration::from_secs(61)),
        None
    );
    assert_eq!(
        episode.observe(true, sustain, t0 + Duration::from_secs(62)),
        None
    );
    assert!(
        episode
            .observe(true, sustain, t0 + Duration::from_secs(92))
            .is_some()
    );
}
