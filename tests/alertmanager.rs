//! Delivery beyond the local sinks, against real receivers: Debian's Alertmanager (started
//! here) shows the agent's alert with its labels, and the pause alert goes away after
//! `crabpot resume`; identical alerts fold into one record with a count (the counts add up
//! to the alerts raised); a rate-limited webhook gets an explicit "suppressed" record and
//! nothing below its minimum severity.
use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
};

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, crabpot, enforced, free_port, guarded, http, unique_name,
    wait_until,
};
use serde_json::Value;

/// A real Alertmanager on a free loopback port, with its own configuration and storage;
/// killed and removed on drop.
struct Alertmanager {
    child: Child,
    dir: PathBuf,
    address: String,
}

const AM_CONFIG: &str = "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n";

impl Alertmanager {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(unique_name("alertmanager"));
        std::fs::create_dir_all(&dir).expect("alertmanager dir");
        let config = dir.join("alertmanager.yml");
        std::fs::write(&config, AM_CONFIG).expect("alertmanager config");
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            // No gossip: a single instance.
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus-alertmanager: {e}"));
        let am = Alertmanager {
            child,
            dir,
            address,
        };
        wait_until("Alertmanager ready", DEADLINE, || am.try_get("/-/ready"));
        am
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// GET over HTTP/1.0, so the body is never chunked (Alertmanager chunks long
    /// HTTP/1.1 answers); the body of a 200 answer, `None` for anything else.
    fn try_get(&self, path: &str) -> Option<String> {
        let mut stream = std::net::TcpStream::connect(&self.address).ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.address);
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1);
        (status == Some("200")).then(|| body.to_string())
    }

    /// The alerts Alertmanager holds as active (resolved ones are not listed).
    fn alerts(&self) -> Vec<Value> {
        let body = self
            .try_get("/api/v2/alerts?active=true")
            .expect("Alertmanager answers GET /api/v2/alerts");
        serde_json::from_str::<Vec<Value>>(&body)
            .unwrap_or_else(|e| panic!("Alertmanager answered non-JSON ({e}): {body}"))
    }

    fn find(&self, alertname: &str, container: &str) -> Option<Value> {
        self.alerts().into_iter().find(|a| {
            a["labels"]["alertname"] == alertname && a["labels"]["container"] == container
        })
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn alertmanager_shows_the_alert_and_resolves_the_pause_on_resume() {
    let am = Alertmanager::start();
    let address = format!("127.0.0.1:{}", free_port());
    let (container, agent) = enforced(
        TestContainer::start("am"),
        &["--alertmanager", &am.url(), "--listen", &address],
    );
    agent.wait_for_log(&["HTTP listener on"], DEADLINE);
    // Benign: the container runs and nothing CRITICAL is in Alertmanager.
    assert!(container.exec(&["cat", "/etc/hostname"]).len() > 1);
    assert!(
        am.alerts()
            .iter()
            .all(|a| a["labels"]["severity"] != "critical"),
        "{:#?}",
        am.alerts()
    );

    // A denylisted shell: CRITICAL, auto-paused (the shell is stopped at its exec: its
    // docker exec never returns, so it is not waited for).
    let _shell = container.spawn_exec(&["sh", "-c", "id"]);
    let shell = wait_until("the shell alert in Alertmanager", DEADLINE, || {
        am.find("process_denylisted", &container.name)
    });
    let labels = &shell["labels"];
    assert_eq!(labels["severity"], "critical", "{shell:#}");
    assert_eq!(labels["source"], "processes", "{shell:#}");
    assert!(
        labels["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{shell:#}"
    );
    let annotations = &shell["annotations"];
    assert!(
        annotations["process"]
            .as_str()
            .is_some_and(|p| p.starts_with("pid ") && p.contains("sh -c id")),
        "{shell:#}"
    );
    assert!(
        annotations["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    let logged = agent.wait_for_alert("the shell in the alerts log", |a| {
        a["rule"] == "process_denylisted" && a["severity"] == "CRITICAL"
    });
    assert_eq!(annotations["alert_id"], logged["id"], "{shell:#}");

    wait_until("the container frozen", DEADLINE, || {
        container.is_paused().then_some(())
    });
    let pause = wait_until("the pause alert in Alertmanager", DEADLINE, || {
        am.find("auto_pause", &container.name)
    });
    assert_eq!(pause["status"]["state"], "active", "{pause:#}");

    let token = agent.alerts_log.with_file_name("token");
    let token = token.to_string_lossy().into_owned();
    let (ok, text) = crabpot(&[
        "resume",
        "--container",
        &container.name,
        "--agent",
        &address,
        "--token-file",
        &token,
    ]);
    assert!(ok, "{text}");
    wait_until("the pause alert resolved", DEADLINE, || {
        am.find("auto_pause", &container.name)
            .is_none()
            .then_some(())
    });
    // The event-like alert expires by itself later; it is still there.
    assert!(am.find("process_denylisted", &container.name).is_some());
    assert!(!container.is_paused());
}

/// A local HTTP receiver that answers 200 and keeps every JSON body posted to it.
fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr");
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let body = http::read_body(&mut stream);
            if let (Ok(value), Ok(mut list)) = (serde_json::from_str(&body), seen.lock()) {
                list.push(value);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (format!("http://{address}/"), bodies)
}

fn shell_records(agent: &Agent) -> Vec<Value> {
    agent
        .alerts()
        .into_iter()
        .filter(|a| a["rule"] == "process_denylisted" && a["details"]["executable"] == "sh")
        .collect()
}

#[test]
fn repeats_fold_with_a_count_and_the_webhook_is_rate_limited() {
    let (url, bodies) = receiver();
    let address = format!("127.0.0.1:{}", free_port());
    let (container, agent) = guarded(
        TestContainer::start("dedup"),
        &[
            "--no-auto-pause",
            "--listen",
            &address,
            "--dedup-window",
            "4",
            "--webhook",
            &url,
            "--webhook-rate",
            "1/8s",
            "--webhook-min-severity",
            "CRITICAL",
        ],
    );
    agent.wait_for_log(&["HTTP listener on"], DEADLINE);
    // A WARNING-level event for the filter: a log line the default patterns rate WARNING.
    container.put_file("/tmp/msg", b"ERROR: something went wrong\n");
    container.exec(&["dd", "if=/tmp/msg", "of=/proc/1/fd/1"]);

    const RAISED: u64 = 4;
    for _ in 0..RAISED {
        container.exec_status(&["sh", "-c", "true"]);
    }
    // The first at once, then one folded record when the window ends.
    let records = wait_until("the folded record", DEADLINE, || {
        let records = shell_records(&agent);
        let total: u64 = records.iter().filter_map(|r| r["count"].as_u64()).sum();
        (total == RAISED).then_some(records)
    });
    assert_eq!(records[0]["count"], 1, "{records:#?}");
    assert!(
        records.iter().any(|r| r["count"].as_u64() > Some(1)
            && r["details"]["dedup"]["first_id"].is_string()),
        "{records:#?}"
    );
    assert!(records.len() < RAISED as usize, "{records:#?}");
    // Folded records are schema v1 records like any other.
    let schema: Value =
        serde_json::from_str(include_str!("../docs/alert.schema.json")).expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for record in agent.alerts() {
        let errors: Vec<String> = validator
            .iter_errors(&record)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?} in {record}");
    }
    // The metrics count every alert raised, folded or not.
    let metrics = http::get(&address, "/metrics");
    let counted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("crabpot_alerts_total{") && l.contains("severity=\"CRITICAL\""))
        .filter(|l| l.contains("source=\"processes\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, RAISED as f64, "every alert counted:\n{metrics}");

    // The webhook: the first, then (the fold held back by 1 per 8 s) the explicit summary.
    let summary = wait_until("the suppressed record on the webhook", DEADLINE, || {
        let list = bodies.lock().ok()?.clone();
        list.into_iter().find(|b| b["rule"] == "sink_rate_limited")
    });
    assert!(
        summary["message"]
            .as_str()
            .is_some_and(|m| m.contains("suppressed for sink webhook")),
        "{summary:#}"
    );
    assert!(
        summary["details"]["suppressed"].as_u64() >= Some(1),
        "{summary:#}"
    );
    let seen = bodies.lock().map(|b| b.clone()).unwrap_or_default();
    assert!(
        seen.iter().all(|b| b["severity"] == "CRITICAL"),
        "below --webhook-min-severity reached the webhook: {seen:#?}"
    );
    assert!(
        agent.alerts().iter().any(|a| a["severity"] != "CRITICAL"),
        "no lower-severity alert to filter: {:#?}",
        agent.alerts()
    );
    let metrics = http::get(&address, "/metrics");
    assert!(
        metrics.contains("crabpot_sink_suppressed_total{sink=\"webhook\"}"),
        "{metrics}"
    );
    eprintln!(
        "{} webhook bodies, {} shell records",
        seen.len(),
        records.len()
    );
}
