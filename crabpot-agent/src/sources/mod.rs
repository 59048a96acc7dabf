//! Where observations come from: the kernel programs and the Docker engine.
pub mod bpf;
pub mod cgroup;
pub mod container;
pub mod docker;
pub mod guard;
pub mod lineage;
pub mod watchers;
