//! What the kernel source hands to the rest of the agent (it lives with the source, so the
//! source never imports its consumers).
use serde::Serialize;

use crate::{model::event::KernelEvent, sources::bpf::record::DecodeError};

/// Turns a ring-buffer record into an event (events::decode, given at start-up: the sources
/// do not depend on the stages after them).
pub(crate) type Decoder = fn(&[u8]) -> Result<KernelEvent, DecodeError>;

/// Records the kernel could not reserve, in total and by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct DropReport {
    pub total: u64,
    pub by_kind: Vec<(String, u64)>,
}

#[derive(Debug)]
pub(crate) enum BusMessage {
    /// Decoded events from the kernel programs, in ring-buffer order (a batch of at most
    /// `ring::BATCH`).
    Kernel(Vec<KernelEvent>),
    /// The kernel dropped records because the ring buffer was full (running totals).
    KernelDrops(DropReport),
    /// A record that could not be decoded (running total of such records).
    DecodeError { error: DecodeError, total: u64 },
}
