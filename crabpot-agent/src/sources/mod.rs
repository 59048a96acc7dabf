//! Where observations come from: the kernel programs and the Docker engine.
pub(crate) mod bpf;
pub(crate) mod cgroup;
pub(crate) mod container;
pub(crate) mod docker;
pub(crate) mod guard;
pub(crate) mod lineage;
pub(crate) mod select;
