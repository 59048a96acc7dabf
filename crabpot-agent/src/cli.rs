//! Command line of `crabpot-agent`.
use std::path::PathBuf;

use clap::Parser;

use crate::{
    model::event::RuleName,
    policy::{
        allow::AllowSpec,
        rules::{Action, parse_override},
    },
    sinks::event_printer::EventFormat,
};

/// The HTTP listener when neither `--listen` nor the file's `listen:` names one.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:9876";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "crabpot-agent",
    version,
    about = "Guards AI-agent containers with eBPF and the Docker API (run as root)"
)]
pub struct AgentArgs {
    /// Name of a container to guard; repeatable [default: crabpot, unless --select is given].
    #[arg(long, env = "CRABPOT_CONTAINER")]
    pub container: Vec<String>,

    /// Also guard every container a selector matches, attached when it starts:
    /// `label=KEY=VALUE`, `name=PREFIX*` or `name=NAME`; repeatable.
    #[arg(long, value_name = "SELECTOR", value_parser = parse_selector)]
    pub select: Vec<String>,

    /// Print one line per kernel event on stdout (`text`, or `json` for JSON lines).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "text")]
    pub events: Option<EventFormat>,

    /// Size of the kernel→agent ring buffer in bytes (a power of two, at least 4096).
    #[arg(long, default_value_t = 4 << 20)]
    pub ring_buffer_bytes: u32,

    /// Poll-only mode: no kernel programs (Docker API and /proc channels only), as on hosts
    /// without eBPF. The agent also falls back to it, loudly, when loading eBPF fails.
    #[arg(long)]
    pub no_bpf: bool,

    /// Policy preset for the OpenClaw gateway (the full ASF-42 table).
    #[arg(long)]
    pub openclaw: bool,

    /// Policy preset for the Clawdbot WhatsApp bridge (loopback-only network).
    #[arg(long)]
    pub clawbot: bool,

    /// Policy preset for Moltbot (PC control and voice: device access watched).
    #[arg(long)]
    pub moltbot: bool,

    /// JSON-lines alerts log [default: $LOGS_DIRECTORY/alerts.log under systemd, else
    /// ~/.crabpot/data/alerts.log of the effective user].
    #[arg(long, env = "CRABPOT_ALERTS_LOG")]
    pub alerts_log: Option<PathBuf>,

    /// Only alert: do not freeze the container on CRITICAL alerts.
    #[arg(long)]
    pub no_auto_pause: bool,

    /// CPU % that, sustained, raises a WARNING.
    #[arg(long)]
    pub cpu_threshold: Option<f64>,

    /// Seconds the CPU must stay above the threshold.
    #[arg(long)]
    pub cpu_sustain_seconds: Option<u64>,

    /// Memory % of the limit (usage minus inactive file cache) that raises a WARNING.
    #[arg(long)]
    pub memory_threshold: Option<f64>,

    /// Seconds between `docker top` polls of the process watchdog.
    #[arg(long)]
    pub process_poll_seconds: Option<u64>,

    /// Seconds between socket-table polls of the network auditor.
    #[arg(long)]
    pub network_poll_seconds: Option<u64>,

    /// Seconds between health checks (also checked at every Docker health event).
    #[arg(long)]
    pub health_poll_seconds: Option<u64>,

    /// Extra allowed destination (CIDR, e.g. 10.0.0.0/8, address, host name or *.suffix
    /// pattern, learned from the container's DNS replies); repeatable. Loopback, the
    /// unspecified addresses and the container's resolvers on port 53 are always allowed.
    #[arg(
        long = "allow",
        value_name = "CIDR|ADDR[:PORT]|HOST[:PORT]|*.SUFFIX[:PORT]"
    )]
    pub allow: Vec<AllowSpec>,

    /// Per-rule action, RULE=ACTION; repeatable. Rules: mount, exec, ptrace, proc_open,
    /// socket, connect. Actions: block, audit, alert, log, off.
    #[arg(long = "rule", value_name = "RULE=ACTION", value_parser = parse_override)]
    pub rules: Vec<(RuleName, Action)>,

    /// Configuration file [default: $CONFIGURATION_DIRECTORY/monitor.yml under systemd,
    /// /etc/crabpot/monitor.yml, then ~/.crabpot/config/monitor.yml, when present]. Flags
    /// override the file.
    #[arg(long, env = "CRABPOT_CONFIG")]
    pub config: Option<PathBuf>,

    /// Validate the configuration, print what it selects and exit (0 valid, 2 invalid).
    #[arg(long)]
    pub check_config: bool,

    /// Learn mode for DURATION (90s, 10m, 1h): every rule in audit (nothing blocked, killed,
    /// stopped or frozen, no trust cost), what would have been raised recorded; then write
    /// a proposed policy file (--learn-output) and exit 0.
    #[arg(long, value_name = "DURATION", value_parser = crate::policy::learn::parse_duration)]
    pub learn: Option<std::time::Duration>,

    /// Where learn mode writes the proposed policy [default: monitor.learned.yml beside the
    /// alerts log].
    #[arg(long, value_name = "PATH", requires = "learn")]
    pub learn_output: Option<PathBuf>,

    /// Address of the HTTP listener (metrics, status, control); `listen:` in the file.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: std::net::SocketAddr,

    /// Also serve `/metrics` alone on this address (e.g. for a Prometheus on another
    /// interface; a non-loopback address needs --listen-remote and then the token).
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Allow a non-loopback --listen address; every request then needs the token.
    #[arg(long)]
    pub listen_remote: bool,

    /// Control token file [default: $STATE_DIRECTORY/dashboard.token under systemd, else
    /// ~/.crabpot/dashboard.token of the effective user, created root-only at first start].
    #[arg(long)]
    pub token_file: Option<PathBuf>,

    /// Windows toasts for CRITICAL alerts: `auto` (on WSL2 with interop), `on`, `off`.
    #[arg(long, value_enum, default_value = "auto")]
    pub toasts: Toasts,

    /// Send alerts (CRITICAL ones and quarantines unless --webhook-min-severity says
    /// otherwise) to this URL (retried with backoff).
    #[arg(long)]
    pub webhook: Option<String>,

    /// Payload shape for --webhook (`generic` is alert schema v1; `falco` is Falco's JSON
    /// output, for falcosidekick).
    #[arg(long, value_enum, default_value = "generic")]
    pub webhook_format: crate::sinks::webhook::WebhookFormat,

    /// Lowest severity sent to --webhook (INFO, WARNING or CRITICAL).
    #[arg(long, default_value = "CRITICAL", value_name = "LEVEL")]
    pub webhook_min_severity: crate::model::alert::Severity,

    /// Most alerts sent to --webhook per period: `N` (per minute) or `N/PERIOD` (`10/30s`,
    /// `100/1h`); 0 is no limit. The rest are held back and announced by one "N alerts
    /// suppressed" record.
    #[arg(long, default_value = "30", value_name = "N[/PERIOD]")]
    pub webhook_rate: crate::sinks::rate_limit::Rate,

    /// Post alerts to this Alertmanager (its base URL; `/api/v2/alerts` is added).
    #[arg(long, value_name = "URL")]
    pub alertmanager: Option<String>,

    /// Lowest severity sent to --alertmanager.
    #[arg(long, default_value = "WARNING", value_name = "LEVEL")]
    pub alertmanager_min_severity: crate::model::alert::Severity,

    /// Most alerts sent to --alertmanager per period (as --webhook-rate).
    #[arg(long, default_value = "60", value_name = "N[/PERIOD]")]
    pub alertmanager_rate: crate::sinks::rate_limit::Rate,

    /// Seconds in which identical alerts (same rule, container, severity and executable or
    /// destination) are one record with a `count`; 0 turns de-duplication off.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub dedup_window: u64,

    /// Line format of the alerts log: `json` (alert schema v1), `falco` (Falco's JSON
    /// output) or `legacy` (the record before v1; removed in 0.3.0). The audit log is v1.
    #[arg(long, value_enum, default_value = "json")]
    pub output_format: crate::sinks::formats::OutputFormat,

    /// Log filter for the agent's own logs (tracing `EnvFilter` syntax).
    #[arg(long, default_value = "info", env = "CRABPOT_LOG")]
    pub log: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Toasts {
    Auto,
    On,
    Off,
}

impl AgentArgs {
    /// Names of the presets selected by flags (none when no flag is given).
    pub fn profile_flags(&self) -> Vec<&'static str> {
        [
            (self.openclaw, "openclaw"),
            (self.clawbot, "clawbot"),
            (self.moltbot, "moltbot"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// A `--select` value, checked (kept as given).
fn parse_selector(text: &str) -> Result<String, String> {
    crate::sources::select::Selector::parse(text).map(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_repeat_and_selectors_are_checked() {
        let args = AgentArgs::parse_from([
            "crabpot-agent",
            "--container",
            "a",
            "--container",
            "b",
            "--select",
            "label=team=ai",
            "--select",
            "name=agent-*",
        ]);
        assert_eq!(args.container, ["a", "b"]);
        assert_eq!(args.select, ["label=team=ai", "name=agent-*"]);
        assert!(AgentArgs::try_parse_from(["crabpot-agent", "--select", "image=x"]).is_err());
    }

    #[test]
    fn events_flag_defaults_to_text() {
        let args = AgentArgs::parse_from(["crabpot-agent", "--events"]);
        assert_eq!(args.events, Some(EventFormat::Text));
        let args = AgentArgs::parse_from(["crabpot-agent", "--events", "json", "--clawbot"]);
        assert_eq!(args.events, Some(EventFormat::Json));
        assert_eq!(args.profile_flags(), vec!["clawbot"]);
        let args = AgentArgs::parse_from(["crabpot-agent"]);
        assert_eq!(args.events, None);
        assert!(args.profile_flags().is_empty());
    }

    #[test]
    fn delivery_flags_parse_with_compatible_defaults() {
        use crate::model::alert::Severity;
        let args = AgentArgs::parse_from(["crabpot-agent"]);
        assert_eq!(args.webhook_min_severity, Severity::Critical);
        assert_eq!(args.dedup_window, 10);
        assert_eq!(args.webhook_rate.count, 30);
        assert!(args.alertmanager.is_none());
        let args = AgentArgs::parse_from([
            "crabpot-agent",
            "--alertmanager",
            "http://am:9093",
            "--webhook-min-severity",
            "warning",
            "--webhook-rate",
            "2/10s",
            "--dedup-window",
            "0",
        ]);
        assert_eq!(args.webhook_min_severity, Severity::Warning);
        assert_eq!(args.webhook_rate.per, std::time::Duration::from_secs(10));
        assert_eq!(args.alertmanager.as_deref(), Some("http://am:9093"));
        assert!(AgentArgs::try_parse_from(["crabpot-agent", "--webhook-rate", "fast"]).is_err());
    }

    #[test]
    fn rejects_unknown_flags_and_formats() {
        assert!(AgentArgs::try_parse_from(["crabpot-agent", "--events", "xml"]).is_err());
        assert!(AgentArgs::try_parse_from(["crabpot-agent", "--bogus"]).is_err());
    }
}
