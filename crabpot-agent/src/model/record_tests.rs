use serde_json::json;

use super::*;

const SCHEMA: &str = include_str!("../../../docs/alert.schema.json");

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn assert_valid(validator: &jsonschema::Validator, record: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(record)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?} in {record}");
}

#[test]
fn emitted_records_validate_against_the_schema_file() {
    let validator = validator();
    let kernel = Alert::new(Severity::Critical, AlertSource::Processes, "shell")
        .rule("process_denylisted")
        .with("pid", 42)
        .with("ppid", 1)
        .with("uid", 0)
        .with("filename", "/bin/sh")
        .with("argv", json!(["sh", "-c", "id"]))
        .with("lineage", json!([{"pid": 1, "comm": "node"}]))
        .for_container("crabpot", "abc");
    let channel = Alert::new(Severity::Warning, AlertSource::Stats, "CPU").rule("cpu_sustained");
    let decision =
        Alert::new(Severity::Info, AlertSource::Syscalls, "open").decision("open", "logged");
    for alert in [&kernel, &channel, &decision] {
        let line = serde_json::to_string(alert).expect("json");
        assert_valid(&validator, &serde_json::from_str(&line).expect("parse"));
    }
    let record = v1(&kernel);
    assert_eq!(record["process"]["exe"], "/bin/sh");
    assert_eq!(record["process"]["argv"][2], "id");
    assert_eq!(record["container"]["name"], "crabpot");
    assert_eq!(record["container_id"], "abc");
    assert_eq!(v1(&decision)["rule"], "open");
    assert!(v1(&channel).get("process").is_none());
    // A record without the required fields is refused (the schema does check).
    assert!(!validator.is_valid(&json!({"severity": "INFO"})));
}

#[test]
fn ids_are_unique_and_sort_in_creation_order() {
    let ids: Vec<String> = (0..2000).map(|_| new_ulid()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids);
    assert!(ids.iter().all(|id| id.len() == 26));
}

#[test]
fn reads_v1_and_the_records_before_it() {
    let alert = Alert::new(Severity::Warning, AlertSource::Logs, "pattern")
        .rule("log_pattern")
        .for_container("box", "123");
    let back: Alert =
        serde_json::from_str(&serde_json::to_string(&alert).expect("json")).expect("v1 reads back");
    assert_eq!(back, alert);
    let old = r#"{"severity":"CRITICAL","source":"processes","message":"shell",
        "timestamp":"2026-11-23T14:00:00.123+01:00","container":"box","container_id":"123",
        "details":{"pid":7}}"#;
    let read: Alert = serde_json::from_str(old).expect("v0 reads");
    assert_eq!(read.container, "box");
    assert_eq!(read.container_id, "123");
    assert_eq!(read.time, "2026-11-23T13:00:00.123000000Z");
    assert_eq!(read.timestamp, "2026-11-23T14:00:00.123+01:00");
    assert_eq!(read.count, 1);
    assert_eq!(read.rule_name(), "processes");
}
