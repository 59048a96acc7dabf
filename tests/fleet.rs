//! A fleet in one test: two agents guarding two containers on this host (one laid out as
//! the systemd instance `crabpot-agent@NAME` would be: /etc/crabpot/NAME.yml,
//! /var/log/crabpot/NAME/, /var/lib/crabpot/NAME/), scraped by one real Prometheus through
//! file_sd with the repo's rules (deploy/crabpot-alerts.yml, as shipped), routed by one real
//! Alertmanager with the repo's deploy/fleet/alertmanager.yml. A shell in each container
//! must reach Alertmanager as a CRITICAL of its own host, routed by host and severity.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, agent_bin, crabpot, free_port, unique_name, wait_until,
};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// GET `path`: the body of a 200 answer, or None (not up yet, or an error status).
fn get(address: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A server process stopped however the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(program: &str, args: &[String]) -> Server {
    Server(
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} (Debian package): {e}")),
    )
}

/// Paths removed when the test ends (files, then directories if left empty).
struct Cleanup {
    trees: Vec<PathBuf>,
    files: Vec<PathBuf>,
    empty_dirs: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for tree in &self.trees {
            let _ = std::fs::remove_dir_all(tree);
        }
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
        for dir in &self.empty_dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn check(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shipped fleet files are valid as they are.
#[test]
fn the_shipped_fleet_configuration_is_valid() {
    check("promtool", &["check", "rules", "deploy/crabpot-alerts.yml"]);
    check(
        "promtool",
        &["check", "config", "deploy/fleet/prometheus.yml"],
    );
    check("amtool", &["check-config", "deploy/fleet/alertmanager.yml"]);
    for host in ["host-a", "host-b"] {
        let path = repo().join(format!("deploy/fleet/targets/{host}.json"));
        let targets = json(&std::fs::read_to_string(&path).expect("targets file"));
        assert_eq!(targets[0]["labels"]["host"], host, "{}", path.display());
    }
}

/// Agent `b` as the instance `crabpot-agent@NAME` runs it: its configuration in
/// /etc/crabpot/NAME.yml (container and port), its files in the directories systemd would
/// pass, and no --alerts-log or --token-file.
fn instance_agent(name: &str, container: &str, address: &str, cleanup: &mut Cleanup) -> Agent {
    for dir in ["/etc/crabpot", "/var/log/crabpot", "/var/lib/crabpot"] {
        if !Path::new(dir).exists() {
            cleanup.empty_dirs.push(PathBuf::from(dir));
        }
    }
    let config = PathBuf::from(format!("/etc/crabpot/{name}.yml"));
    let logs = Path::new("/var/log/crabpot").join(name);
    let state = Path::new("/var/lib/crabpot").join(name);
    cleanup.files.push(config.clone());
    cleanup.trees.extend([logs.clone(), state.clone()]);
    std::fs::create_dir_all("/etc/crabpot").expect("/etc/crabpot");
    for dir in [&logs, &state] {
        std::fs::create_dir_all(dir).expect("the instance's directories");
    }
    std::fs::write(
        &config,
        format!("container: {container}\nlisten: {address}\nauto_pause: false\n"),
    )
    .expect("the instance's configuration");
    let mut command = Command::new(agent_bin());
    command
        .args(["--container", container, "--events", "json", "--config"])
        .arg(&config)
        .env("LOGS_DIRECTORY", &logs)
        .env("STATE_DIRECTORY", &state)
        .env("CONFIGURATION_DIRECTORY", "/etc/crabpot");
    let mut agent = Agent::spawn(&mut command);
    agent.alerts_log = logs.join("alerts.log");
    agent
}

struct Fleet {
    prometheus: String,
    alertmanager: String,
    _servers: Vec<Server>,
}

/// Alertmanager with the repo's configuration, Prometheus with file_sd targets for both
/// agents (`host` labels host-a and host-b), the repo's rules and 1 s intervals.
fn start_fleet(dir: &Path, agents: [(&str, &str); 2]) -> Fleet {
    let alertmanager = format!("127.0.0.1:{}", free_port());
    let am = serve(
        "prometheus-alertmanager",
        &[
            format!(
                "--config.file={}",
                repo().join("deploy/fleet/alertmanager.yml").display()
            ),
            format!("--storage.path={}", dir.join("am").display()),
            format!("--web.listen-address={alertmanager}"),
            // No gossip: a single Alertmanager needs no cluster port.
            "--cluster.listen-address=".to_string(),
        ],
    );
    let targets = dir.join("targets");
    std::fs::create_dir_all(&targets).expect("targets dir");
    for (host, address) in agents {
        let entry = serde_json::json!([{"targets": [address], "labels": {"host": host}}]);
        std::fs::write(targets.join(format!("{host}.json")), entry.to_string())
            .expect("targets file");
    }
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: ['{rules}']\n\
             alerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['{alertmanager}']}}]\n\
             scrape_configs:\n  - job_name: crabpot\n    file_sd_configs:\n      \
             - files: ['{targets}/*.json']\n",
            rules = repo().join("deploy/crabpot-alerts.yml").display(),
            targets = targets.display(),
        ),
    )
    .expect("prometheus.yml");
    check("promtool", &["check", "config", &config.to_string_lossy()]);
    let prometheus = format!("127.0.0.1:{}", free_port());
    let prom = serve(
        "prometheus",
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            format!("--web.listen-address={prometheus}"),
        ],
    );
    Fleet {
        prometheus,
        alertmanager,
        _servers: vec![prom, am],
    }
}

/// Prometheus's result vector for an instant query.
fn query(prometheus: &str, promql: &str) -> Vec<Value> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    get(prometheus, &format!("/api/v1/query?query={encoded}"))
        .map(|body| {
            json(&body)["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// CrabPotCriticalAlert as Alertmanager holds it, by `host`.
fn critical_in_alertmanager(alertmanager: &str, host: &str) -> Option<Value> {
    let body = get(alertmanager, "/api/v2/alerts")?;
    json(&body).as_array()?.iter().find_map(|alert| {
        (alert["labels"]["alertname"] == "CrabPotCriticalAlert" && alert["labels"]["host"] == host)
            .then(|| alert.clone())
    })
}

#[test]
fn two_agents_alerts_reach_one_alertmanager_through_one_prometheus() {
    let mut cleanup = Cleanup {
        trees: Vec::new(),
        files: Vec::new(),
        empty_dirs: Vec::new(),
    };
    let dir = std::env::temp_dir().join(unique_name("fleet"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    cleanup.trees.push(dir.clone());
    let a = TestContainer::start("fleet-a");
    let b = TestContainer::start("fleet-b");
    let address_a = format!("127.0.0.1:{}", free_port());
    let address_b = format!("127.0.0.1:{}", free_port());
    let agent_a = Agent::start(&a.name, &["--listen", &address_a, "--no-auto-pause"]);
    let instance = unique_name("fleet-b");
    let agent_b = instance_agent(&instance, &b.name, &address_b, &mut cleanup);
    for (agent, container) in [(&agent_a, &a), (&agent_b, &b)] {
        agent.wait_guarding(&container.name, container.cgroup_id());
        agent.wait_for_log(&["HTTP listener on"], DEADLINE);
    }
    // The instance found its port in its file and its token in its state directory.
    agent_b.wait_for_log(&["HTTP listener on", &address_b], DEADLINE);
    let state_b = Path::new("/var/lib/crabpot").join(&instance);
    assert!(
        state_b.join("dashboard.token").exists(),
        "token under the state directory"
    );

    let fleet = start_fleet(&dir, [("host-a", &address_a), ("host-b", &address_b)]);
    // Both scraped, every CRITICAL counter at 0: the baseline `increase()` needs.
    wait_until("Prometheus to scrape both agents", DEADLINE, || {
        let up = query(&fleet.prometheus, "up{job=\"crabpot\"} == 1");
        let zero = query(
            &fleet.prometheus,
            "crabpot_alerts_total{severity=\"CRITICAL\",source=\"processes\"} == 0",
        );
        (up.len() == 2 && zero.len() == 2).then_some(())
    });
    // Benign: nothing critical yet, in either log or in Alertmanager.
    for agent in [&agent_a, &agent_b] {
        assert!(
            !agent.alerts().iter().any(|x| x["severity"] == "CRITICAL"),
            "{:?}",
            agent.alerts()
        );
    }
    assert!(
        get(&fleet.alertmanager, "/api/v2/alerts")
            .is_some_and(|b| !b.contains("CrabPotCriticalAlert"))
    );

    // A denylisted shell in each container (stopped at its exec: not waited for).
    let _shell_a = a.spawn_exec(&["sh", "-c", "true"]);
    let _shell_b = b.spawn_exec(&["sh", "-c", "true"]);
    for agent in [&agent_a, &agent_b] {
        agent.wait_for_alert("the shell's CRITICAL", |x| {
            x["severity"] == "CRITICAL" && x["source"] == "processes"
        });
    }
    let deadline = Duration::from_secs(40);
    let (alert_a, alert_b) = wait_until("both hosts' CRITICAL in Alertmanager", deadline, || {
        Some((
            critical_in_alertmanager(&fleet.alertmanager, "host-a")?,
            critical_in_alertmanager(&fleet.alertmanager, "host-b")?,
        ))
    });
    // Each from its own agent, routed by host and severity (deploy/fleet/alertmanager.yml).
    assert_eq!(
        alert_a["labels"]["instance"],
        address_a.as_str(),
        "{alert_a}"
    );
    assert_eq!(
        alert_b["labels"]["instance"],
        address_b.as_str(),
        "{alert_b}"
    );
    for alert in [&alert_a, &alert_b] {
        assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
        assert_eq!(alert["labels"]["source"], "processes", "{alert}");
    }
    assert_eq!(alert_a["receivers"][0]["name"], "pager", "{alert_a}");
    assert_eq!(alert_b["receivers"][0]["name"], "staging", "{alert_b}");

    // The operator's command finds the instance's files and port by its name alone.
    let (ok, out) = crabpot(&["alerts", "--instance", &instance, "--json"]);
    assert!(ok && out.contains("\"CRITICAL\""), "{out}");
    let (ok, out) = crabpot(&["status", "--instance", &instance]);
    assert!(
        ok && out.contains(&format!("container: {}", b.name)),
        "{out}"
    );
    let (ok, out) = crabpot(&["trust", "reset", "--instance", &instance]);
    assert!(ok, "the instance's token was found: {out}");
    let (ok, out) = crabpot(&["alerts", "--instance", "no-such-instance"]);
    assert!(
        ok && out.contains("tried /var/log/crabpot/no-such-instance/alerts.log"),
        "{out}"
    );
    drop((agent_a, agent_b));
}
