//! Start-up: the errors a user will hit say what is wrong and how to fix it, and a missing
//! container is waited for.
use std::{process::Command, time::Duration};

use crabpot_integration_tests::{Agent, TestContainer, agent_bin};

#[test]
fn without_docker_the_agent_says_where_it_looked() {
    let mut agent = Agent::spawn(
        Command::new(agent_bin())
            .args([
                "--container",
                "nope",
                "--alerts-log",
                "/tmp/crabpot-startup-test/a.log",
            ])
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
    );
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    agent.wait_for_log(
        &[
            "cannot reach the Docker engine at unix:///nonexistent/docker.sock",
            "Is dockerd running?",
        ],
        Duration::from_secs(5),
    );
}

#[test]
fn without_root_the_agent_says_so() {
    let mut agent = Agent::spawn(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(agent_bin()),
    );
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    agent.wait_for_log(
        &["must run as root", "sudo crabpot-agent"],
        Duration::from_secs(5),
    );
}

#[test]
fn bad_ring_buffer_size_is_refused_with_the_rule() {
    let mut agent = Agent::spawn(Command::new(agent_bin()).args([
        "--container",
        "nope",
        "--ring-buffer-bytes",
        "5000",
        "--alerts-log",
        "/tmp/crabpot-startup-test/a.log",
    ]));
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    agent.wait_for_log(
        &["ring buffer size 5000", "power of two"],
        Duration::from_secs(5),
    );
}

#[test]
fn a_missing_container_is_waited_for_then_guarded() {
    let container = TestContainer::named("late");
    let agent = Agent::start(&container.name, &[]);
    agent.wait_for_log(
        &[&format!(
            "container `{}` not found; waiting",
            container.name
        )],
        Duration::from_secs(20),
    );
    container.run(&[]);
    let cgroup_id = container.cgroup_id();
    agent.wait_guarding(&container.name, cgroup_id);
    container.exec(&["cat", "/etc/passwd"]);
    agent.wait_for_event("an event from the late container", |e| {
        e["kind"] == "open" && e["path"] == "/etc/passwd" && e["cgroup_id"] == cgroup_id
    });
}

#[test]
fn poll_only_mode_still_catches_a_shell_through_docker_top() {
    let container = TestContainer::start("pollonly");
    let agent = Agent::start(
        &container.name,
        &["--no-bpf", "--process-poll-seconds", "1", "--no-auto-pause"],
    );
    agent.wait_for_log(&["running in poll-only mode"], Duration::from_secs(20));
    agent.wait_guarding(&container.name, container.cgroup_id());
    crabpot_integration_tests::container::docker(&[
        "exec",
        "-d",
        &container.name,
        "sh",
        "-c",
        "sleep 30; true",
    ]);
    let alert = agent.wait_for_alert("the backstop alert", |a| {
        a["severity"] == "CRITICAL" && a["details"]["detected_by"] == "docker top"
    });
    assert!(
        alert["message"].as_str().unwrap_or("").contains("sh"),
        "{alert}"
    );
    agent.wait_for_alert("the poll-only warning", |a| {
        a["message"]
            .as_str()
            .unwrap_or("")
            .contains("poll-only mode")
    });
    assert!(
        agent.events().is_empty(),
        "no kernel events in poll-only mode"
    );
}
