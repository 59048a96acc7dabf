//! Monitor settings: the guide's defaults, overridable from the command line.
use std::{path::PathBuf, time::Duration};

use crate::model::alert::Severity;

/// One log pattern: a name, a regular expression and the severity of a match.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPattern {
    pub name: String,
    pub regex: String,
    pub severity: Severity,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    pub container: String,
    pub stats_interval: Duration,
    pub cpu_threshold: f64,
    pub cpu_sustain: Duration,
    pub memory_threshold: f64,
    pub process_poll: Duration,
    /// Executable names whose start in the container is CRITICAL.
    pub process_denylist: Vec<String>,
    pub network_poll: Duration,
    pub log_patterns: Vec<LogPattern>,
    /// Characters of a log line kept in an alert.
    pub log_line_max: usize,
    pub health_poll: Duration,
    /// Consecutive failed health probes that make a CRITICAL.
    pub health_failures: usize,
    pub auto_pause: bool,
    pub alerts_log: PathBuf,
    pub alerts_log_max_bytes: u64,
    pub alerts_log_keep: usize,
}

pub(crate) const DEFAULT_DENYLIST: &[&str] = &[
    // shells
    "sh", "bash", "dash", "zsh", "ash", "ksh", "fish", "csh", "tcsh", "hush",
    // scripting runtimes
    "python", "python2", "python3", "perl", "ruby", "php", "lua", // network tools
    "nc", "ncat", "netcat", "socat", "nmap", "telnet", // compilers and linkers
    "gcc", "cc", "make", "ld",
];

/// The guide's patterns plus the signs of a steered AI agent.
pub fn default_log_patterns() -> Vec<LogPattern> {
    let p = |name: &str, regex: &str, severity| LogPattern {
        name: name.into(),
        regex: regex.into(),
        severity,
    };
    vec![
        p(
            "error_keyword",
            r"\b(ERROR|FATAL|CRITICAL)\b",
            Severity::Warning,
        ),
        p(
            "crash",
            r"(?i)\b(panic|segfault|core dumped|core dump)\b",
            Severity::Warning,
        ),
        p(
            "access_violation",
            r"(?i)\b(injection|unauthorized|forbidden)\b",
            Severity::Warning,
        ),
        p(
            "shell_spawn",
            r"(?i)\b(exec|spawn)\w*\b.*\b(sh|bash)\b",
            Severity::Warning,
        ),
        p(
            "outbound_http",
            r"(?i)\bhttps?://[^\s/$.?#][^\s]*",
            Severity::Info,
        ),
        p(
            "dynamic_code",
            r"(?i)\b(eval|exec|system|popen)\s*\(|\bchild_process\b",
            Severity::Warning,
        ),
        p(
            "package_install",
            r"(?i)\b(apt(-get)?|pip3?|npm|yarn|pnpm)\s+(install|add|i)\b",
            Severity::Warning,
        ),
        p(
            "secret_enumeration",
            r"(?i)\b(env|printenv|set)\b.*\b\w*(KEY|SECRET|TOKEN|PASSWORD)\w*\b",
            Severity::Critical,
        ),
        p(
            "sensitive_file",
            r"(/etc/(passwd|shadow|sudoers|gshadow)\b|\.ssh/(id_\w+|authorized_keys)|\.aws/credentials|\.kube/config)",
            Severity::Warning,
        ),
        p(
            "reconnaissance",
            r"(?i)\b(whoami|uname\s+-a|ip\s+(a|addr)\b|ifconfig|cat\s+/proc/version|id\s+-a)\b",
            Severity::Warning,
        ),
    ]
}

/// `~/.crabpot/data/alerts.log` of the effective user (root's home under sudo, not the
/// invoking user's `$HOME`).
pub fn default_alerts_log() -> PathBuf {
    effective_home().join(".crabpot/data/alerts.log")
}

/// Home directory of the effective uid from the password database; `/root` for root when
/// the database has no entry. Uses `getpwuid_r` (the agent calls this from its
/// multi-threaded runtime; `getpwuid`'s static buffer is not thread-safe).
pub fn effective_home() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if let Some(dir) = home_of(uid) {
        return dir;
    }
    if uid == 0 {
        return PathBuf::from("/root");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// `pw_dir` of `uid`, read with `getpwuid_r` into a buffer of our own.
fn home_of(uid: libc::uid_t) -> Option<PathBuf> {
    let mut buffer = vec![libc::c_char::default(); 16 * 1024];
    // SAFETY: passwd is plain old data; getpwuid_r fills it.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, the buffer's length is passed with it, and
    // the strings it writes point into `buffer`, which outlives their use below.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || entry.pw_dir.is_null() {
        return None;
    }
    // SAFETY: pw_dir is a NUL-terminated string inside `buffer`.
    let dir = unsafe { std::ffi::CStr::from_ptr(entry.pw_dir) };
    Some(PathBuf::from(dir.to_string_lossy().into_owned()))
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            container: "crabpot".into(),
            stats_interval: Duration::from_secs(2),
            cpu_threshold: 80.0,
            cpu_sustain: Duration::from_secs(30),
            memory_threshold: 85.0,
            process_poll: Duration::from_secs(15),
            process_denylist: DEFAULT_DENYLIST.iter().map(|s| s.to_string()).collect(),
            network_poll: Duration::from_secs(30),
            log_patterns: default_log_patterns(),
            log_line_max: 200,
            health_poll: Duration::from_secs(30),
            health_failures: 2,
            auto_pause: true,
            alerts_log: default_alerts_log(),
            alerts_log_max_bytes: 10 * 1024 * 1024,
            alerts_log_keep: 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_guides() {
        let config = MonitorConfig::default();
        assert_eq!(config.cpu_threshold, 80.0);
        assert_eq!(config.cpu_sustain, Duration::from_secs(30));
        assert_eq!(config.memory_threshold, 85.0);
        for name in ["sh", "bash", "python3", "nc", "gcc"] {
            assert!(config.process_denylist.iter().any(|d| d == name), "{name}");
        }
        for pattern in &config.log_patterns {
            regex::Regex::new(&pattern.regex).expect(&pattern.name);
        }
    }
}

#[cfg(test)]
mod home_tests {
    #[test]
    fn root_home_comes_from_the_password_database() {
        assert_eq!(super::home_of(0), Some(std::path::PathBuf::from("/root")));
    }
}
