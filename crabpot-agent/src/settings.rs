//! The effective settings: defaults, then the configuration file, then the flags.
use std::{path::PathBuf, time::Duration};

use crate::{
    cli::AgentArgs,
    config::{LogPattern, MonitorConfig},
    config_file::{self, ConfigError, FileConfig},
    model::event::RuleName,
    policy::{exceptions::Exceptions, rules::Policy, trust::TrustScore},
};

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub monitor: MonitorConfig,
    pub policy: Policy,
    pub trust: TrustScore,
    pub profiles: Vec<&'static str>,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// The drop-ins read after it (`conf.d/*.yml`, name order).
    pub dropins: Vec<PathBuf>,
    /// Where the configuration lives: the file's directory, else the default one. The
    /// managed approvals go to its `conf.d/90-approved.yml`.
    pub config_dir: PathBuf,
    /// The operator's exceptions, with their hit counters (shared by every judge).
    pub exceptions: std::sync::Arc<Exceptions>,
    /// The HTTP listeners: the flags, else the file's `listen:` keys.
    pub listeners: Listeners,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Listeners {
    pub listen: std::net::SocketAddr,
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub listen_remote: bool,
}

impl Listeners {
    /// The flags, with the file's keys where a flag was not given (a `--listen` equal to
    /// the default counts as not given, as `--container crabpot` does).
    fn resolve(args: &AgentArgs, file: &FileConfig) -> Self {
        let default = crate::cli::DEFAULT_LISTEN.parse().ok();
        let listen = match file.listen {
            Some(address) if Some(args.listen) == default => address,
            _ => args.listen,
        };
        Listeners {
            listen,
            metrics_listen: args.metrics_listen.or(file.metrics_listen),
            listen_remote: args.listen_remote || file.listen_remote.unwrap_or(false),
        }
    }

    /// Put the effective listeners into `args`, which the HTTP start-up reads.
    pub(crate) fn apply(&self, args: &mut AgentArgs) {
        args.listen = self.listen;
        args.metrics_listen = self.metrics_listen;
        args.listen_remote = self.listen_remote;
    }
}

/// sha256 (hex) of the configuration file read, or of nothing when none was (defaults and
/// flags only), for `crabpot_config_info`: compare it with `sha256sum` of the file deployed.
pub(crate) fn config_sha256(file: Option<&std::path::Path>) -> String {
    use sha2::{Digest as _, Sha256};
    let bytes = file.and_then(|p| std::fs::read(p).ok()).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The configuration file to read: `--config`, else the first default location present.
pub(crate) fn config_path(args: &AgentArgs) -> Option<PathBuf> {
    args.config.clone().or_else(|| {
        config_file::default_locations()
            .into_iter()
            .find(|p| p.exists())
    })
}

/// The configuration directory: that of the file read, else the default one
/// (/etc/crabpot for root, ~/.crabpot/config otherwise, as the default file locations).
pub(crate) fn config_dir(path: Option<&std::path::Path>) -> PathBuf {
    if let Some(dir) = path.and_then(std::path::Path::parent) {
        return if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        };
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/etc/crabpot")
    } else {
        crate::config::effective_home().join(".crabpot/config")
    }
}

/// Lay a parsed file over the defaults (public for the config fuzz target).
pub fn apply_file(
    monitor: &mut MonitorConfig,
    policy: &mut Policy,
    trust: &mut TrustScore,
    file: &FileConfig,
) {
    apply_containers(monitor, file);
    apply_thresholds(monitor, file);
    if let Some(list) = &file.denylist {
        monitor.process_denylist = list.clone();
    }
    apply_policy(policy, file);
    apply_logs(monitor, file);
    if let Some(p) = file.trust.penalty {
        trust.penalty = p;
    }
    if let Some(t) = file.trust.quarantine_below {
        trust.quarantine_below = t;
    }
    // After the lists they add to are set.
    apply_additions(monitor, file);
    if let Some(s) = file.decisions.timeout_seconds {
        monitor.decision_timeout = Some(Duration::from_secs(s.0));
    }
    if let Some(on) = file.decisions.on_timeout {
        monitor.on_timeout = on;
    }
}

/// `container:`, `containers:`, `select:` (any of them replaces all three), `auto_pause:`.
fn apply_containers(monitor: &mut MonitorConfig, file: &FileConfig) {
    if file.container.is_some() || file.containers.is_some() || file.select.is_some() {
        monitor.containers = file.container.iter().cloned().collect();
        monitor
            .containers
            .extend(file.containers.iter().flatten().cloned());
        monitor.select = file.select.clone().unwrap_or_default();
    }
    if let Some(on) = file.auto_pause {
        monitor.auto_pause = on;
    }
}

/// `thresholds:`, `intervals:`, `health_failures:`.
fn apply_thresholds(monitor: &mut MonitorConfig, file: &FileConfig) {
    let secs = |s: &Option<config_file::Seconds>| s.map(|s| Duration::from_secs(s.0));
    if let Some(p) = file.thresholds.cpu_percent {
        monitor.cpu_threshold = p.0;
    }
    if let Some(s) = file.thresholds.cpu_sustain_seconds {
        monitor.cpu_sustain = Duration::from_secs(s);
    }
    if let Some(p) = file.thresholds.memory_percent {
        monitor.memory_threshold = p.0;
    }
    let intervals = &file.intervals;
    monitor.stats_interval = secs(&intervals.stats_seconds).unwrap_or(monitor.stats_interval);
    monitor.process_poll = secs(&intervals.processes_seconds).unwrap_or(monitor.process_poll);
    monitor.network_poll = secs(&intervals.network_seconds).unwrap_or(monitor.network_poll);
    monitor.health_poll = secs(&intervals.health_seconds).unwrap_or(monitor.health_poll);
    if let Some(n) = file.health_failures {
        monitor.health_failures = n;
    }
}

/// `allow:` (the whole list) and `policy:` (one action per rule).
fn apply_policy(policy: &mut Policy, file: &FileConfig) {
    if let Some(allow) = &file.allow {
        policy.allow.clear();
        policy.allow_hosts.clear();
        policy.allow_specs(allow.iter().cloned());
    }
    let rules = &file.policy;
    for (rule, action) in [
        (RuleName::Mount, rules.mount),
        (RuleName::Exec, rules.exec),
        (RuleName::Ptrace, rules.ptrace),
        (RuleName::ProcOpen, rules.proc_open),
        (RuleName::Socket, rules.socket),
        (RuleName::Connect, rules.connect),
    ] {
        if let Some(action) = action {
            policy.set(rule, action.0);
        }
    }
}

/// `logs:` (the container's log patterns) and `alerts_log:` (where alerts go, rotation).
fn apply_logs(monitor: &mut MonitorConfig, file: &FileConfig) {
    if let Some(patterns) = &file.logs.patterns {
        monitor.log_patterns = patterns
            .iter()
            .map(|p| LogPattern {
                name: p.name.clone(),
                regex: p.regex.0.clone(),
                severity: p.severity.0,
            })
            .collect();
    }
    if let Some(n) = file.logs.line_max {
        monitor.log_line_max = n;
    }
    if let Some(path) = &file.alerts_log.path {
        monitor.alerts_log = path.clone();
    }
    if let Some(n) = file.alerts_log.max_bytes {
        monitor.alerts_log_max_bytes = n;
    }
    if let Some(n) = file.alerts_log.keep {
        monitor.alerts_log_keep = n;
    }
}

/// What the drop-ins add to the lists (denylist, log patterns).
fn apply_additions(monitor: &mut MonitorConfig, file: &FileConfig) {
    monitor
        .process_denylist
        .extend(file.added.denylist.iter().cloned());
    monitor
        .log_patterns
        .extend(file.added.patterns.iter().map(|p| LogPattern {
            name: p.name.clone(),
            regex: p.regex.0.clone(),
            severity: p.severity.0,
        }));
}

pub(crate) fn resolve(args: &AgentArgs) -> Result<Settings, ConfigError> {
    let path = config_path(args);
    let dir = config_dir(path.as_deref());
    let (mut file, dropins): (FileConfig, _) =
        config_file::load_with_dropins(path.as_deref(), &config_file::dropin_dir(&dir))?;
    let mut monitor = MonitorConfig::default();
    let mut policy = Policy::default();
    let mut trust = TrustScore::default();
    apply_file(&mut monitor, &mut policy, &mut trust, &file);

    // Flags win over the file.
    choose_containers(args, &mut monitor, path.as_deref())?;
    if args.no_auto_pause {
        monitor.auto_pause = false;
    }
    let set_secs = |flag: Option<u64>, field: &mut Duration| {
        if let Some(s) = flag {
            *field = Duration::from_secs(s.max(1));
        }
    };
    if let Some(p) = args.cpu_threshold {
        monitor.cpu_threshold = p;
    }
    if let Some(s) = args.cpu_sustain_seconds {
        monitor.cpu_sustain = Duration::from_secs(s);
    }
    if let Some(p) = args.memory_threshold {
        monitor.memory_threshold = p;
    }
    set_secs(args.process_poll_seconds, &mut monitor.process_poll);
    set_secs(args.network_poll_seconds, &mut monitor.network_poll);
    set_secs(args.health_poll_seconds, &mut monitor.health_poll);
    if let Some(path) = &args.alerts_log {
        monitor.alerts_log = path.clone();
    }
    policy.allow_specs(args.allow.iter().cloned());

    let mut profiles = args.profile_flags();
    if profiles.is_empty() {
        profiles = file
            .profiles
            .as_ref()
            .map(|list| list.iter().map(|p| p.name()).collect())
            .unwrap_or_default();
    }
    if profiles.is_empty() {
        profiles.push("openclaw");
    }
    // The profile's own hosts, unless the file gives the whole list itself.
    if file.allow.is_none() && profiles.contains(&"openclaw") {
        policy.allow_openclaw_hosts();
    }
    policy = policy.with_profiles(&profiles);
    for (rule, action) in &args.rules {
        policy.set(*rule, *action);
    }
    // The drop-ins' allow entries (operators' approvals among them) after the profiles:
    // added to whatever the profile allows.
    policy.allow_specs(file.added.allow.iter().cloned());
    let exceptions = Exceptions::new(file.exceptions.take().unwrap_or_default());
    let listeners = Listeners::resolve(args, &file);
    Ok(Settings {
        listeners,
        monitor,
        policy,
        trust,
        profiles,
        file: path,
        dropins,
        config_dir: dir,
        exceptions: std::sync::Arc::new(exceptions),
    })
}

/// The containers to guard: flags over the file; `crabpot` when nothing names or selects.
fn choose_containers(
    args: &AgentArgs,
    monitor: &mut MonitorConfig,
    path: Option<&std::path::Path>,
) -> Result<(), ConfigError> {
    if !args.container.is_empty() || !args.select.is_empty() {
        monitor.containers = args.container.clone();
        monitor.select = args.select.clone();
    }
    for selector in &monitor.select {
        crate::sources::select::Selector::parse(selector).map_err(|message| {
            ConfigError::Invalid {
                path: path.map(PathBuf::from).unwrap_or_default(),
                line: 0,
                column: 0,
                message,
            }
        })?;
    }
    if monitor.containers.is_empty() && monitor.select.is_empty() {
        monitor.containers.push("crabpot".into());
    }
    monitor.container = monitor.containers.first().cloned().unwrap_or_default();
    Ok(())
}

/// `--check-config`: validate and summarise without starting. Exit code 0 or 2.
pub fn check_config(args: &AgentArgs) -> std::process::ExitCode {
    match resolve(args) {
        Ok(settings) => {
            let source = settings
                .file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "no file (defaults and flags)".into());
            println!("configuration OK: {source}");
            for dropin in &settings.dropins {
                println!("drop-in: {}", dropin.display());
            }
            println!("container: {}", settings.monitor.container);
            if settings.monitor.containers.len() > 1 {
                println!("containers: {}", settings.monitor.containers.join(", "));
            }
            if !settings.monitor.select.is_empty() {
                println!("select: {}", settings.monitor.select.join(", "));
            }
            println!("profiles: {}", settings.profiles.join("+"));
            println!("listen: {}", settings.listeners.listen);
            for (rule, action) in settings.policy.rules() {
                println!("rule {}: {action}", rule.as_str());
            }
            let allow: Vec<String> = settings
                .policy
                .allow
                .iter()
                .map(|a| a.to_string())
                .chain(settings.policy.allow_hosts.iter().map(|h| h.name.clone()))
                .collect();
            println!("allow: loopback {}", allow.join(" "));
            for line in settings.exceptions.describe_all() {
                println!("exception {line}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("crabpot-agent: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn chosen(flags: &[&str], file: &str) -> MonitorConfig {
        let mut monitor = MonitorConfig::default();
        let mut policy = Policy::default();
        let mut trust = TrustScore::default();
        let file = config_file::parse(std::path::Path::new("t.yml"), file).expect("file");
        apply_file(&mut monitor, &mut policy, &mut trust, &file);
        let args =
            AgentArgs::parse_from(std::iter::once("crabpot-agent").chain(flags.iter().copied()));
        choose_containers(&args, &mut monitor, None).expect("valid");
        monitor
    }

    #[test]
    fn containers_come_from_flags_over_the_file_and_default_to_crabpot() {
        let none = chosen(&[], "{}");
        assert_eq!(
            (none.container.as_str(), none.containers.len()),
            ("crabpot", 1)
        );
        let file = chosen(&[], "containers: [a, b]\nselect: ['label=k=v']\n");
        assert_eq!(file.containers, ["a", "b"]);
        assert_eq!(file.select, ["label=k=v"]);
        let only_select = chosen(&["--select", "name=x*"], "container: a\n");
        assert!(only_select.containers.is_empty(), "{only_select:?}");
        assert_eq!(only_select.container, "");
        let flags = chosen(&["--container", "c"], "containers: [a, b]\n");
        assert_eq!((flags.container.as_str(), flags.containers.len()), ("c", 1));
    }

    fn listeners(flags: &[&str], file: &str) -> Listeners {
        let args =
            AgentArgs::parse_from(std::iter::once("crabpot-agent").chain(flags.iter().copied()));
        let file = config_file::parse(std::path::Path::new("x.yml"), file).expect("valid");
        Listeners::resolve(&args, &file)
    }

    #[test]
    fn the_files_listeners_apply_unless_a_flag_names_one() {
        let from_file = listeners(
            &[],
            "listen: 127.0.0.1:9877\nmetrics_listen: 127.0.0.1:9100\n",
        );
        assert_eq!(from_file.listen.to_string(), "127.0.0.1:9877");
        assert_eq!(from_file.metrics_listen.map(|a| a.port()), Some(9100));
        assert!(!from_file.listen_remote);
        let flag = listeners(&["--listen", "127.0.0.1:9999"], "listen: 127.0.0.1:9877\n");
        assert_eq!(flag.listen.to_string(), "127.0.0.1:9999");
        let neither = listeners(&[], "");
        assert_eq!(neither.listen.to_string(), crate::cli::DEFAULT_LISTEN);
        let remote = listeners(&[], "listen_remote: true\n");
        assert!(remote.listen_remote);
    }
}
