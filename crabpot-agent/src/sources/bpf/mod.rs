//! The kernel side as the agent sees it: load and attach, drain the ring buffer, count drops.
pub(crate) mod btf;
pub mod bus;
pub mod decode;
pub mod drops;
pub mod loader;
pub mod lsm;
pub mod ring;
pub mod tracefs;

pub use decode::{DecodeError, EventBody, Header, KernelEvent, decode};
pub use loader::{BpfError, BpfOptions, KernelPipeline, load};
