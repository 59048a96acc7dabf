//! dockerd goes away and comes back while the agent runs: the agent keeps going and alerts
//! again afterwards. Its own test binary, so no other test shares the daemon's restart.
use std::{
    fs::OpenOptions,
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    time::Duration,
};

use crabpot_integration_tests::{Agent, TestContainer, container::docker_status, wait_until};

const DOCKERD_LOG: &str = "/var/log/crabpot-dockerd.log";

fn docker_answers() -> bool {
    docker_status(&["info", "--format", "{{.ID}}"])
}

// dockerd must outlive this test process: it is deliberately not waited for.
#[allow(clippy::zombie_processes)]
fn start_dockerd() {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(DOCKERD_LOG)
        .expect("log");
    let log_err = log.try_clone().expect("log");
    Command::new("dockerd")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .expect("start dockerd");
    wait_until("dockerd to answer", Duration::from_secs(60), || {
        docker_answers().then_some(())
    });
}

/// True once the process is gone or a zombie (exited, not yet reaped by its parent).
fn has_exited(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses, which may itself hold ") ".
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Brings dockerd back even when the test fails half-way.
struct DaemonGuard;

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if !docker_answers() {
            start_dockerd();
        }
    }
}

#[test]
fn the_agent_survives_a_dockerd_restart_and_alerts_afterwards() {
    let container = TestContainer::named("daemon");
    container.run(&["--restart", "always"]);
    let agent = Agent::start(&container.name, &[]);
    agent.wait_guarding(&container.name, container.cgroup_id());

    let _guard = DaemonGuard;
    let pid = String::from_utf8_lossy(
        &Command::new("pidof")
            .arg("dockerd")
            .output()
            .expect("pidof")
            .stdout,
    )
    .trim()
    .to_string();
    assert!(!pid.is_empty(), "dockerd is running");
    Command::new("kill")
        .arg(&pid)
        .status()
        .expect("kill dockerd");
    // Its pid file goes with the process: a new daemon can only start after it is gone.
    // When dockerd is the unreaped child of whoever started it (`cargo xtask test` in CI),
    // it lingers as a zombie after exiting: that counts as gone.
    wait_until("dockerd to exit", Duration::from_secs(60), || {
        has_exited(&pid).then_some(())
    });
    start_dockerd();

    // The container comes back (restart policy) in a new cgroup; the agent follows it.
    let new_id = wait_until(
        "the container to run again",
        Duration::from_secs(60),
        || docker_status(&["exec", &container.name, "true"]).then(|| container.cgroup_id()),
    );
    agent.wait_guarding(&container.name, new_id);
    // Stopped in the kernel: its docker exec never returns, so it is not waited for.
    let _shell = container.spawn_exec(&["sh", "-c", "true"]);
    let alert = agent.wait_for_alert("a shell alert after the daemon restart", |a| {
        a["severity"] == "CRITICAL" && a["source"] == "processes"
    });
    assert_eq!(alert["container"]["name"], container.name.as_str());
    let _ = docker_status(&["unpause", &container.name]);
}
