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
    /// The first container named (`--container`), or empty when only selectors choose.
    pub container: String,
    /// Every container guarded by name (`--container`, repeatable; `containers:`).
    pub containers: Vec<String>,
    /// Selectors for further containers (`--select`, `select:`), checked when parsed.
    pub select: Vec<String>,
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
    /// How long a pending decision waits for an answer (none: for ever).
    pub decision_timeout: Option<Duration>,
    /// What an unanswered one becomes then.
    pub on_timeout: OnTimeout,
}

/// What an unanswered pending decision becomes once `timeout_seconds` pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// Nothing is decided: it stays pending (and frozen), said once in an alert.
    #[default]
    StayFrozen,
    Deny,
    Approve,
}

impl OnTimeout {
    pub fn as_str(self) -> &'static str {
        match self {
            OnTimeout::StayFrozen => "stay_frozen",
            OnTimeout::Deny => "deny",
            OnTimeout::Approve => "approve",
        }
    }
}

pub(crate) const DEFAULT_DENYLIST: &[&str] = &[
    // shells
    "sh", "bash", "dash", "zsh", "ash", "ksh", "fish", "csh", "tcsh", "hush",
    // scripting runtimes
    "python", "python2", "python3", "perl", "ruby", "php", "lua", // network tools
    "nc", "ncat", "netcat", "socat", "nmap", "telnet", // compilers and linkers
    "gcc", "cc", "make", "ld",
];

fn pattern(name: &str, regex: &str, severity: Severity) -> LogPattern {
    LogPattern {
        name: name.into(),
        regex: regex.into(),
        severity,
    }
}

/// The guide's patterns plus the signs of a steered AI agent: prompt-injection phrases,
/// downloads piped into an interpreter, credential shapes and long encoded blobs.
pub fn default_log_patterns() -> Vec<LogPattern> {
    let mut patterns = guide_patterns();
    patterns.extend(steering_patterns());
    patterns.extend(
        SECRET_SHAPES
            .iter()
            .map(|(name, regex, severity)| pattern(name, regex, *severity)),
    );
    patterns
}

/// Name of the long-encoded-blob pattern, whose matches the scanner also checks for the
/// mixed character classes of real base64 (hex digests and paths are not blobs).
pub(crate) const ENCODED_BLOB: &str = "encoded_blob";

/// Credential shapes after gitleaks' rules (config/gitleaks.toml: aws-access-token,
/// github-pat/-fine-grained-pat/-oauth/-app-token, slack-bot/-user-token, openai-api-key,
/// anthropic-api-key, gcp-api-key, private-key, jwt), widened a little in length so a
/// truncated or reformatted key still counts. Every match is redacted in alert text.
///
/// A vendor-prefixed key or a private key in the container's output is CRITICAL: these
/// shapes almost never occur by chance, and a credential printed by the agent is the step
/// before it leaves; freezing stops the next one (the key must be rotated either way). A
/// JWT or a long encoded blob is a WARNING: gateways handle session tokens and encoded
/// data legitimately, so they are signs to look at, not grounds to freeze.
pub(crate) const SECRET_SHAPES: &[(&str, &str, Severity)] = &[
    (
        "aws_access_key",
        r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
        Severity::Critical,
    ),
    (
        "github_token",
        r"\b(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})",
        Severity::Critical,
    ),
    (
        "slack_token",
        r"\bxox[bpaers]-[0-9A-Za-z-]{10,}",
        Severity::Critical,
    ),
    (
        "anthropic_api_key",
        r"\bsk-ant-[A-Za-z0-9_-]{20,}",
        Severity::Critical,
    ),
    (
        "openai_api_key",
        r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
        Severity::Critical,
    ),
    (
        "google_api_key",
        r"\bAIza[0-9A-Za-z_-]{35}",
        Severity::Critical,
    ),
    (
        "private_key",
        r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----",
        Severity::Critical,
    ),
    (
        "jwt",
        r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*",
        Severity::Warning,
    ),
    (
        ENCODED_BLOB,
        r"[A-Za-z0-9+/]{100,}={0,2}",
        Severity::Warning,
    ),
];

/// Signs that the agent is being steered: prompt-injection phrases (OWASP LLM01 examples:
/// "ignore previous instructions", "disregard the system prompt", "you are now DAN", chat
/// template tokens smuggled into content) are a WARNING: the text reached the agent, which
/// is not yet an act, and freezing on text the gateway merely relays would let anyone stop
/// it. A download piped into a shell or interpreter is CRITICAL: it is remote code
/// execution, and that shape does not occur in ordinary gateway output.
fn steering_patterns() -> Vec<LogPattern> {
    const QUALIFIERS: &str = r"(?:(?:all|any|the|your|of|my|these|those|every)\s+)*";
    vec![
        pattern(
            "prompt_injection",
            &format!(
                r"(?i)\b(?:ignore|disregard|forget|override|bypass)\s+{QUALIFIERS}(?:previous|prior|above|earlier|preceding|former|original|initial|system|safety|developer)\s+(?:instructions?|prompts?|directions?|rules|messages|context|guidelines|constraints|guardrails)\b"
            ),
            Severity::Warning,
        ),
        pattern(
            "prompt_injection",
            &format!(
                r"(?i)\b(?:ignore|disregard|forget|override|bypass|reveal|print|repeat|leak|show)\s+(?:me\s+)?{QUALIFIERS}(?:system\s+prompt|hidden\s+instructions|guardrails|safety\s+(?:rules|filters|guidelines))\b"
            ),
            Severity::Warning,
        ),
        pattern(
            "prompt_injection",
            r"(?i)\byou\s+are\s+now\s+(?:DAN\b|in\s+(?:developer|god|jailbreak|unrestricted|sudo)\s+mode|an?\s+(?:unrestricted|unfiltered|uncensored|evil|jailbroken)\b|jailbroken|free\s+of\s+(?:all\s+)?(?:rules|restrictions))|\bdo\s+anything\s+now\b|\bDAN\s+mode\b|\bjailbr(?:eak|oken)\b|\bdeveloper\s+mode\s+(?:enabled|on)\b|\bpretend\s+(?:that\s+)?you\s+(?:are|have)\s+no\s+(?:rules|restrictions|guidelines)",
            Severity::Warning,
        ),
        pattern(
            "prompt_injection",
            r"<\|(?:im_start|im_end|system|endoftext)\|>|\[/?INST\]|<</?SYS>>",
            Severity::Warning,
        ),
        pattern(
            "pipe_to_shell",
            r"(?i)\b(?:curl|wget|fetch|iwr|invoke-webrequest)\b[^|\n]*\|\s*(?:sudo\s+(?:-\S+\s+)*)?(?:env\s+)?(?:/\S*/)?(?:(?:ba|da|z|k|a|c|tc|fi)?sh|python[0-9.]*|perl|ruby|node|php|iex|invoke-expression)\b",
            Severity::Critical,
        ),
        pattern(
            "pipe_to_shell",
            r#"(?i)(?:\b(?:(?:ba|da|z|k|a)?sh|source|eval)|(?:^|\s)\.)\s+(?:-c\s+)?["']?(?:<\(|\$\(|`)\s*(?:curl|wget|fetch)\b"#,
            Severity::Critical,
        ),
    ]
}

fn guide_patterns() -> Vec<LogPattern> {
    let p = pattern;
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

/// The default alerts log: `$LOGS_DIRECTORY/alerts.log` under systemd, else
/// `~/.crabpot/data/alerts.log` of the effective user (root's home under sudo, not the
/// invoking user's `$HOME`). See [`crate::paths`].
pub fn default_alerts_log() -> PathBuf {
    crate::paths::alerts_log()
}

pub use crate::paths::effective_home;

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            container: "crabpot".into(),
            containers: vec!["crabpot".into()],
            select: Vec::new(),
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
            decision_timeout: None,
            on_timeout: OnTimeout::StayFrozen,
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
