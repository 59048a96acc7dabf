//! Draining the `EVENTS` ring buffer with tokio's `AsyncFd`.
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc,
};

use crate::{bus::BusMessage, sources::bpf::decode};

/// Decode every record as it arrives and pass it on. Backpressure is deliberate: when the
/// consumers fall behind, this task waits, the ring buffer fills and the kernel counts the
/// records it could not reserve (see [`super::drops`]) instead of the agent growing without
/// bound.
pub async fn drain(ring: RingBuf<MapData>, bus: mpsc::Sender<BusMessage>) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its map fd and keeps it open, unchanged, for as long as
    // it lives; the AsyncFd owns the ring buffer.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the ring buffer with tokio: {e}"))?;
    let mut decode_errors: u64 = 0;
    loop {
        let mut guard = fd.readable_mut().await?;
        loop {
            let decoded = {
                let ring = guard.get_inner_mut();
                let Some(item) = ring.next() else { break };
                decode(&item)
            };
            let message = match decoded {
                Ok(event) => BusMessage::Kernel(event),
                Err(error) => {
                    decode_errors += 1;
                    BusMessage::DecodeError {
                        error,
                        total: decode_errors,
                    }
                }
            };
            if bus.send(message).await.is_err() {
                return Ok(()); // the consumer is gone: shutting down
            }
        }
        guard.clear_ready();
    }
}
