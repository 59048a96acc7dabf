//! The one alert type every channel raises and every sink receives.
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::record;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "INFO" => Ok(Severity::Info),
            "WARNING" | "WARN" => Ok(Severity::Warning),
            "CRITICAL" | "CRIT" => Ok(Severity::Critical),
            _ => Err(format!(
                "unknown severity `{text}`: use INFO, WARNING or CRITICAL"
            )),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which channel raised an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSource {
    Stats,
    Processes,
    Network,
    Logs,
    Health,
    Events,
    Syscalls,
    Policy,
    /// How the container was launched (its Docker settings), not what it did.
    Posture,
}

impl AlertSource {
    /// Every source (metrics publish each one's counters from the start).
    pub const ALL: [AlertSource; 9] = [
        AlertSource::Stats,
        AlertSource::Processes,
        AlertSource::Network,
        AlertSource::Logs,
        AlertSource::Health,
        AlertSource::Events,
        AlertSource::Syscalls,
        AlertSource::Policy,
        AlertSource::Posture,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertSource::Stats => "stats",
            AlertSource::Processes => "processes",
            AlertSource::Network => "network",
            AlertSource::Logs => "logs",
            AlertSource::Health => "health",
            AlertSource::Events => "events",
            AlertSource::Syscalls => "syscalls",
            AlertSource::Policy => "policy",
            AlertSource::Posture => "posture",
        }
    }
}

/// One alert. Written as a schema v1 record (model/record.rs, docs/alert.schema.json).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub severity: Severity,
    pub source: AlertSource,
    pub message: String,
    /// Unique and time-ordered (a ULID).
    pub id: String,
    /// UTC, RFC 3339 with nanoseconds.
    pub time: String,
    /// RFC 3339 with the local offset, millisecond precision (the v0 field, an alias).
    pub timestamp: String,
    pub host: String,
    /// The rule that raised it; empty: named from the decision or the source.
    pub rule: String,
    pub container: String,
    pub container_id: String,
    pub image: String,
    /// Occurrences it stands for (more than 1 when de-duplicated).
    pub count: u64,
    /// Structured context: pid, comm, lineage, address…
    pub details: Map<String, Value>,
    /// What the agent acts on, typed (a misspelt key cannot silently stop a freeze or a
    /// count). Written to `details` too, so the JSON-lines format is unchanged.
    pub control: Control,
}

/// The control data of an alert: read by the router, auto-pause and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Control {
    /// Announces a quarantine: freeze even without auto-pause.
    pub quarantine: bool,
    /// The follow-up that announces an auto-pause (never pauses again).
    pub follow_up: bool,
    /// The kernel's timestamp of the event behind it (detection latency).
    pub kernel_ts_ns: Option<u64>,
    /// A kernel decision to count: (rule, verdict).
    pub decision: Option<(&'static str, &'static str)>,
    /// Never freezes, even when CRITICAL: about how the container was launched (a posture
    /// finding), not something it did, so pausing it would punish no behaviour.
    pub no_pause: bool,
}

/// Longest message an alert carries, in characters; longer text is cut with a marker.
pub(crate) const MAX_MESSAGE_CHARS: usize = 2048;
/// Longest string in an alert's details, in characters.
pub(crate) const MAX_DETAIL_CHARS: usize = 1024;
/// Most items kept in a list or object in an alert's details.
pub(crate) const MAX_DETAIL_ITEMS: usize = 64;

/// The first `max` characters of `text`, and when more followed, a marker saying how many
/// bytes were cut: container output is hostile and may be arbitrarily long.
pub(crate) fn truncate_marked(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…[truncated {} bytes]", &text[..end], text.len() - end),
        None => text.to_string(),
    }
}

fn bound_value(value: &mut Value, depth: usize) {
    match value {
        Value::String(text) if text.chars().nth(MAX_DETAIL_CHARS).is_some() => {
            *text = truncate_marked(text, MAX_DETAIL_CHARS);
        }
        Value::Array(items) => {
            if items.len() > MAX_DETAIL_ITEMS {
                let cut = items.len() - MAX_DETAIL_ITEMS;
                items.truncate(MAX_DETAIL_ITEMS);
                items.push(Value::String(format!("…[truncated {cut} items]")));
            }
            items.iter_mut().for_each(|v| bound_value(v, depth + 1));
        }
        Value::Object(map) => bound_map(map, depth + 1),
        _ => {}
    }
}

fn bound_map(map: &mut Map<String, Value>, depth: usize) {
    if depth > 4 {
        map.clear();
        map.insert(
            "truncated".into(),
            Value::String("…[nested too deep]".into()),
        );
        return;
    }
    if map.len() > MAX_DETAIL_ITEMS {
        let keys: Vec<String> = map.keys().skip(MAX_DETAIL_ITEMS).cloned().collect();
        for key in &keys {
            map.remove(key);
        }
        map.insert(
            "truncated".into(),
            Value::String(format!("…[truncated {} items]", keys.len())),
        );
    }
    map.values_mut().for_each(|v| bound_value(v, depth));
}

/// The current time as the alerts write it.
pub fn now_rfc3339() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

impl Alert {
    pub fn new(severity: Severity, source: AlertSource, message: impl Into<String>) -> Self {
        Alert {
            severity,
            source,
            message: message.into(),
            id: record::new_ulid(),
            time: record::now_utc_nanos(),
            timestamp: now_rfc3339(),
            host: record::hostname().to_string(),
            rule: String::new(),
            container: String::new(),
            container_id: String::new(),
            image: String::new(),
            count: 1,
            details: Map::new(),
            control: Control::default(),
        }
    }

    /// Name the rule that raised this alert (`cpu_sustained`, `log_pattern`…).
    pub fn rule(mut self, name: &str) -> Self {
        self.rule = name.to_string();
        self
    }

    /// The rule as written: the named one, else the kernel decision's, else the source.
    pub fn rule_name(&self) -> &str {
        if !self.rule.is_empty() {
            return &self.rule;
        }
        if let Some((rule, _)) = self.control.decision {
            return rule;
        }
        match self.details.get("rule").and_then(Value::as_str) {
            Some(rule) if !rule.is_empty() => rule,
            _ => self.source.as_str(),
        }
    }

    /// Mark the alert as a quarantine announcement.
    pub fn quarantine(mut self) -> Self {
        self.control.quarantine = true;
        self.with("quarantine", true)
    }

    /// Mark the alert as the follow-up of an auto-pause.
    pub fn follow_up(mut self) -> Self {
        self.control.follow_up = true;
        self.with("auto_pause", true)
    }

    /// Mark the alert as one that never freezes the container (also in `details`).
    pub fn no_pause(mut self) -> Self {
        self.control.no_pause = true;
        self.with("no_pause", true)
    }

    /// The kernel timestamp of the event behind the alert.
    pub fn kernel_ts(mut self, ns: u64) -> Self {
        self.control.kernel_ts_ns = Some(ns);
        self.with("kernel_ts_ns", ns)
    }

    /// The rule and verdict of a kernel decision (also in `details`).
    pub fn decision(mut self, rule: &'static str, verdict: &'static str) -> Self {
        self.control.decision = Some((rule, verdict));
        self.with("rule", rule).with("verdict", verdict)
    }

    /// Add one detail.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// This alert with its message and every detail bounded in size (cut with a marker), so
    /// no container output can blow up a log line, a terminal or the dashboard.
    pub fn bounded(mut self) -> Self {
        if self.message.chars().nth(MAX_MESSAGE_CHARS).is_some() {
            self.message = truncate_marked(&self.message, MAX_MESSAGE_CHARS);
        }
        bound_map(&mut self.details, 0);
        self
    }

    pub fn for_container(mut self, name: &str, id: &str) -> Self {
        self.container = name.to_string();
        self.container_id = id.to_string();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialises_as_one_json_object_with_an_offset_timestamp() {
        let alert = Alert::new(Severity::Critical, AlertSource::Processes, "shell")
            .rule("process_denylisted")
            .with("pid", 42)
            .for_container("crabpot", "abc");
        let line = serde_json::to_string(&alert).expect("json");
        assert!(line.contains(r#""severity":"CRITICAL""#), "{line}");
        assert!(line.contains(r#""source":"processes""#), "{line}");
        assert!(line.contains(r#""details":{"pid":42}"#), "{line}");
        let parsed = chrono::DateTime::parse_from_rfc3339(&alert.timestamp).expect("rfc3339");
        assert_eq!(
            parsed.to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
            alert.timestamp
        );
        let back: Alert = serde_json::from_str(&line).expect("round trip");
        assert_eq!(back, alert);
    }

    #[test]
    fn bounds_message_and_details_with_a_marker() {
        assert_eq!(truncate_marked("ééé", 2), "éé…[truncated 2 bytes]");
        assert_eq!(truncate_marked("short", 200), "short");
        let huge = "A".repeat(100_000);
        let alert = Alert::new(Severity::Warning, AlertSource::Logs, huge.clone())
            .with("args", huge.clone())
            .with("list", json!(vec![huge.as_str(); 500]))
            .with("pid", 7)
            .bounded();
        assert_eq!(
            alert.message,
            format!("{}…[truncated 97952 bytes]", &huge[..MAX_MESSAGE_CHARS])
        );
        let args = alert.details["args"].as_str().expect("string");
        assert!(args.ends_with("…[truncated 98976 bytes]"), "{args}");
        let list = alert.details["list"].as_array().expect("array");
        assert_eq!(list.len(), MAX_DETAIL_ITEMS + 1);
        assert_eq!(list[MAX_DETAIL_ITEMS], "…[truncated 436 items]");
        assert_eq!(alert.details["pid"], 7);
        let line = serde_json::to_string(&alert).expect("json");
        assert!(line.len() < 100_000, "{}", line.len());
    }

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
        assert_eq!("critical".parse::<Severity>(), Ok(Severity::Critical));
        assert!("loud".parse::<Severity>().is_err());
    }
}
