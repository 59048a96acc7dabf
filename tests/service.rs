//! The operator's view: `crabpot status`, `/metrics`, and control actions that need the
//! token, against a running agent.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::Command,
};

use crabpot_integration_tests::{Agent, DEADLINE, TestContainer, agent_bin, free_port, wait_until};

/// A raw HTTP/1.1 request: (status line, body).
fn http(address: &str, method: &str, path: &str, token: Option<&str>) -> (String, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the agent");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

fn crabpot(args: &[&str]) -> (bool, String) {
    let out = Command::new(agent_bin().with_file_name("crabpot"))
        .args(args)
        .output()
        .expect("run crabpot");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn status_metrics_and_token_protected_control() {
    let container = TestContainer::start("service");
    let address = format!("127.0.0.1:{}", free_port());
    let metrics_address = format!("127.0.0.1:{}", free_port());
    let agent = Agent::start(
        &container.name,
        &["--listen", &address, "--metrics-listen", &metrics_address],
    );
    agent.wait_guarding(&container.name, container.cgroup_id());
    agent.wait_for_log(&["HTTP listener on"], DEADLINE);
    agent.wait_for_log(&["metrics listener on"], DEADLINE);

    let (ok, out) = crabpot(&["status", "--agent", &address]);
    assert!(ok, "{out}");
    assert!(out.contains("kernel events:"), "{out}");
    assert!(
        out.contains(&format!("container: {} (running)", container.name)),
        "{out}"
    );
    assert!(out.contains("trust: 100"), "{out}");
    assert!(out.contains("connect=cgroup"), "{out}");

    // A shell: a CRITICAL alert, counted, with its detection latency observed (stopped in
    // the kernel: not waited for).
    let _shell = container.spawn_exec(&["sh", "-c", "true"]);
    wait_until("the agent to report the pause", DEADLINE, || {
        crabpot(&["status", "--agent", &address])
            .1
            .contains("(paused)")
            .then_some(())
    });
    let (status, metrics) = http(&address, "GET", "/metrics", None);
    assert!(status.contains("200"), "{status}");
    assert!(
        metrics.contains(r#"crabpot_alerts_total{severity="CRITICAL",source="processes"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("crabpot_detection_latency_seconds_count 1"),
        "{metrics}"
    );
    assert!(metrics.contains("crabpot_container_paused 1"), "{metrics}");
    assert!(
        metrics.contains(r#"crabpot_kernel_events_total{kind="exec"}"#),
        "{metrics}"
    );

    // Control needs the token.
    let (status, _) = http(&address, "POST", "/api/resume", None);
    assert!(status.contains("401"), "{status}");
    assert!(container.is_paused());
    let token_file = agent.alerts_log.with_file_name("token");
    let token = std::fs::read_to_string(&token_file).expect("token file");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the token file is private");
    let (status, _) = http(&address, "POST", "/api/resume", Some(token.trim()));
    assert!(status.contains("200"), "{status}");
    assert!(!container.is_paused());
}

#[test]
fn status_says_when_the_agent_is_not_running() {
    let (ok, out) = crabpot(&["status", "--agent", &format!("127.0.0.1:{}", free_port())]);
    assert!(!ok);
    assert!(out.contains("crabpot-agent is not running"), "{out}");
}

#[test]
fn a_non_loopback_listener_needs_an_explicit_flag() {
    let container = TestContainer::start("remote");
    let mut agent = Agent::start(&container.name, &["--listen", "0.0.0.0:0"]);
    let status = agent.wait_exit(DEADLINE);
    assert!(!status.success());
    agent.wait_for_log(&["not a loopback address", "--listen-remote"], DEADLINE);
}

/// What `crabpot install` writes; each is put back as it was (or removed) when the test ends,
/// so no later agent silently loads a configuration this test left.
const INSTALLED: &[&str] = &[
    "/usr/local/bin/crabpot-agent",
    "/usr/local/bin/crabpot",
    "/etc/systemd/system/crabpot-agent.service",
    "/etc/systemd/system/crabpot-agent@.service",
    "/etc/crabpot/monitor.yml",
];

struct RestoreOnDrop {
    before: Vec<(&'static str, Option<Vec<u8>>)>,
    config_dir_existed: bool,
}

impl RestoreOnDrop {
    fn snapshot() -> Self {
        RestoreOnDrop {
            before: INSTALLED
                .iter()
                .map(|path| (*path, std::fs::read(path).ok()))
                .collect(),
            config_dir_existed: std::path::Path::new("/etc/crabpot").exists(),
        }
    }
}

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        for (path, contents) in &self.before {
            match contents {
                Some(bytes) => {
                    let _ = std::fs::write(path, bytes);
                }
                None => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        if !self.config_dir_existed {
            let _ = std::fs::remove_dir("/etc/crabpot");
        }
        if std::thread::panicking() {
            return;
        }
        for (path, contents) in &self.before {
            assert_eq!(
                std::fs::read(path).ok().as_ref(),
                contents.as_ref(),
                "{path} is not as it was before the test"
            );
        }
    }
}

#[test]
fn crabpot_install_puts_a_unit_that_systemd_analyze_verifies() {
    let _restore = RestoreOnDrop::snapshot();
    let (ok, out) = crabpot(&["install"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("/etc/systemd/system/crabpot-agent.service"),
        "{out}"
    );
    // The plain unit and the template (verified as an instance, `crabpot-agent@i`).
    for unit in [
        "/etc/systemd/system/crabpot-agent.service",
        "/etc/systemd/system/crabpot-agent@.service",
    ] {
        assert!(out.contains(unit), "{out}");
        let verify = Command::new("systemd-analyze")
            .args(["verify", unit])
            .output()
            .expect("systemd-analyze (Debian's systemd package)");
        assert!(
            verify.status.success(),
            "{unit}: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    let template = std::fs::read_to_string("/etc/systemd/system/crabpot-agent@.service")
        .expect("the template unit");
    for line in [
        "--config /etc/crabpot/%i.yml",
        "LogsDirectory=crabpot/%i",
        "StateDirectory=crabpot/%i",
    ] {
        assert!(template.contains(line), "the template lacks {line}");
    }
    let check = Command::new("/usr/local/bin/crabpot-agent")
        .args(["--check-config", "--config", "/etc/crabpot/monitor.yml"])
        .output()
        .expect("installed agent");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn under_systemd_the_agent_notifies_ready_and_pings_the_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let container = TestContainer::start("notify");
    let socket_path = std::env::temp_dir().join(crabpot_integration_tests::unique_name("notify"));
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .expect("timeout");
    let mut command = Command::new(agent_bin());
    command
        .args(["--container", &container.name, "--listen", "127.0.0.1:0"])
        .arg("--alerts-log")
        .arg(socket_path.with_extension("alerts.log"))
        .arg("--token-file")
        .arg(socket_path.with_extension("token"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000");
    let _agent = Agent::spawn(&mut command);
    let mut seen = Vec::new();
    wait_until("READY=1 then WATCHDOG=1", DEADLINE, || {
        let mut buf = [0u8; 256];
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        (seen.iter().any(|m| m == "READY=1") && seen.iter().any(|m| m == "WATCHDOG=1"))
            .then_some(())
    });
    let _ = std::fs::remove_file(&socket_path);
}

#[test]
fn a_real_prometheus_scrapes_an_alert_we_caused() {
    let container = TestContainer::start("prometheus");
    let agent_address = format!("127.0.0.1:{}", free_port());
    let agent = Agent::start(
        &container.name,
        &["--listen", &agent_address, "--no-auto-pause"],
    );
    agent.wait_guarding(&container.name, container.cgroup_id());
    agent.wait_for_log(&["HTTP listener on"], DEADLINE);
    let _ = container.exec_status(&["sh", "-c", "true"]);
    agent.wait_for_alert("the shell alert", |a| a["severity"] == "CRITICAL");

    let dir = std::env::temp_dir().join(crabpot_integration_tests::unique_name("prom"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: crabpot\n    \
             static_configs: [{{targets: ['{agent_address}']}}]\n"
        ),
    )
    .expect("write config");
    let prometheus_address = format!("127.0.0.1:{}", free_port());
    /// Stops the Prometheus server however the test ends.
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prometheus = Server(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prometheus_address}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start prometheus (Debian package prometheus)"),
    );
    let query = "/api/v1/query?query=crabpot_alerts_total%7Bseverity%3D%22CRITICAL%22%2Csource%3D%22processes%22%7D";
    let body = wait_until("Prometheus to have scraped the alert", DEADLINE, || {
        TcpStream::connect(&prometheus_address).ok()?;
        let (status, body) = http(&prometheus_address, "GET", query, None);
        (status.contains("200") && body.contains("\"value\"")).then_some(body)
    });
    let parsed: serde_json::Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("Prometheus answered non-JSON ({e}): {body}"));
    assert_eq!(parsed["data"]["result"][0]["value"][1], "1", "{parsed}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_webhook_retries_until_a_failing_server_accepts() {
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("addr");
    let bodies: Arc<Mutex<Vec<(u16, String)>>> = Arc::default();
    let seen = bodies.clone();
    // A local server that fails the first two requests with 500, then accepts.
    std::thread::spawn(move || {
        for (attempt, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let body = crabpot_integration_tests::http::read_body(&mut stream);
            let code = if attempt < 2 { 500 } else { 200 };
            if let Ok(mut list) = seen.lock() {
                list.push((code, body));
            }
            let _ = stream.write_all(
                format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    let container = TestContainer::start("webhook");
    let url = format!("http://{address}/hook");
    let agent = Agent::start(
        &container.name,
        &[
            "--webhook",
            &url,
            "--webhook-format",
            "slack",
            "--no-auto-pause",
        ],
    );
    agent.wait_guarding(&container.name, container.cgroup_id());
    let _ = container.exec_status(&["sh", "-c", "true"]);
    let delivered = wait_until("an accepted delivery", DEADLINE, || {
        let list = bodies.lock().ok()?;
        list.iter()
            .find(|(code, _)| *code == 200)
            .map(|(_, body)| body.clone())
    });
    let payload: serde_json::Value = serde_json::from_str(&delivered).expect("JSON body");
    let text = payload["text"].as_str().unwrap_or("");
    assert!(
        text.starts_with("[CRITICAL]") && text.contains("Suspicious process"),
        "{text}"
    );
    let attempts = bodies.lock().map(|l| l.len()).unwrap_or(0);
    assert!(attempts >= 3, "two failures, then success: {attempts}");
}
