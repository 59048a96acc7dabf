//! The agent's main loop: start the sources, then route what they report.
use std::time::Duration;

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};

use crate::{
    bus::BusMessage,
    cli::AgentArgs,
    preflight::{self, KernelFeatures},
    sinks::event_printer::{ObservedEvent, format_line, print_line},
    sources::{
        bpf::{self, BpfOptions, drops},
        container::{ContainerTracker, GuardedContainer},
        docker,
        lineage::ProcessTable,
    },
};

/// Queue between the ring-buffer drain and the agent loop.
const BUS_CAPACITY: usize = 16 * 1024;

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    preflight::require_root()?;
    preflight::raise_memlock();
    let features = KernelFeatures::probe();
    features.report();
    let docker = docker::connect().await?;
    let kernel = bpf::load(&BpfOptions {
        ring_buffer_bytes: args.ring_buffer_bytes,
    })?;
    tracing::info!(
        "crabpot-agent {} started: profiles {}, {} tracepoints attached, ring buffer {} KiB",
        env!("CARGO_PKG_VERSION"),
        args.profiles().join("+"),
        bpf::loader::TRACEPOINTS.len(),
        args.ring_buffer_bytes / 1024
    );
    let bpf::KernelPipeline {
        ebpf: _programs,
        events,
        monitored_cgroups,
        dropped,
    } = kernel;

    let (guarded_tx, guarded) = watch::channel(None);
    let tracker = ContainerTracker::new(
        docker,
        args.container.clone(),
        monitored_cgroups,
        guarded_tx,
    );
    tokio::spawn(tracker.run());

    let (bus_tx, mut bus) = mpsc::channel(BUS_CAPACITY);
    let drain = tokio::spawn(bpf::ring::drain(events, bus_tx.clone()));
    let drop_watch = tokio::spawn(drops::watch(dropped, bus_tx, Duration::from_millis(500)));

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut table = ProcessTable::default();
    loop {
        tokio::select! {
            message = bus.recv() => match message {
                Some(message) => handle(message, &args, &guarded, &mut table)?,
                None => break,
            },
            _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); break; }
        }
    }
    drain.abort();
    drop_watch.abort();
    Ok(())
}

fn handle(
    message: BusMessage,
    args: &AgentArgs,
    guarded: &watch::Receiver<Option<GuardedContainer>>,
    table: &mut ProcessTable,
) -> anyhow::Result<()> {
    match message {
        BusMessage::Kernel(event) => {
            table.observe(&event);
            let Some(format) = args.events else {
                return Ok(());
            };
            let lineage = table.lineage(&event);
            let current = guarded.borrow();
            let (name, id) = match current.as_ref() {
                Some(c) => (c.name.as_str(), c.id.as_str()),
                None => (args.container.as_str(), ""),
            };
            let observed = ObservedEvent {
                container: name,
                container_id: id,
                event: &event,
                lineage: &lineage,
            };
            print_line(&format_line(&observed, format)).context("writing an event to stdout")?;
        }
        BusMessage::KernelDrops(report) => {
            tracing::warn!(
                total = report.total,
                "kernel ring buffer full: {} events dropped so far ({:?}); raise \
                 --ring-buffer-bytes",
                report.total,
                report.by_kind
            );
            if let Some(crate::sinks::event_printer::EventFormat::Json) = args.events {
                let line = serde_json::json!({"kind": "dropped", "total": report.total,
                    "by_kind": report.by_kind});
                print_line(&line.to_string()).context("writing to stdout")?;
            }
        }
        BusMessage::DecodeError { error, total } => {
            tracing::warn!("undecodable kernel record ({total} so far): {error}");
        }
    }
    Ok(())
}
