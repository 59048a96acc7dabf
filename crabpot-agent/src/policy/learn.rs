//! Learn mode (`--learn 10m`): every rule in audit, and every alert that would have been
//! raised kept as an observation instead. The observations are aggregated here into what a
//! policy needs to let the same workload be: destinations (by the host name the
//! container's DNS replies gave the address, else address:port), exceptions keyed on the
//! executable and its parent (with the exact argv for a denylisted program, so a learned
//! exception never admits every shell), the /proc reads seen, each counted with when it was
//! first and last seen. `sinks/learn_file.rs` writes them out as a proposed monitor.yml.
use std::{collections::BTreeMap, net::IpAddr, sync::Mutex, time::Duration};

use crate::{
    model::{
        alert::{Alert, AlertSource, Severity},
        event::RuleName,
    },
    policy::{
        exceptions::{Subject, WrittenException},
        rules::{Action, Policy},
    },
};

/// `90s`, `10m`, `1h` (a bare number is seconds), at least one second.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("`{text}` is not a duration: use 90s, 10m or 1h")),
    };
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: use 90s, 10m or 1h"))?;
    let seconds = amount
        .checked_mul(scale)
        .filter(|s| *s >= 1)
        .ok_or_else(|| format!("`{text}`: a learning time is at least 1s"))?;
    Ok(Duration::from_secs(seconds))
}

/// The policy learning runs under: what would block is audited instead (the kernel lets
/// it through and reports it); everything else is as configured.
pub(crate) fn audit_everything(policy: &Policy) -> Policy {
    let mut learning = policy.clone();
    for (rule, action) in policy.rules() {
        if action == Action::Block {
            learning.set(rule, Action::Audit);
        }
    }
    learning
}

/// What of the running policy learn mode carries into the proposed file.
pub(crate) struct CarriedOver {
    pub container: String,
    pub profiles: Vec<&'static str>,
    pub auto_pause: bool,
    /// The configured policy (before learn mode put its blocking rules in audit).
    pub policy: Policy,
    /// The file's exceptions as written: name, rules, criteria (key, text, quoted).
    pub exceptions: Vec<WrittenException>,
    /// The configuration file read, if any.
    pub file: Option<std::path::PathBuf>,
}

/// How often something was seen, and when first and last (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub count: u64,
    pub first: String,
    pub last: String,
}

impl Seen {
    fn bump(slot: &mut Option<Seen>, now: &str) {
        match slot {
            Some(seen) => {
                seen.count += 1;
                seen.last = now.to_string();
            }
            None => {
                *slot = Some(Seen {
                    count: 1,
                    first: now.to_string(),
                    last: now.to_string(),
                })
            }
        }
    }

    fn merge(&mut self, other: &Seen) {
        self.count += other.count;
        if other.first < self.first {
            self.first = other.first.clone();
        }
        if other.last > self.last {
            self.last = other.last.clone();
        }
    }
}

/// A learned exception: what it silences and the criteria that make it narrow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LearnedException {
    /// Rule names as the file writes them (`exec`, `process`, `proc_open`…).
    pub rules: Vec<&'static str>,
    pub executable: Option<String>,
    /// The parent's executable (file name), as exceptions compare ancestors.
    pub ancestor: Option<String>,
    /// Anchored regex of the exact argv (escaped), for denylisted programs.
    pub argv: Option<String>,
    /// A normalised path (`/proc/*/cmdline`).
    pub path: Option<String>,
}

/// A /proc read that was only logged (audit.log), by path and reader.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ProcRead {
    pub path: String,
    pub executable: String,
    pub ancestor: String,
}

/// Everything observed so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct Learned {
    /// (address, port) → seen; written by host name when DNS named the address.
    pub destinations: BTreeMap<(IpAddr, u16), Seen>,
    /// Host names the container's DNS replies gave addresses it connected to.
    pub names: BTreeMap<IpAddr, String>,
    pub exceptions: BTreeMap<LearnedException, Seen>,
    pub proc_reads: BTreeMap<ProcRead, Seen>,
    /// What no policy entry can silence (log patterns, thresholds, lifecycle), by
    /// severity, source and message.
    pub unlearnable: BTreeMap<(Severity, String, String), Seen>,
}

impl Learned {
    /// Destinations by what the file allows (`host:port` or `address:port`), merged.
    pub(crate) fn allow_entries(&self) -> BTreeMap<String, Seen> {
        let mut entries: BTreeMap<String, Seen> = BTreeMap::new();
        for ((address, port), seen) in &self.destinations {
            let entry = match (self.names.get(address), address) {
                (Some(name), _) => format!("{name}:{port}"),
                (None, IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
                (None, IpAddr::V4(v4)) => format!("{v4}:{port}"),
            };
            match entries.get_mut(&entry) {
                Some(known) => known.merge(seen),
                None => {
                    entries.insert(entry, seen.clone());
                }
            }
        }
        entries
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.destinations.is_empty()
            && self.exceptions.is_empty()
            && self.proc_reads.is_empty()
            && self.unlearnable.is_empty()
    }
}

/// The detail an alert carries once learn mode has taken it as an observation.
pub(crate) const LEARN_DETAIL: &str = "learn_mode";

/// Collects observations from the kernel-event loop and the alert router.
#[derive(Debug, Default)]
pub(crate) struct Recorder(Mutex<Learned>);

/// The parent's executable file name, as exceptions compare ancestors.
fn parent_of(subject: &Subject) -> Option<String> {
    subject
        .ancestors
        .first()
        .map(|a| a.name.rsplit('/').next().unwrap_or(&a.name).to_string())
        .filter(|n| !n.is_empty())
}

/// `/proc/4242/task/4243/status` → `/proc/*/task/*/status`: pids change every run.
pub(crate) fn normalise_path(path: &str) -> String {
    path.split('/')
        .map(|part| {
            if !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()) {
                "*"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// What an observed act needs for an exception: the rules it silences and its criteria.
pub(crate) struct Act<'a> {
    pub rule: RuleName,
    pub subject: &'a Subject,
    /// A denylisted program: the exception also needs its exact argv.
    pub denylisted: bool,
}

impl Recorder {
    fn with(&self, change: impl FnOnce(&mut Learned, &str)) {
        let now = crate::model::alert::now_rfc3339();
        if let Ok(mut learned) = self.0.lock() {
            change(&mut learned, &now);
        }
    }

    /// A copy of everything observed so far.
    pub(crate) fn snapshot(&self) -> Learned {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// A connect (or packet) outside the allowlist; `host` when a DNS reply named it.
    pub(crate) fn destination(&self, address: IpAddr, port: u16, host: Option<&str>) {
        self.with(|learned, now| {
            let mut slot = learned.destinations.remove(&(address, port));
            Seen::bump(&mut slot, now);
            if let Some(seen) = slot {
                learned.destinations.insert((address, port), seen);
            }
            if let Some(host) = host.filter(|h| !h.is_empty()) {
                learned.names.insert(address, host.to_ascii_lowercase());
            }
        });
    }

    /// An act a rule would have raised (an exec, a sensitive read, a mount…).
    pub(crate) fn act(&self, act: Act<'_>) {
        let s = act.subject;
        let rules = match act.rule {
            // The `docker top` backstop reports the same program as the process watchdog.
            RuleName::Exec => vec!["exec", "process"],
            rule => vec![rule.as_str()],
        };
        let exception = LearnedException {
            rules,
            executable: s.executable.clone(),
            ancestor: parent_of(s),
            argv: s
                .argv
                .as_ref()
                .filter(|_| act.denylisted)
                .map(|argv| regex::escape(&argv.join(" "))),
            path: s.path.as_deref().map(normalise_path),
        };
        self.with(|learned, now| bump(&mut learned.exceptions, exception, now));
    }

    /// A /proc read that was only logged.
    pub(crate) fn proc_read(&self, path: &str, subject: &Subject) {
        let read = ProcRead {
            path: normalise_path(path),
            executable: subject.executable.clone().unwrap_or_else(|| "?".into()),
            ancestor: parent_of(subject).unwrap_or_else(|| "?".into()),
        };
        self.with(|learned, now| bump(&mut learned.proc_reads, read, now));
    }

    /// An alert of a Docker-side channel (the kernel-event loop records its own with the
    /// act's full subject): the socket-table poll's destination, the `docker top`
    /// backstop's program by its exact argv, else kept as not learnable.
    fn alert(&self, alert: &Alert) {
        let detail = |key: &str| alert.details.get(key);
        let address = detail("address")
            .and_then(|v| v.as_str())
            .and_then(|a| a.parse::<IpAddr>().ok());
        let port = detail("port")
            .and_then(|v| v.as_u64())
            .and_then(|p| u16::try_from(p).ok());
        if alert.source == AlertSource::Network
            && let (Some(address), Some(port)) = (address, port)
        {
            let host = detail("dns_name").and_then(|v| v.as_str());
            return self.destination(address, port, host);
        }
        let args = detail("args").and_then(|v| v.as_str());
        if alert.rule_name() == "process_denylisted"
            && let Some(args) = args
        {
            let exception = LearnedException {
                rules: vec!["exec", "process"],
                executable: None,
                ancestor: None,
                argv: Some(regex::escape(args)),
                path: None,
            };
            return self.with(|learned, now| bump(&mut learned.exceptions, exception, now));
        }
        let key = (
            alert.severity,
            alert.rule_name().to_string(),
            alert.message.clone(),
        );
        self.with(|learned, now| bump(&mut learned.unlearnable, key, now));
    }

    /// An alert on its way to the sinks: one that would have raised something (WARNING or
    /// CRITICAL, not a posture finding, which is about the launch) is recorded unless the
    /// kernel-event loop already did, and becomes an INFO marked as learn mode that never
    /// freezes.
    pub(crate) fn observe(&self, alert: Alert) -> Alert {
        // The "main process is a shell" note is a posture finding too (`posture: true`).
        let posture = alert.source == AlertSource::Posture
            || alert.details.get("posture") == Some(&serde_json::Value::Bool(true));
        if alert.severity == Severity::Info || posture {
            return alert;
        }
        if !alert.details.contains_key(LEARN_DETAIL) {
            self.alert(&alert);
        }
        quiet(alert)
    }
}

fn bump<K: Ord>(map: &mut BTreeMap<K, Seen>, key: K, now: &str) {
    let mut slot = map.remove(&key);
    Seen::bump(&mut slot, now);
    if let Some(seen) = slot {
        map.insert(key, seen);
    }
}

/// The alert as learn mode writes it: INFO, marked, saying what it would have been.
pub(crate) fn quiet(mut alert: Alert) -> Alert {
    let was = alert.severity;
    alert.severity = Severity::Info;
    alert.control.quarantine = false;
    alert.control.no_pause = true;
    alert.message = format!("learn mode (would be {was}): {}", alert.message);
    alert
        .with(LEARN_DETAIL, true)
        .with("would_be", was.as_str())
}

#[cfg(test)]
#[path = "learn_tests.rs"]
mod tests;
