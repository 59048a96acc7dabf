//! CrabPot host agent.
//!
//! Data flows one way, and imports follow it (tests/module_cycles.rs keeps them so):
//! [`model`] (the core: alert, kernel event, guarded container, alert sender; it names
//! nothing else) ← [`sources`] (kernel programs and their ring buffer, the Docker engine,
//! the container tracker, process lineage) ← [`policy`] (what deserves an alert and what is
//! a violation; trust) ← [`actions`] (in-kernel enforcement, DNS-learned allows, auto-pause,
//! mount undo) ← [`channels`] (the Docker-side channels, which judge and act on their own)
//! ← [`sinks`] (terminal, alerts log, dashboard, webhook, metrics). [`pipeline`] is the
//! kernel-event loop that hands each event from source to policy to action; [`agent`]
//! prepares, starts (tasks with one cancellation token) and stops.
mod actions;
mod agent;
mod channels;
mod cli;
mod config;
mod config_file;
pub mod control;
mod events;
mod install;
mod kernel_side;
pub mod launch;
mod model;
pub mod paths;
mod pipeline;
mod policy;
mod preflight;
mod reload;
mod settings;
mod sinks;
mod sources;

// The public surface: what the two binaries, the load and VM tests and the fuzz targets
// use. Everything else is crate-private, so the compiler reports dead code.

// The agent (main.rs).
pub use agent::{ALERT_CAPACITY, run};
pub use cli::AgentArgs;
pub use settings::check_config;

// The operator command (bin/crabpot.rs).
pub use actions::pins::unload as unload_pins;
pub use config::{default_alerts_log, effective_home};
pub use install::{Layout as InstallLayout, install};
pub use policy::posture::{Finding as PostureFinding, PostureReport};
pub use sinks::{
    alert_log::reader,
    http::{DecisionAnswer, ShellAnnounce, ShellGrant, Status},
    metrics::ContainerStatus,
    terminal::format_alert,
};

// The alert path under load (tests/load.rs).
pub use channels::ChannelTicks;
pub use config::MonitorConfig;
pub use model::alert::{Alert, AlertSource, Severity, now_rfc3339};
pub use model::{
    container::{Guarded, GuardedContainer, GuardedUnit},
    sender::AlertSender,
};
pub use policy::{break_glass::BreakGlass, trust::TrustScore};
pub use sinks::{
    alert_log::{AlertLogWriter, reader::read_alerts},
    dashboard::Hub,
    http::{HttpState, StaticInfo, router as http_router},
    metrics::{Metrics, StateViews},
    router::AlertRouter,
};

// The BPF LSM layer in a VM (tests/lsm_vm.rs).
pub use sources::bpf::{loader, lsm};

// The fuzz targets.
pub use channels::logs::{LineSplitter, LogScanner, cut};
pub use config::default_log_patterns;
pub use config_file::{ConfigError, parse as parse_config_file};
pub use events::decode;
pub use policy::{
    dns::{RecordData, parse_reply},
    rules::Policy,
};
pub use settings::apply_file;
