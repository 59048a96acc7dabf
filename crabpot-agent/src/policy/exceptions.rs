//! Operator exceptions (`exceptions:` in monitor.yml): a named, narrow match on what a rule
//! or the watchdog would report (executable, ancestor, argv, destination, port, uid). A
//! matched event raises nothing and costs no trust; it is kept in the audit log with the
//! exception's name and counted (`crabpot_exception_hits_total{exception}`).
//!
//! Exceptions are applied in one place for kernel events (the kernel-event loop, after the
//! judgement) and by the `docker top` backstop for exec.
use std::{
    net::IpAddr,
    sync::atomic::{AtomicU64, Ordering},
};

use ipnet::IpNet;
use serde::Deserialize;

use crate::{
    model::{
        alert::{Alert, AlertSource},
        event::{Ancestor, EventBody, KernelEvent, RuleName},
    },
    policy::{allow::HostEntry, rules::parse_rule, violations::Judgement},
};

/// What an exception silences: one of the policy's rules, or the watchdog's process or
/// network alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Rule(RuleName),
    Process,
    Network,
}

impl Scope {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "process" => Ok(Scope::Process),
            "network" => Ok(Scope::Network),
            other => parse_rule(other).map(Scope::Rule).map_err(|_| {
                format!(
                    "unknown rule `{other}` in an exception: use exec, connect, proc_open, \
                     mount, ptrace, socket, process or network"
                )
            }),
        }
    }
}

/// A destination: a network (CIDR or one address) or a host name as DNS-learned names give
/// them (`api.example.com`, or `*.example.com` for the names under it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Destination {
    Net(IpNet),
    Host(HostEntry),
}

impl Destination {
    fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Destination::Net(net));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Destination::Net(IpNet::from(ip)));
        }
        let name = text.trim_end_matches('.').to_ascii_lowercase();
        let label = name.strip_prefix("*.").unwrap_or(&name);
        let valid = !label.is_empty()
            && label.split('.').all(|part| {
                !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return Err(format!(
                "`{text}` is not a destination: use a CIDR (10.0.0.0/8), an address, a host \
                 name (api.example.com) or `*.example.com`"
            ));
        }
        Ok(Destination::Host(HostEntry { name, port: None }))
    }

    fn matches(&self, address: Option<IpAddr>, host: Option<&str>) -> bool {
        match self {
            Destination::Net(net) => address.is_some_and(|a| net.contains(&a)),
            Destination::Host(entry) => {
                host.is_some_and(|h| entry.matches(&h.to_ascii_lowercase()))
            }
        }
    }
}

/// An exception as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExceptionSpec {
    name: String,
    rules: Vec<String>,
    executable: Option<String>,
    ancestor: Option<String>,
    argv: Option<String>,
    destination: Option<String>,
    port: Option<u16>,
    uid: Option<u32>,
    /// A path the act names (an open's file), `*` standing for one path segment's text.
    path: Option<String>,
}

/// An exception as a file gives it: name, rules and criteria (key, text, whether quoted).
pub(crate) type WrittenException = (String, Vec<String>, Vec<(&'static str, String, bool)>);

/// One exception: every criterion given must match.
#[derive(Debug, Deserialize)]
#[serde(try_from = "ExceptionSpec")]
pub struct Exception {
    pub(crate) name: String,
    scopes: Vec<Scope>,
    /// An absolute path is compared whole; a bare name with the executable's file name.
    executable: Option<String>,
    /// The file name of an ancestor's executable (a path's last part is taken).
    ancestor: Option<String>,
    /// Anchored: matches the whole argv joined by single spaces.
    argv: Option<regex::Regex>,
    argv_text: Option<String>,
    destination: Option<Destination>,
    port: Option<u16>,
    uid: Option<u32>,
    /// Anchored; `*` matches within one path segment.
    path: Option<regex::Regex>,
    path_text: Option<String>,
    hits: AtomicU64,
}

impl TryFrom<ExceptionSpec> for Exception {
    type Error = String;
    fn try_from(spec: ExceptionSpec) -> Result<Self, String> {
        let name = spec.name.trim().to_string();
        if name.is_empty() {
            return Err("an exception needs a name".into());
        }
        if spec.rules.is_empty() {
            return Err(format!("exception `{name}`: `rules` names no rule"));
        }
        let scopes = spec
            .rules
            .iter()
            .map(|r| Scope::parse(r.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("exception `{name}`: {e}"))?;
        let argv = spec
            .argv
            .as_deref()
            .map(|p| regex::Regex::new(&format!("^(?:{p})$")))
            .transpose()
            .map_err(|e| format!("exception `{name}`: the argv pattern does not compile: {e}"))?;
        let destination = spec
            .destination
            .as_deref()
            .map(Destination::parse)
            .transpose()
            .map_err(|e| format!("exception `{name}`: {e}"))?;
        let path = spec
            .path
            .as_deref()
            .map(path_pattern)
            .transpose()
            .map_err(|e| format!("exception `{name}`: the path pattern does not compile: {e}"))?;
        let anything = spec.executable.is_some()
            || path.is_some()
            || spec.ancestor.is_some()
            || argv.is_some()
            || destination.is_some()
            || spec.port.is_some()
            || spec.uid.is_some();
        if !anything {
            return Err(format!(
                "exception `{name}` matches everything: give executable, ancestor, argv, \
                 destination, port, uid or path"
            ));
        }
        Ok(Exception {
            name,
            scopes,
            executable: spec.executable,
            ancestor: spec.ancestor.map(|a| file_name(&a).to_string()),
            argv,
            argv_text: spec.argv,
            destination,
            port: spec.port,
            uid: spec.uid,
            path,
            path_text: spec.path,
            hits: AtomicU64::new(0),
        })
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Rule(r) => r.as_str(),
        Scope::Process => "process",
        Scope::Network => "network",
    }
}

fn destination_text(destination: &Destination) -> String {
    match destination {
        Destination::Net(n) => n.to_string(),
        Destination::Host(h) => h.name.clone(),
    }
}

/// `/proc/*/cmdline` as an anchored regex: `*` is any text within one path segment, the
/// rest literal.
fn path_pattern(glob: &str) -> Result<regex::Regex, regex::Error> {
    let parts: Vec<String> = glob.split('*').map(regex::escape).collect();
    regex::Regex::new(&format!("^{}$", parts.join("[^/]*")))
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// What is known of the act being judged. Criteria the subject has no value for never
/// match (an exception on a port does not silence an exec).
#[derive(Debug, Default)]
pub(crate) struct Subject {
    pub executable: Option<String>,
    pub ancestors: Vec<Ancestor>,
    pub argv: Option<Vec<String>>,
    pub address: Option<IpAddr>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub uid: Option<u32>,
    /// The file an open names (normalised, as its alert shows it).
    pub path: Option<String>,
}

impl Exception {
    fn matches(&self, scopes: &[Scope], s: &Subject) -> bool {
        let executable = |want: &String| {
            s.executable.as_deref().is_some_and(|exe| {
                if want.contains('/') {
                    exe == want
                } else {
                    file_name(exe) == want
                }
            })
        };
        self.scopes.iter().any(|own| scopes.contains(own))
            && self.executable.as_ref().is_none_or(executable)
            && self
                .ancestor
                .as_ref()
                .is_none_or(|want| s.ancestors.iter().any(|a| file_name(&a.name) == want))
            && self.argv.as_ref().is_none_or(|re| {
                s.argv
                    .as_ref()
                    .is_some_and(|argv| re.is_match(&argv.join(" ")))
            })
            && self
                .destination
                .as_ref()
                .is_none_or(|d| d.matches(s.address, s.host.as_deref()))
            && self.port.is_none_or(|p| s.port == Some(p))
            && self.uid.is_none_or(|u| s.uid == Some(u))
            && self
                .path
                .as_ref()
                .is_none_or(|re| s.path.as_deref().is_some_and(|p| re.is_match(p)))
    }

    /// The exception as a file gives it: name, rules and each criterion (key, text, whether
    /// it is a string), for writing it back out (learn mode carries exceptions over).
    pub(crate) fn as_written(&self) -> WrittenException {
        let rules = self
            .scopes
            .iter()
            .map(|s| scope_name(*s).to_string())
            .collect();
        let mut fields = Vec::new();
        let texts = [
            ("executable", self.executable.clone()),
            ("ancestor", self.ancestor.clone()),
            ("argv", self.argv_text.clone()),
            (
                "destination",
                self.destination.as_ref().map(destination_text),
            ),
            ("path", self.path_text.clone()),
        ];
        for (key, value) in texts {
            if let Some(value) = value {
                fields.push((key, value, true));
            }
        }
        if let Some(port) = self.port {
            fields.push(("port", port.to_string(), false));
        }
        if let Some(uid) = self.uid {
            fields.push(("uid", uid.to_string(), false));
        }
        (self.name.clone(), rules, fields)
    }

    /// One line for `--check-config`.
    pub(crate) fn describe(&self) -> String {
        let scopes: Vec<&str> = self.scopes.iter().map(|s| scope_name(*s)).collect();
        let mut parts = vec![format!("rules={}", scopes.join(","))];
        let mut push = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                parts.push(format!("{key}={v}"));
            }
        };
        push("executable", self.executable.clone());
        push("ancestor", self.ancestor.clone());
        push("argv", self.argv_text.as_ref().map(|a| format!("^{a}$")));
        push(
            "destination",
            self.destination.as_ref().map(destination_text),
        );
        push("port", self.port.map(|p| p.to_string()));
        push("uid", self.uid.map(|u| u.to_string()));
        push("path", self.path_text.clone());
        format!("{}: {}", self.name, parts.join(" "))
    }
}

/// Every exception of the configuration, with its hit counter. Replaced in place on a
/// reload (SIGHUP, `crabpot approve --always`), so every judge holding it sees the new list.
#[derive(Debug, Default)]
pub(crate) struct Exceptions(std::sync::RwLock<Vec<Exception>>);

impl Exceptions {
    pub(crate) fn new(list: Vec<Exception>) -> Self {
        Exceptions(std::sync::RwLock::new(list))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Exception>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// One line per exception, for `--check-config`.
    pub(crate) fn describe_all(&self) -> Vec<String> {
        self.read().iter().map(Exception::describe).collect()
    }

    /// Every exception as the file gives it (learn mode carries them over).
    pub(crate) fn written(&self) -> Vec<WrittenException> {
        self.read().iter().map(Exception::as_written).collect()
    }

    /// Take the exceptions of a reloaded configuration; an exception kept by name keeps
    /// its hit count.
    pub(crate) fn replace(&self, next: &Exceptions) {
        let mut incoming = std::mem::take(&mut *next.0.write().unwrap_or_else(|p| p.into_inner()));
        let mut current = self.0.write().unwrap_or_else(|p| p.into_inner());
        for exception in &mut incoming {
            if let Some(old) = current.iter().find(|o| o.name == exception.name) {
                exception
                    .hits
                    .store(old.hits.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        *current = incoming;
    }

    /// `(name, hits)` of each exception, in file order.
    pub(crate) fn hits(&self) -> Vec<(String, u64)> {
        self.read()
            .iter()
            .map(|e| (e.name.clone(), e.hits.load(Ordering::Relaxed)))
            .collect()
    }

    /// The first exception for one of `scopes` that matches, counted as a hit.
    pub(crate) fn matching(&self, scopes: &[Scope], subject: &Subject) -> Option<String> {
        let list = self.read();
        let hit = list.iter().find(|e| e.matches(scopes, subject))?;
        hit.hits.fetch_add(1, Ordering::Relaxed);
        Some(hit.name.clone())
    }

    /// Silence what `judgement` would raise when an exception matches it: the watchdog's
    /// alert by its source (`process`, `network`) or the event's rule, the rule's alert and
    /// violation by the rule. What was silenced
    /// goes to the audit log, named by the exception. `subject` is asked for lazily (it may
    /// read /proc), only when there is something to silence.
    pub(crate) fn apply(
        &self,
        judgement: &mut Judgement,
        rule: Option<RuleName>,
        subject: impl FnOnce() -> Subject,
    ) -> Option<String> {
        let watchdog_scope = judgement.watchdog.as_ref().and_then(|a| match a.source {
            AlertSource::Processes => Some(Scope::Process),
            AlertSource::Network => Some(Scope::Network),
            _ => None,
        });
        let rule_scope = rule.map(Scope::Rule);
        let rule_scope = rule_scope.filter(|_| judgement.alert.is_some() || judgement.violation);
        if self.is_empty() || (watchdog_scope.is_none() && rule_scope.is_none()) {
            return None;
        }
        let subject = subject();
        let mut matched = None;
        // An exception on the event's rule covers the watchdog's alert on it too.
        let watchdog_scopes: Vec<Scope> = watchdog_scope
            .into_iter()
            .chain(watchdog_scope.and(rule).map(Scope::Rule))
            .collect();
        if !watchdog_scopes.is_empty()
            && let Some(name) = self.matching(&watchdog_scopes, &subject)
            && let Some(alert) = judgement.watchdog.take()
        {
            silenced(judgement, alert, &name);
            matched = Some(name);
        }
        if let Some(scope) = rule_scope
            && let Some(name) = self.matching(&[scope], &subject)
        {
            judgement.violation = false;
            if let Some(alert) = judgement.alert.take() {
                silenced(judgement, alert, &name);
            }
            matched = Some(name);
        }
        matched
    }
}

/// Keep a silenced alert in the audit log (one record per event: the first silenced wins).
fn silenced(judgement: &mut Judgement, alert: Alert, name: &str) {
    tracing::debug!(exception = name, "excepted: {}", alert.message);
    let record = alert.with("exception", name.to_string());
    match &mut judgement.audit {
        Some(audit) => {
            audit
                .details
                .insert("exception".into(), name.to_string().into());
        }
        None => judgement.audit = Some(record),
    }
}

/// The rule a kernel event is judged by, for exceptions.
pub(crate) fn rule_of(body: &EventBody) -> Option<RuleName> {
    match body {
        EventBody::Exec { .. } => Some(RuleName::Exec),
        EventBody::Open { .. } | EventBody::Link { .. } => Some(RuleName::ProcOpen),
        EventBody::Connect { .. } => Some(RuleName::Connect),
        EventBody::Ptrace { .. } => Some(RuleName::Ptrace),
        EventBody::Mount { .. } => Some(RuleName::Mount),
        EventBody::NetPolicy { rule, .. } | EventBody::Refused { rule, .. } => Some(*rule),
        _ => None,
    }
}

/// What a kernel event tells of its act; the executable and argv of a process that did
/// not just exec are read from /proc (only asked when something would be raised).
pub(crate) fn subject_of(
    event: &KernelEvent,
    lineage: Vec<Ancestor>,
    host: Option<String>,
) -> Subject {
    let tgid = event.header.tgid;
    let mut subject = Subject {
        ancestors: lineage,
        host,
        uid: Some(event.header.uid),
        ..Subject::default()
    };
    match &event.body {
        EventBody::Exec { filename, argv, .. } => {
            subject.executable = Some(filename.clone());
            subject.argv = Some(argv.clone());
        }
        EventBody::Connect { address, port, .. }
        | EventBody::NetPolicy { address, port, .. }
        | EventBody::Packet { address, port, .. } => {
            subject.address = *address;
            subject.port = Some(*port);
        }
        EventBody::Open { path, .. } | EventBody::Link { link: path, .. } => {
            subject.path = Some(path.clone());
        }
        _ => {}
    }
    if subject.executable.is_none() && tgid != 0 {
        let live = subject_of_pid(tgid);
        subject.executable = live.executable;
        subject.argv = live.argv;
    }
    subject
}

/// What /proc tells of a live process: its executable, argv and real uid.
pub(crate) fn subject_of_pid(pid: u32) -> Subject {
    let executable = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let argv = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .filter(|raw| !raw.is_empty())
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect()
        });
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next()?.parse().ok())
        });
    Subject {
        executable,
        argv,
        uid,
        ..Subject::default()
    }
}

#[cfg(test)]
#[path = "exceptions_tests.rs"]
mod tests;
