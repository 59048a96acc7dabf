//! What the agent writes, checked against the formats operators' tools expect: every line of
//! a real agent's alerts log and audit log against docs/alert.schema.json (alert schema v1);
//! Falco's output shape on the webhook (as falcosidekick reads it) and in the log.
use std::{
    io::Write as _,
    net::TcpListener,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use crabpot_integration_tests::{Agent, DEADLINE, TestContainer, guarded, test_image, wait_until};
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

/// A local HTTP receiver that answers 200 and keeps every body it was posted.
fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr");
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let body = crabpot_integration_tests::http::read_body(&mut stream);
            if let Ok(mut list) = seen.lock() {
                list.push(body);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (format!("http://{address}/"), bodies)
}

const FALCO_PRIORITIES: [&str; 8] = [
    "Emergency",
    "Alert",
    "Critical",
    "Error",
    "Warning",
    "Notice",
    "Informational",
    "Debug",
];

/// The shape falcosidekick decodes into `types.FalcoPayload`: uuid, output, priority (one
/// of Falco's eight), rule, time (RFC 3339), output_fields, source, tags, hostname.
fn assert_falco_shape(p: &Value) {
    for key in ["uuid", "output", "rule", "source", "hostname"] {
        assert!(p[key].as_str().is_some_and(|v| !v.is_empty()), "{key}: {p}");
    }
    let priority = p["priority"].as_str().unwrap_or_default();
    assert!(FALCO_PRIORITIES.contains(&priority), "{p}");
    let time = p["time"].as_str().unwrap_or_default();
    // RFC 3339 in UTC with nanoseconds, as Falco writes it (Go's time.Time reads it).
    let b = time.as_bytes();
    assert!(
        b.len() == 30 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && b[29] == b'Z',
        "{p}"
    );
    assert!(p["output_fields"].is_object(), "{p}");
    assert!(
        p["tags"]
            .as_array()
            .is_some_and(|t| t.iter().all(Value::is_string)),
        "{p}"
    );
    let uuid = p["uuid"].as_str().unwrap_or_default();
    assert_eq!(uuid.len(), 36, "{p}");
}

#[test]
fn falco_output_on_the_webhook_and_in_the_log() {
    let (url, bodies) = receiver();
    let container = TestContainer::start("falco");
    let agent = Agent::start(
        &container.name,
        &[
            "--webhook",
            &url,
            "--webhook-format",
            "falco",
            "--output-format",
            "falco",
            "--no-auto-pause",
        ],
    );
    agent.wait_guarding(&container.name, container.cgroup_id());
    // Benign first: a WARNING log line is not posted (the webhook takes CRITICALs).
    container.put_file("/tmp/msg", b"FATAL: falco\n");
    container.exec(&["dd", "if=/tmp/msg", "of=/proc/1/fd/1"]);
    let logged = agent.wait_for_alert("the log alert", |a| a["rule"] == "log_pattern");
    assert_falco_shape(&logged);
    assert_eq!(logged["priority"], "Warning");
    assert_eq!(logged["source"], "docker");
    container.exec(&["sh", "-c", "true"]);
    let posted = wait_until("the falco webhook post", DEADLINE, || {
        bodies.lock().ok()?.first().cloned()
    });
    let payload: Value = serde_json::from_str(&posted).expect("JSON body");
    assert_falco_shape(&payload);
    assert_eq!(payload["priority"], "Critical", "{payload}");
    assert_eq!(payload["rule"], "process_denylisted");
    assert_eq!(payload["source"], "syscall");
    let fields = &payload["output_fields"];
    assert_eq!(fields["container.name"], container.name.as_str());
    assert_eq!(fields["proc.name"], "sh", "{payload}");
    assert!(
        fields["proc.cmdline"]
            .as_str()
            .is_some_and(|c| c.starts_with("sh -c true")),
        "{payload}"
    );
    assert!(fields["proc.pid"].as_u64().is_some(), "{payload}");
    assert_eq!(fields["user.uid"], 0);
    let in_log = agent.wait_for_alert("the shell alert in the log", |a| {
        a["rule"] == "process_denylisted"
    });
    assert_falco_shape(&in_log);
    assert_eq!(in_log["uuid"], payload["uuid"], "one alert, one uuid");
    std::thread::sleep(Duration::from_millis(500));
    let posts = bodies.lock().map(|b| b.clone()).unwrap_or_default();
    assert_eq!(posts.len(), 1, "only the CRITICAL is posted: {posts:?}");
}

/// The value of the sample line that starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn metrics_pass_promtool_and_count_what_operators_graph() {
    // A webhook nobody listens on: every delivery fails, and is counted.
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_url = format!("http://{}/", closed.local_addr().expect("addr"));
    drop(closed);
    let (container, agent) = guarded(
        TestContainer::start("metrics"),
        &["--no-auto-pause", "--webhook", &dead_url],
    );
    let listening = agent.wait_for_log(&["HTTP listener on 127.0.0.1:"], DEADLINE);
    let port: u16 = listening
        .rsplit("127.0.0.1:")
        .next()
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {listening:?}"));
    let address = format!("127.0.0.1:{port}");
    container.exec(&["sh", "-c", "true"]);
    agent.wait_for_alert("the shell alert", |a| a["rule"] == "process_denylisted");
    // Five attempts with backoff (about 4 s), then one failure.
    let metrics = wait_until("the webhook failure to be counted", DEADLINE, || {
        let metrics = crabpot_integration_tests::http::get(&address, "/metrics");
        (sample(&metrics, r#"crabpot_sink_failures_total{sink="webhook"}"#) == Some(1.0))
            .then_some(metrics)
    });
    // Benign: the sinks that lost nothing say 0.
    assert_eq!(
        sample(
            &metrics,
            r#"crabpot_sink_failures_total{sink="alerts-log"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"crabpot_kernel_events_dropped_total{kind="exec"}"#
        ),
        Some(0.0),
        "{metrics}"
    );
    assert!(sample(&metrics, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    assert!(sample(&metrics, "process_open_fds").is_some_and(|v| v > 0.0));
    let build = metrics
        .lines()
        .find(|l| l.starts_with("crabpot_build_info{"))
        .unwrap_or_default();
    assert!(
        build.contains("commit=\"") && build.contains("rustc=\"1."),
        "{build}"
    );
    assert!(!build.contains("commit=\"unknown\""), "{build}");
    let config = metrics
        .lines()
        .find(|l| l.starts_with("crabpot_config_info{sha256=\""))
        .unwrap_or_default();
    assert_eq!(
        config.len(),
        r#"crabpot_config_info{sha256=""} 1"#.len() + 64,
        "{config}"
    );

    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool (Debian package prometheus: cargo xtask setup --test)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool output");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}"
    );
}
