//! The one alert type every channel raises and every sink receives.
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
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
}

impl AlertSource {
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
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub severity: Severity,
    pub source: AlertSource,
    pub message: String,
    /// RFC 3339 with the local offset, millisecond precision.
    pub timestamp: String,
    pub container: String,
    pub container_id: String,
    /// Structured context: pid, comm, lineage, address…
    #[serde(default)]
    pub details: Map<String, Value>,
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
            timestamp: now_rfc3339(),
            container: String::new(),
            container_id: String::new(),
            details: Map::new(),
        }
    }

    /// Add one detail.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_string(), value.into());
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

    #[test]
    fn serialises_as_one_json_object_with_an_offset_timestamp() {
        let alert = Alert::new(Severity::Critical, AlertSource::Processes, "shell")
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
    fn severities_order_and_parse() {
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
        assert_eq!("critical".parse::<Severity>(), Ok(Severity::Critical));
        assert!("loud".parse::<Severity>().is_err());
    }
}
