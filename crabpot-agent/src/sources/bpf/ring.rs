//! Draining the `EVENTS` ring buffer with tokio's `AsyncFd`.
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
};

use crate::sources::bpf::bus::{BusMessage, Decoder};

/// Most records handed to the pipeline at once.
pub(crate) const BATCH: usize = 256;
/// Longest a batched (no wake-up) record waits in the ring before the agent collects it.
pub(crate) const LAZY_DRAIN: std::time::Duration = std::time::Duration::from_millis(10);

/// Decode every record as it arrives and pass it on. Backpressure is deliberate: when the
/// consumers fall behind, this task waits, the ring buffer fills and the kernel counts the
/// records it could not reserve (see [`super::drops`]) instead of the agent growing without
/// bound. Records are decoded by `decode` (each event kind's decoder, events/).
pub(crate) async fn drain(
    ring: RingBuf<MapData>,
    bus: mpsc::Sender<BusMessage>,
    decode: Decoder,
) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its map fd and keeps it open, unchanged, for as long as
    // it lives; the AsyncFd owns the ring buffer.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {e}"))?;
    let mut decode_errors: u64 = 0;
    loop {
        // Urgent records (exec, connect, mount, ptrace…) wake us at once; opens are
        // submitted without a wake-up and collected here at least every LAZY_DRAIN.
        match tokio::time::timeout(LAZY_DRAIN, fd.readable_mut()).await {
            Ok(guard) => {
                let mut guard = guard?;
                if !drain_ready(guard.get_inner_mut(), &bus, decode, &mut decode_errors).await {
                    return Ok(());
                }
                guard.clear_ready();
            }
            Err(_elapsed) => {
                if !drain_ready(fd.get_mut(), &bus, decode, &mut decode_errors).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Hand every record in the ring to the pipeline; `false` once the pipeline is gone.
async fn drain_ready(
    ring: &mut RingBuf<MapData>,
    bus: &mpsc::Sender<BusMessage>,
    decode: Decoder,
    decode_errors: &mut u64,
) -> bool {
    loop {
        // Records go on in batches: one hand-over (and at most one wake-up of the
        // pipeline) per batch instead of per record is what keeps up with a flood.
        let mut batch = Vec::with_capacity(BATCH);
        let mut errors = Vec::new();
        while batch.len() < BATCH {
            let Some(item) = ring.next() else { break };
            match decode(&item) {
                Ok(event) => batch.push(event),
                Err(error) => {
                    *decode_errors += 1;
                    errors.push(BusMessage::DecodeError {
                        error,
                        total: *decode_errors,
                    });
                }
            }
        }
        let ring_empty = batch.len() < BATCH;
        if !batch.is_empty() && bus.send(BusMessage::Kernel(batch)).await.is_err() {
            return false; // the consumer is gone: shutting down
        }
        for message in errors {
            if bus.send(message).await.is_err() {
                return false;
            }
        }
        if ring_empty {
            return true;
        }
    }
}
