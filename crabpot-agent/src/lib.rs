//! CrabPot host agent.
//!
//! Architecture, by role: [`sources`] (kernel programs and their bus, Docker engine and its
//! watchers) → [`policy`] (what deserves an alert: one judge function per kernel event kind,
//! trust and its repeats, DNS learning, who started a process) → [`actions`] (enforcement,
//! auto-pause) and [`sinks`] (terminal, alerts log, dashboard, webhook, metrics). An
//! [`alert::Alert`] carries its control data typed ([`alert::Control`]: quarantine, follow-up,
//! kernel timestamp, decision). [`pipeline`] is the kernel-event loop; [`agent`] prepares,
//! starts and stops the tasks.
pub mod actions;
pub mod agent;
pub mod alert;
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
