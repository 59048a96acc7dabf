//! What the kernel source hands to the rest of the agent (it lives with the source, so the
//! source never imports its consumers).
use crate::sources::bpf::{DecodeError, KernelEvent, drops::DropReport};

#[derive(Debug)]
pub enum BusMessage {
    /// Decoded events from the kernel programs, in ring-buffer order (a batch of at most
    /// [`crate::sources::bpf::ring::BATCH`]).
    Kernel(Vec<KernelEvent>),
    /// The kernel dropped records because the ring buffer was full (running totals).
    KernelDrops(DropReport),
    /// A record that could not be decoded (running total of such records).
    DecodeError { error: DecodeError, total: u64 },
}
