//! Deciding what is worth an alert, and what the kernel must stop.
pub mod allow;
pub mod denylist;
pub mod dns;
pub mod dns_learn;
pub mod exe_files;
pub mod exe_identity;
pub mod hosts;
pub mod kernel_rules;
pub mod learned;
pub mod network_allow;
pub mod open_path;
pub mod repeats;
pub mod rules;
pub mod sensitive;
pub mod trust;
pub mod violations;
