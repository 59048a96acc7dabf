//! The alert record as it is written (schema v1, docs/alert.schema.json) and read back (v1
//! and the records written before it). v1 keeps the old `timestamp` and `container_id`
//! fields as aliases for one release; `container` changed from a string to an object.
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

use super::alert::{Alert, AlertSource, Control, Severity};

/// The version in every record's `schema` field.
pub(crate) const SCHEMA_VERSION: u64 = 1;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The host's name, read once (the kernel's, as `hostname` prints it).
pub(crate) fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    })
}

/// The current time in UTC, RFC 3339 with nanoseconds.
pub(crate) fn now_utc_nanos() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn random_u128() -> u128 {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom writes at most `len` bytes into the buffer we own.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got != bytes.len() as isize {
        // No entropy: the time and pid still make ids unique on this host.
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes[..8].copy_from_slice(&nanos.to_le_bytes());
        bytes[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    u128::from_le_bytes(bytes)
}

/// A new ULID: 48 bits of Unix milliseconds then 80 random bits, Crockford base32 (26
/// characters), so ids sort by time; within one millisecond the random part is incremented
/// (ULID's monotonic rule), so ids from this process also sort in creation order.
pub(crate) fn new_ulid() -> String {
    static LAST: Mutex<(u64, u128)> = Mutex::new((0, 0));
    let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64 & ((1 << 48) - 1);
    let mask: u128 = (1 << 80) - 1;
    let random = match LAST.lock() {
        Ok(mut last) => {
            let next = if now_ms <= last.0 {
                (last.1 + 1) & mask
            } else {
                random_u128() & mask
            };
            *last = (now_ms.max(last.0), next);
            ((last.0 as u128) << 80) | next
        }
        Err(_) => ((now_ms as u128) << 80) | (random_u128() & mask),
    };
    (0..26)
        .rev()
        .map(|i| CROCKFORD[((random >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// The `process` object from the details the kernel path (or `docker top`) set: none
/// without a pid.
pub(crate) fn process_of(details: &Map<String, Value>) -> Option<Value> {
    let pid = details.get("pid").filter(|p| p.is_u64())?;
    let mut process = Map::new();
    process.insert("pid".into(), pid.clone());
    for key in ["ppid", "uid"] {
        if let Some(value) = details.get(key).filter(|v| v.is_u64()) {
            process.insert(key.into(), value.clone());
        }
    }
    let exe = ["filename", "exe", "executable"]
        .iter()
        .find_map(|k| details.get(*k).and_then(Value::as_str));
    if let Some(exe) = exe {
        process.insert("exe".into(), exe.into());
    }
    if let Some(argv) = details.get("argv").filter(|v| v.is_array()) {
        process.insert("argv".into(), argv.clone());
    }
    if let Some(lineage) = details.get("lineage").filter(|v| v.is_array()) {
        process.insert("lineage".into(), lineage.clone());
    }
    Some(Value::Object(process))
}

/// The v1 record of an alert, as a JSON object.
pub(crate) fn v1(alert: &Alert) -> Value {
    let mut record = json!({
        "schema": SCHEMA_VERSION,
        "id": alert.id,
        "time": alert.time,
        "host": alert.host,
        "severity": alert.severity,
        "rule": alert.rule_name(),
        "source": alert.source,
        "message": alert.message,
        "container": {
            "name": alert.container,
            "id": alert.container_id,
            "image": alert.image,
        },
        "details": alert.details,
        "count": alert.count,
        // Aliases of v0, kept for one release (README: alert schema).
        "timestamp": alert.timestamp,
        "container_id": alert.container_id,
    });
    if let (Some(process), Some(map)) = (process_of(&alert.details), record.as_object_mut()) {
        map.insert("process".into(), process);
    }
    record
}

impl Serialize for Alert {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        v1(self).serialize(serializer)
    }
}

/// A record as read: v1 or the record before it (`container` a string, no `time`).
#[derive(Deserialize)]
struct AnyRecord {
    severity: Severity,
    source: AlertSource,
    message: String,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    container: Value,
    #[serde(default)]
    container_id: Option<String>,
    #[serde(default)]
    details: Map<String, Value>,
    #[serde(default)]
    id: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    rule: String,
    #[serde(default)]
    count: Option<u64>,
}

fn text(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl<'de> Deserialize<'de> for Alert {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let r = AnyRecord::deserialize(deserializer)?;
        let (name, id, image) = match &r.container {
            Value::Object(c) => (text(c.get("name")), text(c.get("id")), text(c.get("image"))),
            Value::String(name) => (name.clone(), String::new(), String::new()),
            _ => Default::default(),
        };
        let (time, timestamp) = match (r.time, r.timestamp) {
            (Some(time), Some(ts)) => (time, ts),
            (Some(time), None) => (time.clone(), time),
            (None, Some(ts)) => (to_utc(&ts).unwrap_or_else(|| ts.clone()), ts),
            (None, None) => return Err(serde::de::Error::missing_field("time")),
        };
        Ok(Alert {
            severity: r.severity,
            source: r.source,
            message: r.message,
            timestamp,
            time,
            id: r.id,
            host: r.host,
            rule: r.rule,
            container: name,
            container_id: r.container_id.filter(|c| !c.is_empty()).unwrap_or(id),
            image,
            count: r.count.unwrap_or(1),
            details: r.details,
            control: Control::default(),
        })
    }
}

fn to_utc(timestamp: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc3339(timestamp)
        .ok()
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        })
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
