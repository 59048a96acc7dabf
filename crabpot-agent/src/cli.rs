//! Command line of `crabpot-agent`.
use clap::Parser;

use crate::sinks::event_printer::EventFormat;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "crabpot-agent",
    version,
    about = "Guards one AI-agent container with eBPF and the Docker API (run as root)"
)]
pub struct AgentArgs {
    /// Name of the container to guard.
    #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
    pub container: String,

    /// Print one line per kernel event on stdout (`text`, or `json` for JSON lines).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "text")]
    pub events: Option<EventFormat>,

    /// Size of the kernel→agent ring buffer in bytes (a power of two, at least 4096).
    #[arg(long, default_value_t = 4 << 20)]
    pub ring_buffer_bytes: u32,

    /// Policy preset for the OpenClaw gateway (the full ASF-42 table).
    #[arg(long)]
    pub openclaw: bool,

    /// Policy preset for the Clawdbot WhatsApp bridge (loopback-only network).
    #[arg(long)]
    pub clawbot: bool,

    /// Policy preset for Moltbot (PC control and voice: device access watched).
    #[arg(long)]
    pub moltbot: bool,

    /// Log filter for the agent's own logs (tracing `EnvFilter` syntax).
    #[arg(long, default_value = "info", env = "CRABPOT_LOG")]
    pub log: String,
}

impl AgentArgs {
    /// Names of the selected presets, `openclaw` when none is given.
    pub fn profiles(&self) -> Vec<&'static str> {
        let mut profiles: Vec<&'static str> = [
            (self.openclaw, "openclaw"),
            (self.clawbot, "clawbot"),
            (self.moltbot, "moltbot"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if profiles.is_empty() {
            profiles.push("openclaw");
        }
        profiles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_flag_defaults_to_text() {
        let args = AgentArgs::parse_from(["crabpot-agent", "--events"]);
        assert_eq!(args.events, Some(EventFormat::Text));
        let args = AgentArgs::parse_from(["crabpot-agent", "--events", "json", "--clawbot"]);
        assert_eq!(args.events, Some(EventFormat::Json));
        assert_eq!(args.profiles(), vec!["clawbot"]);
        let args = AgentArgs::parse_from(["crabpot-agent"]);
        assert_eq!(args.events, None);
        assert_eq!(args.profiles(), vec!["openclaw"]);
    }

    #[test]
    fn rejects_unknown_flags_and_formats() {
        assert!(AgentArgs::try_parse_from(["crabpot-agent", "--events", "xml"]).is_err());
        assert!(AgentArgs::try_parse_from(["crabpot-agent", "--bogus"]).is_err());
    }
}
