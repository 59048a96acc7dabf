//! The shapes an alert is written in besides schema v1: Falco's JSON output (what
//! falcosidekick and Falco-aware SIEM pipelines take) and the record before v1 (`legacy`,
//! for consumers that read `container` as a string; kept for one release).
use serde_json::{Map, Value, json};

use crate::model::alert::{Alert, Severity};

/// How the alerts log writes each line (`--output-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Alert schema v1 (docs/alert.schema.json).
    #[default]
    Json,
    /// Falco's JSON output.
    Falco,
    /// The record before schema v1 (deprecated: removed in 0.3.0).
    Legacy,
}

/// One alert as a JSON value in `format`.
pub(crate) fn encode(alert: &Alert, format: OutputFormat) -> Value {
    match format {
        OutputFormat::Json => crate::model::record::v1(alert),
        OutputFormat::Falco => falco(alert),
        OutputFormat::Legacy => legacy(alert),
    }
}

/// The record as written before schema v1.
pub(crate) fn legacy(alert: &Alert) -> Value {
    json!({
        "severity": alert.severity,
        "source": alert.source,
        "message": alert.message,
        "timestamp": alert.timestamp,
        "container": alert.container,
        "container_id": alert.container_id,
        "details": alert.details,
    })
}

/// Falco's priority for a severity (Falco has eight; ours map onto three of them).
pub(crate) fn falco_priority(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "Critical",
        Severity::Warning => "Warning",
        Severity::Info => "Informational",
    }
}

/// The alert id (a ULID, 128 bits) in the UUID text form Falco writes.
fn uuid_of(ulid: &str) -> String {
    const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let bits = ulid.chars().try_fold(0u128, |acc, c| {
        CROCKFORD
            .find(c.to_ascii_uppercase())
            .map(|d| (acc << 5) | d as u128)
    });
    let hex = format!("{:032x}", bits.unwrap_or_default());
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Falco's field names where one exists, `crabpot.*` for the rest.
fn output_fields(alert: &Alert) -> Map<String, Value> {
    let d = &alert.details;
    let mut fields = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value.filter(|v| !v.is_null()) {
            fields.insert(key.to_string(), value);
        }
    };
    let nanos = chrono::DateTime::parse_from_rfc3339(&alert.time)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt());
    put("evt.time", nanos.map(Value::from));
    put("container.name", Some(alert.container.clone().into()));
    put("container.id", Some(short_id(&alert.container_id).into()));
    put("container.image", Some(alert.image.clone().into()));
    let exe = ["filename", "exe"]
        .iter()
        .find_map(|k| d.get(*k).and_then(Value::as_str));
    let argv: Option<Vec<&str>> = d
        .get("argv")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect());
    // After an exec the task's name is the file's (the kernel's `comm` is from before it).
    let name = exe
        .map(|e| e.rsplit('/').next().unwrap_or(e))
        .or_else(|| d.get("comm").and_then(Value::as_str));
    put("proc.name", name.map(Value::from));
    put("proc.exepath", exe.map(Value::from));
    let cmdline = match (&argv, d.get("args").and_then(Value::as_str)) {
        (Some(argv), _) if !argv.is_empty() => Some(argv.join(" ")),
        (_, Some(args)) => Some(args.to_string()),
        _ => None,
    };
    put("proc.cmdline", cmdline.map(Value::from));
    put("proc.pid", d.get("pid").cloned());
    put("proc.ppid", d.get("ppid").cloned());
    put("user.uid", d.get("uid").cloned());
    let fd_name = match (d.get("path"), d.get("address"), d.get("port")) {
        (Some(path), _, _) => Some(path.clone()),
        (None, Some(Value::String(address)), Some(port)) => {
            Some(Value::from(format!("{address}:{port}")))
        }
        (None, Some(address), None) => Some(address.clone()),
        _ => None,
    };
    put("fd.name", fd_name);
    put("crabpot.id", Some(alert.id.clone().into()));
    put("crabpot.severity", Some(alert.severity.as_str().into()));
    put("crabpot.source", Some(alert.source.as_str().into()));
    put("crabpot.count", Some(alert.count.into()));
    put("crabpot.message", Some(alert.message.clone().into()));
    fields
}

fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Falco's JSON output for one alert (falcosidekick's `types.FalcoPayload`).
pub(crate) fn falco(alert: &Alert) -> Value {
    let priority = falco_priority(alert.severity);
    let clock = alert.time.get(11..29).unwrap_or(&alert.time);
    let output = format!(
        "{clock}: {priority} {} (container.name={} rule={})",
        alert.message,
        alert.container,
        alert.rule_name()
    );
    // Falco's `source` is the event source: kernel events are `syscall`, the Docker-side
    // channels are Docker's.
    let kernel = alert.control.kernel_ts_ns.is_some()
        || alert.details.get("detected_by").and_then(Value::as_str) == Some("ebpf")
        || alert.control.decision.is_some();
    let mut tags = vec!["crabpot".to_string(), alert.source.as_str().to_string()];
    if let Some(category) = alert.details.get("category").and_then(Value::as_str) {
        tags.push(category.replace(' ', "_"));
    }
    json!({
        "uuid": uuid_of(&alert.id),
        "time": alert.time,
        "rule": alert.rule_name(),
        "priority": priority,
        "output": output,
        "output_fields": output_fields(alert),
        "source": if kernel { "syscall" } else { "docker" },
        "tags": tags,
        "hostname": alert.host,
    })
}

/// An alert back from a line written in Falco's shape (so `crabpot alerts` reads a log
/// written with `--output-format falco`); `None` for anything else.
pub(crate) fn from_falco(line: &str) -> Option<Alert> {
    let value: Value = serde_json::from_str(line).ok()?;
    let fields = value.get("output_fields")?.as_object()?;
    let text = |key: &str| fields.get(key).and_then(Value::as_str).unwrap_or_default();
    let severity = text("crabpot.severity").parse().ok()?;
    let source = serde_json::from_value(fields.get("crabpot.source")?.clone()).ok()?;
    let mut alert = Alert::new(severity, source, text("crabpot.message"))
        .rule(value.get("rule")?.as_str()?)
        .for_container(text("container.name"), text("container.id"));
    alert.id = text("crabpot.id").to_string();
    alert.image = text("container.image").to_string();
    alert.time = value.get("time")?.as_str()?.to_string();
    alert.timestamp = alert.time.clone();
    alert.host = value.get("hostname")?.as_str()?.to_string();
    alert.count = fields
        .get("crabpot.count")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    for (key, field) in fields.iter().filter(|(k, _)| !k.starts_with("crabpot.")) {
        alert.details.insert(key.clone(), field.clone());
    }
    Some(alert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::AlertSource;

    #[test]
    fn falco_payload_has_falcos_fields_and_names() {
        let alert = Alert::new(Severity::Critical, AlertSource::Processes, "shell")
            .rule("process_denylisted")
            .with("pid", 42)
            .with("ppid", 1)
            .with("uid", 0)
            .with("comm", "sh")
            .with("filename", "/bin/sh")
            .with("argv", json!(["sh", "-c", "id"]))
            .with("detected_by", "ebpf")
            .with("category", "shell")
            .for_container("box", "0123456789abcdef");
        let p = falco(&alert);
        assert_eq!(p["priority"], "Critical");
        assert_eq!(p["rule"], "process_denylisted");
        assert_eq!(p["source"], "syscall");
        assert_eq!(p["tags"], json!(["crabpot", "processes", "shell"]));
        let f = &p["output_fields"];
        assert_eq!(f["container.id"], "0123456789ab");
        assert_eq!(f["proc.cmdline"], "sh -c id");
        assert_eq!(f["proc.name"], "sh");
        assert_eq!(f["user.uid"], 0);
        assert!(
            p["output"]
                .as_str()
                .is_some_and(|o| o.contains("Critical shell"))
        );
        let uuid = p["uuid"].as_str().expect("uuid");
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.matches('-').count(), 4);
        let net = Alert::new(Severity::Info, AlertSource::Network, "x")
            .with("address", "1.2.3.4")
            .with("port", 80);
        assert_eq!(falco(&net)["output_fields"]["fd.name"], "1.2.3.4:80");
        assert_eq!(falco(&net)["priority"], "Informational");
        assert_eq!(falco(&net)["source"], "docker");
        let back = from_falco(&p.to_string()).expect("reads back");
        assert_eq!(
            (back.id.as_str(), back.rule.as_str()),
            (alert.id.as_str(), "process_denylisted")
        );
        assert_eq!((back.severity, back.source), (alert.severity, alert.source));
        assert_eq!(back.message, "shell");
        let old = legacy(&alert);
        assert_eq!(old["container"], "box");
        assert!(old.get("schema").is_none());
    }
}
