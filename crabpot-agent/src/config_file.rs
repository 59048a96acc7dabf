//! `monitor.yml`: every setting of the monitor and the policy. Unknown keys and bad values
//! are refused with the file, line and column.
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{
    model::alert::Severity,
    policy::{allow::AllowSpec, rules::Action},
};

/// Where the file is looked for when `--config` is not given, in order.
pub(crate) fn default_locations() -> Vec<PathBuf> {
    crate::paths::config_locations()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message} (every key is shown in deploy/monitor.example.yml)")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

macro_rules! checked_newtype {
    ($name:ident, $inner:ty, $check:expr, $what:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
        #[serde(try_from = $what)]
        pub struct $name(pub $inner);
        impl TryFrom<$inner> for $name {
            type Error = String;
            fn try_from(value: $inner) -> Result<Self, String> {
                let check: fn(&$inner) -> Result<(), String> = $check;
                check(&value).map(|()| $name(value))
            }
        }
    };
}

checked_newtype!(
    Percent,
    f64,
    |v| (*v > 0.0 && v.is_finite())
        .then_some(())
        .ok_or_else(|| format!("{v} is not a percentage above 0")),
    "f64"
);
checked_newtype!(
    Seconds,
    u64,
    |v| (*v >= 1)
        .then_some(())
        .ok_or_else(|| "intervals are at least 1 second".to_string()),
    "u64"
);

/// A severity name in any case.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct SeverityName(pub Severity);
impl TryFrom<String> for SeverityName {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse().map(SeverityName)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct ActionName(pub Action);
impl TryFrom<String> for ActionName {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse().map(ActionName)
    }
}

/// A regular expression that compiles.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Pattern(pub String);
impl TryFrom<String> for Pattern {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        regex::Regex::new(&text)
            .map(|_| Pattern(text))
            .map_err(|e| format!("the pattern does not compile: {e}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Openclaw,
    Clawbot,
    Moltbot,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Openclaw => "openclaw",
            Profile::Clawbot => "clawbot",
            Profile::Moltbot => "moltbot",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub cpu_percent: Option<Percent>,
    pub cpu_sustain_seconds: Option<u64>,
    pub memory_percent: Option<Percent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intervals {
    pub stats_seconds: Option<Seconds>,
    pub processes_seconds: Option<Seconds>,
    pub network_seconds: Option<Seconds>,
    pub health_seconds: Option<Seconds>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternSpec {
    pub name: String,
    pub regex: Pattern,
    pub severity: SeverityName,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    pub patterns: Option<Vec<PatternSpec>>,
    pub line_max: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub mount: Option<ActionName>,
    pub exec: Option<ActionName>,
    pub ptrace: Option<ActionName>,
    pub proc_open: Option<ActionName>,
    pub socket: Option<ActionName>,
    pub connect: Option<ActionName>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    pub penalty: Option<i32>,
    pub quarantine_below: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsLog {
    pub path: Option<PathBuf>,
    pub max_bytes: Option<u64>,
    pub keep: Option<usize>,
}

/// The file, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub container: Option<String>,
    pub profiles: Option<Vec<Profile>>,
    pub auto_pause: Option<bool>,
    #[serde(default)]
    pub thresholds: Thresholds,
    #[serde(default)]
    pub intervals: Intervals,
    pub health_failures: Option<usize>,
    pub denylist: Option<Vec<String>>,
    /// Allowed outbound destinations (CIDR, address, address:port).
    pub allow: Option<Vec<AllowSpec>>,
    #[serde(default)]
    pub logs: Logs,
    #[serde(default)]
    pub policy: Rules,
    #[serde(default)]
    pub trust: Trust,
    #[serde(default)]
    pub alerts_log: AlertsLog,
    /// Named, narrow matches that silence a rule's or the watchdog's alert.
    pub exceptions: Option<Vec<crate::policy::exceptions::Exception>>,
    /// The HTTP listener (`--listen`): each instance of `crabpot-agent@NAME` needs its own.
    pub listen: Option<std::net::SocketAddr>,
    /// A `/metrics`-only listener (`--metrics-listen`).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Allow non-loopback listeners (`--listen-remote`); every request then needs the token.
    pub listen_remote: Option<bool>,
}

/// Parse the text of a configuration file named `path`.
pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_norway::from_str(text).map_err(|error| {
        let (line, column) = error
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        let message = error.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    })
}

pub(crate) fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<FileConfig, ConfigError> {
        parse(Path::new("monitor.yml"), text)
    }

    #[test]
    fn a_full_file_parses() {
        let config = parse_text(
            "container: gateway\nprofiles: [openclaw, moltbot]\nauto_pause: false\n\
             thresholds:\n  cpu_percent: 90\n  memory_percent: 70\n\
             allow: [10.0.0.0/8, \"192.0.2.7:443\", api.example.com]\n\
             policy:\n  connect: audit\n  mount: block\n\
             logs:\n  patterns:\n    - {name: boom, regex: 'BOOM', severity: critical}\n",
        )
        .expect("valid");
        assert_eq!(config.container.as_deref(), Some("gateway"));
        assert_eq!(config.policy.connect, Some(ActionName(Action::Audit)));
        assert_eq!(config.allow.as_ref().map(Vec::len), Some(3));
        assert_eq!(config.thresholds.cpu_percent, Some(Percent(90.0)));
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let text = include_str!("../../deploy/monitor.example.yml");
        let config = parse_text(text).expect("deploy/monitor.example.yml parses");
        assert_eq!(config.policy.mount, Some(ActionName(Action::Block)));
        assert!(
            config.allow.is_none(),
            "the openclaw profile's default applies"
        );
    }

    #[test]
    fn the_commented_allow_list_is_valid_once_uncommented() {
        let text = include_str!("../../deploy/monitor.example.yml");
        let block: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("# allow:"))
            .take_while(|l| l.starts_with('#'))
            .collect();
        // Uncommented once: OpenClaw's hosts; twice: the model providers and addresses too.
        let once: String = block
            .iter()
            .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
            .collect();
        let config = parse_text(&once).expect("the allow block parses");
        assert_eq!(config.allow.as_ref().map(Vec::len), Some(3));
        let twice = once.replace("  # - ", "  - ");
        let config = parse_text(&twice).expect("the uncommented providers parse");
        assert!(config.allow.as_ref().map_or(0, Vec::len) > 10);
    }

    #[test]
    fn listeners_parse_and_bad_addresses_are_refused() {
        let config = parse_text(
            "listen: 127.0.0.1:9877\nmetrics_listen: 0.0.0.0:9100\nlisten_remote: true\n",
        )
        .expect("valid");
        assert_eq!(config.listen, "127.0.0.1:9877".parse().ok());
        assert_eq!(config.metrics_listen, "0.0.0.0:9100".parse().ok());
        assert_eq!(config.listen_remote, Some(true));
        let err = parse_text("listen: localhost\n").expect_err("not an address");
        assert!(err.to_string().starts_with("monitor.yml:1:"), "{err}");
    }

    #[test]
    fn errors_name_line_and_column() {
        let err = parse_text("container: x\npolicy:\n  connect: maybe\n").expect_err("bad action");
        let text = err.to_string();
        assert!(text.starts_with("monitor.yml:3:"), "{text}");
        assert!(text.contains("unknown action `maybe`"), "{text}");

        let err = parse_text("container: x\nthreshold: {}\n").expect_err("unknown key");
        let text = err.to_string();
        assert!(text.starts_with("monitor.yml:2:1:"), "{text}");
        assert!(text.contains("unknown field `threshold`"), "{text}");

        let err = parse_text("allow:\n  - 10.0.0.0/33\n").expect_err("bad cidr");
        assert!(err.to_string().starts_with("monitor.yml:2:"), "{err}");

        let err = parse_text("logs:\n  patterns:\n    - {name: x, regex: '(', severity: INFO}\n")
            .expect_err("bad regex");
        assert!(err.to_string().contains("does not compile"), "{err}");

        let err = parse_text("intervals:\n  health_seconds: 0\n").expect_err("zero interval");
        assert!(err.to_string().contains("at least 1 second"), "{err}");
    }
}
