//! Deciding what is worth an alert.
pub mod denylist;
pub mod kernel_rules;
pub mod network_allow;
