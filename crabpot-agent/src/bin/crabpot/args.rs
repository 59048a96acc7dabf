//! The command line: every subcommand, flag and help text of `crabpot`.
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use clap::{Parser, Subcommand};
use crabpot_agent::{Severity, launch};

#[derive(Parser)]
#[command(name = "crabpot", version, about = "CrabPot operator commands")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Show recent alerts from the JSON-lines log (rotated files included).
    Alerts(AlertsArgs),
    /// What the running agent reports: container state, trust, layers, channels.
    Status {
        /// The agent's HTTP listener [default: the instance's `listen:`, else 127.0.0.1:9876].
        #[arg(long, default_value = DEFAULT_AGENT)]
        agent: String,
        /// The agent instance `crabpot-agent@NAME` (its listener from /etc/crabpot/NAME.yml).
        #[arg(long)]
        instance: Option<String>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install crabpot-agent and crabpot (from beside this binary), the systemd unit and a
    /// default /etc/crabpot/monitor.yml (an existing one is kept). Then:
    /// `systemctl daemon-reload && systemctl enable --now crabpot-agent`.
    Install,
    /// Freeze the container now.
    Pause {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        container: String,
    },
    /// Unfreeze the container after review. Through a running agent this also brings trust
    /// back to 100 (audited in the alerts log); with no agent running, Docker is asked
    /// directly.
    Resume {
        /// The container (name); the agent's first guarded one when absent (`crabpot`
        /// without an agent).
        #[arg(long, env = "CRABPOT_CONTAINER")]
        container: Option<String>,
        #[command(flatten)]
        agent: AgentAccess,
    },
    /// Break-glass: open a shell (or run CMD) in the guarded container, announced to the
    /// agent first (needs the control token), so it is a WARNING naming your uid, audited,
    /// not a freeze. An unannounced `docker exec` stays CRITICAL.
    Shell {
        /// The container (name or id); the one the agent guards when absent.
        #[arg(long, env = "CRABPOT_CONTAINER")]
        container: Option<String>,
        #[command(flatten)]
        agent: AgentAccess,
        /// The command to run instead of `sh`, after `--`.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// The pending decisions (auto-pauses, newly blocked destinations) waiting for an
    /// answer: `crabpot approve ID` or `crabpot deny ID`.
    Pending {
        #[command(flatten)]
        agent: AgentAccess,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending decision: resume the container and continue the stopped process.
    Approve {
        /// The decision's id (from `crabpot pending`, the alert or the toast).
        id: String,
        /// Also write the narrowest exception (or allow entry) to the managed
        /// conf.d/90-approved.yml and reload, so the same act passes from now on.
        #[arg(long)]
        always: bool,
        #[command(flatten)]
        agent: AgentAccess,
    },
    /// Deny a pending decision: kill the offending process tree and resume the container.
    Deny {
        id: String,
        /// Kill the process but leave the container frozen.
        #[arg(long)]
        keep_frozen: bool,
        #[command(flatten)]
        agent: AgentAccess,
    },
    /// The trust score of the running agent's container.
    Trust {
        #[command(subcommand)]
        action: TrustAction,
    },
    /// Remove the in-kernel hooks the agent pinned (they outlive the agent, on purpose):
    /// the container's connect and socket policy stops being enforced. Stop the agent first;
    /// a running agent's hooks stay until it exits.
    Unload {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        container: String,
        /// Every container's pinned hooks.
        #[arg(long, conflicts_with = "container")]
        all: bool,
    },
    /// Audit how the container was launched (Docker socket, privileged, capabilities, host
    /// namespaces, seccomp/AppArmor, limits, public ports, root), straight from Docker; exits
    /// 1 when there is a WARNING or CRITICAL finding.
    Audit {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        container: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create and start the guarded container with a hardened preset, and wait until it is
    /// healthy (or running, for an image without a health check).
    Up(UpArgs),
    /// Stop and remove the container.
    Down {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        name: String,
    },
    /// The container's output.
    Logs {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        name: String,
        /// Keep following.
        #[arg(short, long)]
        follow: bool,
        /// Lines from the end to show ("all" for everything).
        #[arg(long, default_value = "100")]
        tail: String,
    },
    /// A live terminal view of the running agent: guarded containers, pending decisions,
    /// recent alerts; keys to pause, resume, approve and deny (q quits).
    Top {
        #[command(flatten)]
        agent: AgentAccess,
        /// Refresh period in milliseconds.
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
    },
    /// Restart the container and wait until it is ready again.
    Restart {
        #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
        name: String,
        #[arg(long, default_value_t = 180)]
        wait: u64,
    },
}

// `crabpot alerts`; its help is the variant's doc comment.
#[derive(clap::Args)]
pub(crate) struct AlertsArgs {
    /// How many of the most recent matching alerts to show.
    #[arg(long, default_value_t = 20)]
    pub(crate) last: usize,
    /// Only this severity and above (INFO, WARNING, CRITICAL).
    #[arg(long)]
    pub(crate) severity: Option<Severity>,
    /// Only alerts at or after this time: RFC 3339 (2026-11-23T14:00:00+00:00) or an
    /// age such as 30s, 10m, 2h, 1d.
    #[arg(long, value_parser = parse_since)]
    pub(crate) since: Option<DateTime<FixedOffset>>,
    /// Print the alerts as JSON lines.
    #[arg(long)]
    pub(crate) json: bool,
    /// The alerts log [default: /var/log/crabpot/alerts.log when present (the systemd
    /// unit's), else ~/.crabpot/data/alerts.log of the effective user].
    #[arg(long, env = "CRABPOT_ALERTS_LOG")]
    pub(crate) file: Option<PathBuf>,
    /// The agent instance `crabpot-agent@NAME`: /var/log/crabpot/NAME/alerts.log.
    #[arg(long, conflicts_with = "file")]
    pub(crate) instance: Option<String>,
}

// `crabpot up`; its help is the variant's doc comment.
#[derive(clap::Args)]
pub(crate) struct UpArgs {
    #[arg(long, value_enum, default_value = "paranoid")]
    pub(crate) preset: launch::Preset,
    #[arg(long, default_value = "crabpot/openclaw-real:2026.9.6")]
    pub(crate) image: String,
    #[arg(long, default_value = "crabpot", env = "CRABPOT_CONTAINER")]
    pub(crate) name: String,
    /// The host port, on 127.0.0.1 only (0: any free port).
    #[arg(long, default_value_t = 18789)]
    pub(crate) port: u16,
    /// KEY=VALUE, or KEY to pass this shell's value (repeatable). OPENCLAW_GATEWAY_TOKEN
    /// is passed from this shell, or generated and printed.
    #[arg(short, long)]
    pub(crate) env: Vec<String>,
    /// Run as this user instead of the preset's choice.
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// Seconds to wait for the container to be ready.
    #[arg(long, default_value_t = 180)]
    pub(crate) wait: u64,
}

#[derive(Subcommand)]
pub(crate) enum TrustAction {
    /// Back to 100 without resuming (audited in the alerts log).
    Reset {
        #[command(flatten)]
        agent: AgentAccess,
    },
}

/// How to reach the running agent's token-protected control actions.
#[derive(clap::Args)]
pub(crate) struct AgentAccess {
    /// The agent's HTTP listener [default: the instance's `listen:`, else 127.0.0.1:9876].
    #[arg(long, default_value = DEFAULT_AGENT)]
    pub(crate) agent: String,
    /// The agent's control token file [default: /var/lib/crabpot/dashboard.token when
    /// present (the systemd unit's), else ~/.crabpot/dashboard.token].
    #[arg(long)]
    pub(crate) token_file: Option<PathBuf>,
    /// The agent instance `crabpot-agent@NAME`: its token in /var/lib/crabpot/NAME/, its
    /// listener from /etc/crabpot/NAME.yml.
    #[arg(long)]
    pub(crate) instance: Option<String>,
}

/// The agent's listener when neither `--agent` nor an instance's configuration names one.
pub(crate) const DEFAULT_AGENT: &str = "127.0.0.1:9876";

pub(crate) fn parse_since(text: &str) -> Result<DateTime<FixedOffset>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let amount: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` is neither RFC 3339 nor an age like 10m"))?;
    let seconds = match unit {
        "s" | "" => amount,
        "m" => amount * 60,
        "h" => amount * 3600,
        "d" => amount * 86_400,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}`: use s, m, h or d"
            ));
        }
    };
    let now = chrono::Local::now().fixed_offset();
    Ok(now - chrono::Duration::seconds(seconds))
}
