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

use crate::config::OnTimeout;

/// `decisions:`: what happens to a pending decision nobody answers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decisions {
    pub timeout_seconds: Option<Seconds>,
    pub on_timeout: Option<OnTimeout>,
}

/// What the drop-ins (`conf.d/*.yml`) add to the lists: appended to the effective lists
/// (the defaults' or the main file's), never replacing them.
#[derive(Debug, Default)]
pub struct Added {
    pub allow: Vec<AllowSpec>,
    pub denylist: Vec<String>,
    pub patterns: Vec<PatternSpec>,
}

/// The file, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub container: Option<String>,
    /// Several containers by name (with or instead of `container`).
    pub containers: Option<Vec<String>>,
    /// Selectors (`label=KEY=VALUE`, `name=PREFIX*`) for further containers.
    pub select: Option<Vec<String>>,
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
    #[serde(default)]
    pub decisions: Decisions,
    /// The drop-ins' list entries (never read from a file itself).
    #[serde(skip)]
    pub added: Added,
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

/// The drop-in directory of a configuration directory.
pub(crate) fn dropin_dir(config_dir: &Path) -> PathBuf {
    config_dir.join("conf.d")
}

/// The drop-ins of `dir` (`*.yml`, `*.yaml`), in name order; none when it does not exist.
pub(crate) fn dropins(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|ext| ext == "yml" || ext == "yaml")
        })
        .collect();
    files.sort();
    files
}

fn over<T>(base: &mut Option<T>, next: Option<T>) {
    if next.is_some() {
        *base = next;
    }
}

/// Lay a drop-in over what was read before it: lists (allow, denylist, log patterns,
/// exceptions) are appended, every scalar or map key it sets overrides.
pub(crate) fn merge(base: &mut FileConfig, next: FileConfig) {
    over(&mut base.container, next.container);
    over(&mut base.profiles, next.profiles);
    over(&mut base.auto_pause, next.auto_pause);
    let (t, n) = (&mut base.thresholds, next.thresholds);
    over(&mut t.cpu_percent, n.cpu_percent);
    over(&mut t.cpu_sustain_seconds, n.cpu_sustain_seconds);
    over(&mut t.memory_percent, n.memory_percent);
    let (i, n) = (&mut base.intervals, next.intervals);
    over(&mut i.stats_seconds, n.stats_seconds);
    over(&mut i.processes_seconds, n.processes_seconds);
    over(&mut i.network_seconds, n.network_seconds);
    over(&mut i.health_seconds, n.health_seconds);
    over(&mut base.health_failures, next.health_failures);
    base.added
        .denylist
        .extend(next.denylist.unwrap_or_default());
    base.added.allow.extend(next.allow.unwrap_or_default());
    base.added
        .patterns
        .extend(next.logs.patterns.unwrap_or_default());
    over(&mut base.logs.line_max, next.logs.line_max);
    let (r, n) = (&mut base.policy, next.policy);
    over(&mut r.mount, n.mount);
    over(&mut r.exec, n.exec);
    over(&mut r.ptrace, n.ptrace);
    over(&mut r.proc_open, n.proc_open);
    over(&mut r.socket, n.socket);
    over(&mut r.connect, n.connect);
    over(&mut base.trust.penalty, next.trust.penalty);
    over(
        &mut base.trust.quarantine_below,
        next.trust.quarantine_below,
    );
    let (a, n) = (&mut base.alerts_log, next.alerts_log);
    over(&mut a.path, n.path);
    over(&mut a.max_bytes, n.max_bytes);
    over(&mut a.keep, n.keep);
    if let Some(more) = next.exceptions {
        base.exceptions.get_or_insert_with(Vec::new).extend(more);
    }
    over(
        &mut base.decisions.timeout_seconds,
        next.decisions.timeout_seconds,
    );
    over(&mut base.decisions.on_timeout, next.decisions.on_timeout);
}

/// The main file (when there is one) and then every drop-in of `conf_d`, in name order;
/// returns the merged configuration and the drop-ins read.
pub(crate) fn load_with_dropins(
    main: Option<&Path>,
    conf_d: &Path,
) -> Result<(FileConfig, Vec<PathBuf>), ConfigError> {
    let mut file = match main {
        Some(path) => load(path)?,
        None => FileConfig::default(),
    };
    let read = dropins(conf_d);
    for path in &read {
        merge(&mut file, load(path)?);
    }
    Ok((file, read))
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

    #[test]
    fn dropins_append_lists_override_scalars_and_name_their_errors() {
        let dir = std::env::temp_dir().join(format!(
            "crabpot-confd-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let conf_d = dropin_dir(&dir);
        std::fs::create_dir_all(&conf_d).expect("conf.d");
        let main = dir.join("monitor.yml");
        let write = |path: &Path, text: &str| std::fs::write(path, text).expect("write");
        write(
            &main,
            "auto_pause: true\nallow: [10.0.0.0/8]\nthresholds: {cpu_percent: 90}\n\
             exceptions:\n  - {name: a, rules: [exec], executable: /bin/a}\n",
        );
        write(
            &conf_d.join("20-b.yml"),
            "auto_pause: false\nallow: [\"192.0.2.7:443\"]\ndenylist: [nc]\n\
             exceptions:\n  - {name: b, rules: [exec], executable: /bin/b}\n",
        );
        write(
            &conf_d.join("10-a.yml"),
            "thresholds: {memory_percent: 50}\ndecisions: {timeout_seconds: 30, on_timeout: deny}\n",
        );
        write(&conf_d.join("README.txt"), "not yaml: [");
        let (file, read) = load_with_dropins(Some(&main), &conf_d).expect("valid");
        let names: Vec<String> = read
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(names, vec!["10-a.yml", "20-b.yml"], "name order, yml only");
        assert_eq!(file.auto_pause, Some(false), "the later file overrides");
        assert_eq!(file.thresholds.cpu_percent, Some(Percent(90.0)), "kept");
        assert_eq!(file.thresholds.memory_percent, Some(Percent(50.0)));
        assert_eq!(file.allow.as_ref().map(Vec::len), Some(1), "the main list");
        assert_eq!(file.added.allow.len(), 1, "appended");
        assert_eq!(file.added.denylist, vec!["nc".to_string()]);
        let exceptions: Vec<&str> = file
            .exceptions
            .iter()
            .flatten()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(exceptions, vec!["a", "b"]);
        assert_eq!(file.decisions.on_timeout, Some(OnTimeout::Deny));

        write(
            &conf_d.join("30-bad.yml"),
            "auto_pause: true\npolicy:\n  exec: maybe\n",
        );
        let err = load_with_dropins(Some(&main), &conf_d)
            .expect_err("bad drop-in")
            .to_string();
        assert!(err.contains("conf.d/30-bad.yml:3:"), "{err}");
        // No main file: the drop-ins alone.
        std::fs::remove_file(conf_d.join("30-bad.yml")).expect("rm");
        let (file, _) = load_with_dropins(None, &conf_d).expect("drop-ins only");
        assert_eq!(file.auto_pause, Some(false));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
