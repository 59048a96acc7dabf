//! Deciding what is worth an alert, and what the kernel must stop.
pub mod allow;
pub mod denylist;
pub mod exe_files;
pub mod exe_identity;
pub mod exec_failures;
pub mod hosts;
pub mod kernel_rules;
pub mod network_allow;
pub mod open_path;
pub mod origin;
pub mod rules;
pub mod trust;
pub mod violations;
