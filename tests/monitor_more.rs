//! More of the monitor: the docker top backstop, the alerts log under SIGKILL, and WSL2
//! toasts (with a stand-in powershell.exe, since Windows is not here).
use std::process::Command;

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, agent_bin, container::docker, guarded, wait_until,
};
use serde_json::Value;

fn is(alert: &Value, severity: &str, source: &str) -> bool {
    alert["severity"] == severity && alert["source"] == source
}

fn message(alert: &Value) -> &str {
    alert["message"].as_str().unwrap_or("")
}

#[test]
fn the_docker_top_backstop_catches_a_shell_started_before_the_agent() {
    let container = TestContainer::start("backstop");
    docker(&["exec", "-d", &container.name, "sh", "-c", "sleep 100; true"]);
    wait_until("the shell to run", DEADLINE, || {
        docker(&["top", &container.name])
            .contains("sh -c sleep 100; true")
            .then_some(())
    });
    let (container, agent) = guarded(container, &["--process-poll-seconds", "1"]);
    let alert = agent.wait_for_alert("the backstop alert", |a| {
        is(a, "CRITICAL", "processes") && a["details"]["detected_by"] == "docker top"
    });
    assert!(message(&alert).contains("sh (shell)"), "{alert}");
    wait_until("auto-pause", DEADLINE, || {
        container.is_paused().then_some(())
    });
    docker(&["unpause", &container.name]);
}

/// Complete lines of a JSON-lines file, and the unterminated tail if any.
fn lines_and_tail(path: &std::path::Path) -> (Vec<String>, String) {
    let text = String::from_utf8(std::fs::read(path).expect("read alerts log")).expect("utf-8");
    let mut lines: Vec<String> = text.split('\n').map(String::from).collect();
    let tail = lines.pop().unwrap_or_default();
    (lines, tail)
}

#[test]
fn sigkill_mid_burst_leaves_no_torn_line() {
    let (container, agent) = guarded(TestContainer::start("burst"), &[]);
    let burst: String = (0..20_000)
        .map(|i| format!("FATAL: burst line {i}\n"))
        .collect();
    container.put_file("/tmp/burst", burst.as_bytes());
    docker(&[
        "exec",
        "-d",
        &container.name,
        "dd",
        "if=/tmp/burst",
        "of=/proc/1/fd/1",
        "bs=64k",
    ]);
    wait_until("the burst to be under way", DEADLINE, || {
        (lines_and_tail(&agent.alerts_log).0.len() > 200).then_some(())
    });
    Command::new("kill")
        .args(["-9", &agent.pid().to_string()])
        .status()
        .expect("kill -9 the agent");
    let (lines, tail) = lines_and_tail(&agent.alerts_log);
    for line in &lines {
        let alert: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a complete line is not a whole alert ({e}): {line}"));
        // The burst's log alerts, and the posture findings raised at attach.
        assert!(
            matches!(alert["source"].as_str(), Some("logs" | "posture")),
            "{line}"
        );
    }
    assert!(
        lines.len() < 20_000,
        "killed mid-burst: {} lines",
        lines.len()
    );
    // A SIGKILL between the pages of one write could leave an unterminated tail; the next
    // agent removes it before appending, so the file never keeps a torn line.
    let next = Agent::spawn(
        Command::new(agent_bin())
            .args(["--container", &container.name, "--alerts-log"])
            .arg(&agent.alerts_log),
    );
    next.wait_guarding(&container.name, container.cgroup_id());
    let (after, tail_after) = lines_and_tail(&agent.alerts_log);
    assert!(tail_after.is_empty(), "torn tail left: {tail_after}");
    assert!(after.len() >= lines.len() || !tail.is_empty());
    for line in &after {
        serde_json::from_str::<Value>(line).expect("whole alert");
    }
}

#[test]
fn critical_alerts_raise_a_toast_whose_text_never_becomes_code() {
    use std::os::unix::fs::PermissionsExt as _;
    let container = TestContainer::start("toast");
    // A stand-in powershell.exe (Windows is not here) that records what it receives.
    let dir = std::env::temp_dir().join(crabpot_integration_tests::unique_name("toast"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let stand_in = dir.join("powershell.exe");
    std::fs::write(
        &stand_in,
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$CRABPOT_TOAST_RECORD.args\"\n\
         printf '%s' \"$CRABPOT_TOAST_TEXT\" > \"$CRABPOT_TOAST_RECORD.text\"\n",
    )
    .expect("write stand-in");
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let record = dir.join("record");
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new(agent_bin());
    command
        .args([
            "--container",
            &container.name,
            "--toasts",
            "on",
            "--no-auto-pause",
        ])
        .args(["--listen", "127.0.0.1:0", "--alerts-log"])
        .arg(dir.join("alerts.log"))
        .arg("--token-file")
        .arg(dir.join("token"))
        .env("PATH", &path)
        .env("CRABPOT_TOAST_RECORD", &record);
    let agent = Agent::spawn(&mut command);
    agent.wait_guarding(&container.name, container.cgroup_id());

    // A shell whose path holds quotes, $(...), backticks and a newline.
    let hostile = "q\"'$(id)`uname`\nz";
    let local = dir.join(hostile);
    std::fs::create_dir_all(&local).expect("hostile dir");
    std::os::unix::fs::symlink("/bin/busybox", local.join("sh")).expect("symlink");
    docker(&[
        "cp",
        &local.to_string_lossy(),
        &format!("{}:/tmp/", container.name),
    ]);
    let shell = format!("/tmp/{hostile}/sh");
    let _ = container.exec_status(&[&shell, "-c", "true"]);

    let text = wait_until("the toast", DEADLINE, || {
        std::fs::read_to_string(record.with_extension("text")).ok()
    });
    assert!(
        text.contains(&shell),
        "the text arrives unaltered: {text:?}"
    );
    let args = std::fs::read_to_string(record.with_extension("args")).expect("args");
    assert!(args.contains("-EncodedCommand"), "{args}");
    assert!(
        !args.contains("$(id)") && !args.contains("uname"),
        "no text in the command: {args}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
