//! The six monitor channels, the alerts log, auto-pause and the `crabpot` command, against a
//! real dockerd and container. Every alert is read back from the agent's JSON-lines log.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crabpot_integration_tests::{
    DEADLINE, TestContainer, agent_bin, container::docker, guarded, wait_until,
};
use serde_json::Value;

fn is(alert: &Value, severity: &str, source: &str) -> bool {
    alert["severity"] == severity && alert["source"] == source
}

fn message(alert: &Value) -> &str {
    alert["message"].as_str().unwrap_or("")
}

fn crabpot(args: &[&str]) -> (bool, String, String) {
    let bin = agent_bin().with_file_name("crabpot");
    let out = Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_shell_is_critical_and_freezes_the_container_within_a_second() {
    let (container, agent) = guarded(TestContainer::start("shell"), &[]);
    let started = Instant::now();
    // Not waited for: a frozen shell never returns.
    let mut exec = Command::new("docker")
        .args(["exec", &container.name, "sh", "-c", "sleep 30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker exec");
    wait_until("the container to be paused", Duration::from_secs(1), || {
        container.is_paused().then_some(())
    });
    let frozen_after = started.elapsed();
    let _ = exec.kill();
    let _ = exec.wait();

    let alert = agent.wait_for_alert("the shell alert", |a| is(a, "CRITICAL", "processes"));
    assert!(message(&alert).contains("/bin/sh"), "{alert}");
    assert_eq!(alert["details"]["executable"], "sh");
    assert_eq!(alert["details"]["detected_by"], "ebpf");
    assert_eq!(alert["container"]["name"], container.name.as_str());
    let follow_up = agent.wait_for_alert("the auto-pause announcement", |a| {
        is(a, "CRITICAL", "policy") && message(a).contains("auto-paused")
    });
    assert_eq!(follow_up["details"]["trigger_source"], "processes");
    let announcements = agent
        .alerts()
        .into_iter()
        .filter(|a| message(a).contains("auto-paused"))
        .count();
    assert_eq!(announcements, 1, "one announcement per pause");
    eprintln!("frozen {frozen_after:?} after docker exec started");

    let (ok, out, err) = crabpot(&[
        "alerts",
        "--last",
        "5",
        "--severity",
        "CRITICAL",
        "--file",
        &agent.alerts_log.to_string_lossy(),
    ]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("[CRITICAL]")
            && lines[0].contains("processes: Suspicious process detected: /bin/sh"),
        "{out}"
    );
    assert!(lines[1].contains("policy: Container auto-paused"), "{out}");

    // `crabpot resume` unfreezes; the agent notices and guards again.
    let (ok, out, err) = crabpot(&["resume", "--container", &container.name]);
    assert!(ok && out.contains("resumed"), "{out}{err}");
    assert!(!container.is_paused());
    agent.wait_for_log(
        &[&format!("container `{}` resumed", container.name)],
        DEADLINE,
    );
    // Stopped in the kernel: the exec never returns.
    let _shell = container.spawn_exec(&["sh", "-c", "true"]);
    wait_until("paused again after a second shell", DEADLINE, || {
        container.is_paused().then_some(())
    });
    docker(&["unpause", &container.name]);
}

#[test]
fn no_auto_pause_only_alerts() {
    let (container, agent) = guarded(TestContainer::start("nopause"), &["--no-auto-pause"]);
    container.exec(&["sh", "-c", "true"]);
    agent.wait_for_alert("the shell alert", |a| is(a, "CRITICAL", "processes"));
    // The alert is written after the pause decision would have been taken.
    container.exec(&["cat", "/etc/group"]);
    assert!(!container.is_paused());
    assert!(
        !agent
            .alerts()
            .iter()
            .any(|a| message(a).contains("auto-paused"))
    );
}

#[test]
fn a_cpu_burn_raises_the_sustained_cpu_warning() {
    let (container, agent) = guarded(TestContainer::start("cpu"), &["--cpu-sustain-seconds", "3"]);
    // Two burners: the sustained share stays above the threshold even when the other tests
    // of this binary (run in parallel) take part of the host's two cores.
    for _ in 0..2 {
        docker(&[
            "exec",
            "-d",
            &container.name,
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
        ]);
    }
    let alert = wait_until("the CPU warning", Duration::from_secs(30), || {
        agent
            .alerts()
            .into_iter()
            .find(|a| is(a, "WARNING", "stats") && message(a).contains("CPU"))
    });
    assert!(
        alert["details"]["cpu_percent"].as_f64().unwrap_or(0.0) > 80.0,
        "{alert}"
    );
    assert!(
        alert["details"]["sustained_seconds"].as_u64().unwrap_or(0) >= 3,
        "{alert}"
    );
    let _ = container.exec_status(&["killall", "dd"]);
}

#[test]
fn filling_memory_towards_the_limit_raises_the_memory_warning() {
    let container = TestContainer::named("memory");
    container.run(&[
        "--memory",
        "48m",
        "--memory-swap",
        "48m",
        "--shm-size",
        "64m",
    ]);
    let (container, agent) = guarded(container, &[]);
    // tmpfs pages are charged to the container and are not file cache it could drop.
    container.exec(&[
        "dd",
        "if=/dev/zero",
        "of=/dev/shm/fill",
        "bs=1M",
        "count=44",
    ]);
    let alert = wait_until("the memory warning", Duration::from_secs(30), || {
        agent
            .alerts()
            .into_iter()
            .find(|a| is(a, "WARNING", "stats") && message(a).contains("Memory"))
    });
    assert!(
        alert["details"]["memory_percent"].as_f64().unwrap_or(0.0) > 85.0,
        "{alert}"
    );
}

#[test]
fn a_connection_to_the_bridge_warns_and_loopback_does_not() {
    let (container, agent) = guarded(TestContainer::start("net"), &[]);
    let gateway = container.gateway();
    container.exec(&[
        "wget",
        "-q",
        "-O",
        "/dev/null",
        "http://127.0.0.1:18789/health",
    ]);
    let _ = container.exec_status(&[
        "wget",
        "-q",
        "-O",
        "/dev/null",
        &format!("http://{gateway}:18790/"),
    ]);
    let alert = agent.wait_for_alert("the bridge warning", |a| is(a, "WARNING", "network"));
    assert_eq!(alert["details"]["address"], gateway.as_str());
    assert_eq!(alert["details"]["port"], 18790);
    assert_eq!(alert["details"]["comm"], "wget");
    let loopback: Vec<Value> = agent
        .alerts()
        .into_iter()
        .filter(|a| a["source"] == "network" && a.to_string().contains("127.0.0.1"))
        .collect();
    assert!(loopback.is_empty(), "{loopback:?}");
}

#[test]
fn the_socket_table_poll_sees_a_lasting_outbound_connection() {
    let (container, agent) = guarded(
        TestContainer::start("sockets"),
        &["--network-poll-seconds", "1", "--rule", "connect=alert"],
    );
    let gateway = container.gateway();
    // A host listener on the bridge that accepts and never answers: the connection lasts.
    let listener = std::net::TcpListener::bind((gateway.as_str(), 0)).expect("bind on the bridge");
    let port = listener.local_addr().expect("addr").port();
    let url = format!("http://{gateway}:{port}/");
    docker(&[
        "exec",
        "-d",
        &container.name,
        "wget",
        "-q",
        "-O",
        "/dev/null",
        &url,
    ]);
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let _held = wait_until("the container's connection", DEADLINE, || {
        listener.accept().ok().map(|(stream, _)| stream)
    });
    let alert = agent.wait_for_alert("the socket-table warning", |a| {
        is(a, "WARNING", "network") && a["details"]["detected_by"] == "socket table"
    });
    assert_eq!(alert["details"]["port"], port);
    assert_eq!(alert["details"]["protocol"], "tcp");
}

#[test]
fn a_fatal_log_line_warns_with_its_text() {
    let (container, agent) = guarded(TestContainer::start("logs"), &[]);
    container.put_file("/tmp/msg", b"all good\nFATAL: boom\n");
    // Write to the main process's stdout without running a shell in the container.
    container.exec(&["dd", "if=/tmp/msg", "of=/proc/1/fd/1"]);
    let alert = agent.wait_for_alert("the log warning", |a| is(a, "WARNING", "logs"));
    assert_eq!(alert["details"]["line"], "FATAL: boom");
    assert!(message(&alert).contains("FATAL: boom"), "{alert}");
    assert_eq!(
        agent
            .alerts()
            .iter()
            .filter(|a| a["source"] == "logs")
            .count(),
        1
    );
}

/// A container whose health server can be killed without stopping it.
fn health_container(prefix: &str) -> TestContainer {
    let container = TestContainer::named(prefix);
    container.run_with(
        &[
            "--health-interval",
            "1s",
            "--health-timeout",
            "1s",
            "--health-retries",
            "1",
        ],
        &["sleep", "100000"],
    );
    container.exec(&["httpd", "-p", "18789", "-h", "/www"]);
    wait_until("the container to be healthy", DEADLINE, || {
        (container.inspect("{{.State.Health.Status}}") == "healthy").then_some(())
    });
    container
}

#[test]
fn killing_the_health_server_is_critical_after_two_failures() {
    let (container, agent) = guarded(health_container("health"), &["--health-poll-seconds", "1"]);
    container.exec(&["killall", "httpd"]);
    let alert = agent.wait_for_alert("the health alert", |a| is(a, "CRITICAL", "health"));
    assert!(
        alert["details"]["consecutive_failures"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "{alert}"
    );
    wait_until("auto-pause after the health alert", DEADLINE, || {
        container.is_paused().then_some(())
    });
}

#[test]
fn pausing_does_not_raise_a_health_alert() {
    let (container, agent) = guarded(
        health_container("healthpause"),
        &["--health-poll-seconds", "1"],
    );
    docker(&["pause", &container.name]);
    wait_until(
        "Docker to call the paused container unhealthy",
        DEADLINE,
        || (container.inspect("{{.State.Health.Status}}") == "unhealthy").then_some(()),
    );
    docker(&["unpause", &container.name]);
    wait_until("healthy again after unpause", DEADLINE, || {
        (container.inspect("{{.State.Health.Status}}") == "healthy").then_some(())
    });
    // A later alert proves the agent has processed everything before it (the shell is
    // stopped in the kernel: not waited for).
    let _shell = container.spawn_exec(&["sh", "-c", "true"]);
    agent.wait_for_alert("a marker alert", |a| is(a, "CRITICAL", "processes"));
    let health: Vec<Value> = agent
        .alerts()
        .into_iter()
        .filter(|a| a["source"] == "health")
        .collect();
    assert!(health.is_empty(), "{health:?}");
}

#[test]
fn docker_kill_and_restart_are_operator_warnings_not_attacks() {
    let (container, agent) = guarded(TestContainer::start("lifecycle"), &[]);
    docker(&["restart", "-t", "1", &container.name]);
    let restart = agent.wait_for_alert("the restart", |a| {
        is(a, "INFO", "events") && a["details"]["event"] == "restart"
    });
    assert_eq!(restart["details"]["event"], "restart");
    agent.wait_for_alert("the start info", |a| {
        is(a, "INFO", "events") && a["details"]["event"] == "start"
    });
    assert!(
        !container.is_paused(),
        "a restart's own die/kill must not freeze the new run"
    );
    docker(&["kill", &container.name]);
    let kill = wait_until("the kill warning", DEADLINE, || {
        agent.alerts().into_iter().rev().find(|a| {
            is(a, "WARNING", "events")
                && a["details"]["event"] == "kill"
                && a["details"]["signal"] == "9"
        })
    });
    assert_eq!(kill["container"]["name"], container.name.as_str());
    assert!(message(&kill).contains("through Docker"), "{kill}");
    wait_until("the kill's die, as INFO", DEADLINE, || {
        let dies = agent
            .alerts()
            .into_iter()
            .filter(|a| is(a, "INFO", "events") && a["details"]["event"] == "die")
            .count();
        (dies == 2).then_some(())
    });
    let critical: Vec<Value> = agent
        .alerts()
        .into_iter()
        .filter(|a| a["severity"] == "CRITICAL")
        .collect();
    assert!(critical.is_empty(), "{critical:?}");
}
