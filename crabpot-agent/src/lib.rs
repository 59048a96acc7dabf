//! CrabPot host agent.
//!
//! Architecture, by role: [`sources`] (kernel programs, Docker engine and its watchers) →
//! [`policy`] (what deserves an alert) → [`actions`] (auto-pause) and [`sinks`] (terminal,
//! alerts log, event printer). [`agent`] wires them together.
pub mod actions;
pub mod agent;
pub mod alert;
pub mod bus;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod control;
pub mod install;
pub mod kernel_side;
pub mod pipeline;
pub mod policy;
pub mod preflight;
pub mod reload;
pub mod settings;
pub mod sinks;
pub mod sources;
