//! Watching the per-CPU `DROPPED` counters so a full ring buffer is never silent.
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray};
use crabpot_common::{EventKind, filtered};
use tokio::sync::mpsc;

use crate::sources::bpf::bus::BusMessage;
pub(crate) use crate::sources::bpf::bus::DropReport;

/// Sum the per-CPU counters of every kind.
pub(crate) fn read_drops(
    map: &PerCpuArray<MapData, u64>,
) -> Result<DropReport, aya::maps::MapError> {
    let mut report = DropReport::default();
    for kind in EventKind::ALL {
        let per_cpu = map.get(&(kind as u32), 0)?;
        let count: u64 = per_cpu.iter().sum();
        report.total += count;
        if count > 0 {
            report.by_kind.push((kind.name().to_string(), count));
        }
    }
    Ok(report)
}

/// Poll the counters and report every change on the bus.
pub(crate) async fn watch(
    map: PerCpuArray<MapData, u64>,
    bus: mpsc::Sender<BusMessage>,
    every: Duration,
) -> anyhow::Result<()> {
    let mut last = 0u64;
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let report = read_drops(&map)?;
        if report.total != last {
            last = report.total;
            if bus.send(BusMessage::KernelDrops(report)).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// The kernel's totals of filtered records (summed over CPUs): opens, connects.
pub(crate) fn read_filtered(
    map: &PerCpuArray<MapData, u64>,
) -> Result<(u64, u64), aya::maps::MapError> {
    let total =
        |index| -> Result<u64, aya::maps::MapError> { Ok(map.get(&index, 0)?.iter().sum()) };
    Ok((total(filtered::OPEN)?, total(filtered::CONNECT)?))
}

/// Poll the filtered-open counter and hand each total to `report` (the metrics).
pub(crate) async fn watch_filtered(
    map: PerCpuArray<MapData, u64>,
    report: impl Fn((u64, u64)),
    every: Duration,
) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        report(read_filtered(&map)?);
    }
}
