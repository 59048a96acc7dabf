//! What the agent writes, checked against the formats operators' tools expect: every line of
//! a real agent's alerts log and audit log against docs/alert.schema.json (alert schema v1).
use std::path::Path;

use crabpot_integration_tests::{TestContainer, guarded, test_image};
use serde_json::Value;

const SCHEMA: &str = include_str!("../docs/alert.schema.json");

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

/// Every line of `path` validated; returns how many there were.
fn validate_every_line(validator: &jsonschema::Validator, path: &Path) -> usize {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut lines = 0;
    for line in text.lines() {
        let record: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", path.display()));
        let errors: Vec<String> = validator
            .iter_errors(&record)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{}: {errors:?} in {line}",
            path.display()
        );
        lines += 1;
    }
    lines
}

#[test]
fn every_alert_and_audit_line_validates_against_the_schema() {
    let (container, agent) = guarded(TestContainer::start("schema"), &["--no-auto-pause"]);
    // A kernel-path alert (a shell) and a Docker-side channel alert (a log pattern).
    container.exec(&["sh", "-c", "true"]);
    container.put_file("/tmp/msg", b"all good\nFATAL: schema\n");
    container.exec(&["dd", "if=/tmp/msg", "of=/proc/1/fd/1"]);
    let shell = agent.wait_for_alert("the shell alert", |a| {
        a["severity"] == "CRITICAL" && a["source"] == "processes"
    });
    let log = agent.wait_for_alert("the log alert", |a| a["source"] == "logs");

    assert_eq!(shell["schema"], 1);
    assert_eq!(shell["rule"], "process_denylisted");
    assert_eq!(shell["container"]["name"], container.name.as_str());
    assert_eq!(shell["container"]["image"], test_image().as_str());
    assert_eq!(shell["process"]["exe"], "/bin/sh", "{shell}");
    assert!(
        shell["process"]["pid"].as_u64().is_some_and(|p| p > 1),
        "{shell}"
    );
    assert_eq!(shell["process"]["argv"][0], "sh", "{shell}");
    assert_eq!(log["rule"], "log_pattern");
    assert_eq!(log["count"], 1);
    assert!(
        log.get("process").is_none(),
        "no process for a log line: {log}"
    );
    // The v0 aliases stay for one release.
    assert_eq!(shell["container_id"], shell["container"]["id"]);
    assert!(shell["timestamp"].is_string());
    assert!(
        shell["id"].as_str() < log["id"].as_str(),
        "ids sort by time"
    );

    let validator = validator();
    let alerts = validate_every_line(&validator, &agent.alerts_log);
    let audit = validate_every_line(&validator, &agent.alerts_log.with_file_name("audit.log"));
    assert!(alerts >= 2, "{alerts} alert lines");
    // The benign `true` and `dd` execs are audit records: the audit log is not empty.
    assert!(audit >= 1, "{audit} audit lines");
    eprintln!("{alerts} alert lines and {audit} audit lines valid");
}
