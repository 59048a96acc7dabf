//! The kernel side as the agent sees it: load and attach, drain the ring buffer, count drops.
pub(crate) mod btf;
pub(crate) mod bus;
pub(crate) mod drops;
pub mod loader;
pub mod lsm;
pub(crate) mod record;
pub(crate) mod ring;
pub(crate) mod tracefs;

pub(crate) use loader::{BpfOptions, KernelPipeline, load};
