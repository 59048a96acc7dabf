//! Stopping in the kernel (issues 14 and 15): a denylisted program is stopped (or, under
//! `exec=block`, killed) at its exec before its first instruction; the container is then
//! frozen, and Docker's pause still works afterwards. The executed file is identified by
//! the kernel (a fileless shell that exits at once is still a shell), a relative /proc
//! open is resolved by the kernel, and opens the policy does not need never leave it.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, agent_bin, container::docker, enforced, free_port, guarded,
    wait_until,
};
use serde_json::Value;

/// A script whose first command leaves a mark: if the mark exists, the shell ran.
const SCRIPT: &[u8] = b"#!/bin/sh\necho ran > /tmp/kstop-mark\nsleep 30\n";

/// Start `docker exec` without waiting: a stopped program never returns.
fn spawn_exec(container: &TestContainer, command: &[&str]) -> Child {
    Command::new("docker")
        .args(["exec", &container.name])
        .args(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker exec")
}

/// Run a docker command that must finish within `limit` (a FREEZING cgroup would hang it).
fn docker_within(limit: Duration, args: &[&str]) -> bool {
    let mut child = Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker");
    let status = wait_until(&format!("docker {args:?}"), limit, || {
        child.try_wait().ok().flatten()
    });
    status.success()
}

fn marked(container: &TestContainer) -> bool {
    container.exec_status(&["test", "-e", "/tmp/kstop-mark"])
}

fn exec_events(agent: &Agent) -> Vec<Value> {
    agent
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "exec")
        .collect()
}

fn is_critical_process(alert: &Value) -> bool {
    alert["severity"] == "CRITICAL" && alert["source"] == "processes"
}

#[test]
fn a_shell_is_stopped_in_the_kernel_and_docker_pause_still_works() {
    let container = TestContainer::start("kstop");
    container.put_file("/tmp/job.sh", SCRIPT);
    let (container, agent) = guarded(container, &[]);
    // Benign programs of the image, through busybox's applets and a direct exec: never
    // stopped, never frozen.
    container.exec(&["chmod", "755", "/tmp/job.sh"]);
    container.exec(&["ls", "/"]);
    container.exec(&[
        "crabpot-evade",
        "exec",
        "/bin/busybox",
        "cat",
        "/etc/hostname",
    ]);
    // The events arrive a moment after each docker exec returns.
    let benign = wait_until("the three benign execs' events", DEADLINE, || {
        let events = exec_events(&agent);
        (events.len() >= 3).then_some(events)
    });
    assert!(
        benign.iter().all(|e| e["kernel_action"] == "none"),
        "{benign:?}"
    );

    // A script: the kernel runs its #! shell; stopped before `echo` runs.
    let mut client = spawn_exec(&container, &["/tmp/job.sh"]);
    let alert = agent.wait_for_alert("the script's shell alert", is_critical_process);
    assert_eq!(alert["details"]["kernel_action"], "stopped", "{alert}");
    assert!(
        alert["message"]
            .as_str()
            .is_some_and(|m| m.contains("stopped in kernel")),
        "{alert}"
    );
    wait_until("the container frozen", DEADLINE, || {
        container.is_paused().then_some(())
    });
    assert!(!container.is_paused() || docker_within(DEADLINE, &["unpause", &container.name]));
    assert!(!marked(&container), "the script's first command ran");
    let listing = container.exec(&["ps", "-o", "stat,args"]);
    assert!(
        listing
            .lines()
            .any(|l| l.trim_start().starts_with('T') && l.contains("job.sh")),
        "the shell is not stopped:\n{listing}"
    );
    // Docker's own freeze and thaw on top of the stopped task (no stuck FREEZING), and a
    // later `docker exec` of a benign command.
    assert!(docker_within(DEADLINE, &["pause", &container.name]));
    assert!(docker_within(DEADLINE, &["unpause", &container.name]));
    let (code, out) = container.exec_output(&["cat", "/etc/hostname"]);
    assert_eq!(code, 0, "{out}");
    let _ = client.kill();
    let _ = client.wait();
}

#[test]
fn exec_block_kills_a_denylisted_program_before_it_runs() {
    let container = TestContainer::start("kblock");
    container.put_file("/tmp/job.sh", SCRIPT);
    container.exec(&["chmod", "755", "/tmp/job.sh"]);
    let (container, agent) = enforced(container, &["--no-auto-pause", "--rule", "exec=block"]);
    agent.wait_for_log(&["exec=block/tracepoint-kill"], DEADLINE);
    for command in [
        &["/tmp/job.sh"][..],
        &["sh", "-c", "echo ran > /tmp/kstop-mark"],
    ] {
        let started = Instant::now();
        let (code, out) = container.exec_output(command);
        assert_eq!(code, 137, "{command:?} was not killed: {out}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    assert!(!marked(&container), "a killed shell ran its first command");
    let alert = agent.wait_for_alert("the kill alert", is_critical_process);
    assert_eq!(alert["details"]["kernel_action"], "killed", "{alert}");
    // Benign programs still run.
    let (code, out) = container.exec_output(&["cat", "/etc/hostname"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_block_no_layer_can_enforce_is_refused_at_start() {
    let container = TestContainer::start("krefuse");
    let mut agent = Agent::spawn(
        Command::new(agent_bin())
            .args(["--container", &container.name, "--rule", "proc_open=block"])
            .args(["--listen", "127.0.0.1:0", "--alerts-log"])
            .arg(std::env::temp_dir().join(crabpot_integration_tests::unique_name("refuse"))),
    );
    let status = agent.wait_exit(DEADLINE);
    assert!(!status.success());
    let logs = agent.logs().join("\n");
    assert!(
        logs.contains("proc_open=block") && logs.contains("BPF LSM"),
        "the refusal names neither the rule nor the layer:\n{logs}"
    );
}

#[test]
fn a_false_alarm_is_continued() {
    // Docker's shell-form health check runs `/bin/sh -c CMD`: the kernel stops it on the
    // name, the agent finds Docker started it as the probe and continues it, so the probe
    // completes and the container turns healthy, unfrozen.
    let container = TestContainer::named("kfalse");
    container.run(&["--health-cmd", "true", "--health-interval", "1s"]);
    let (container, agent) = guarded(container, &[]);
    let stopped = agent.wait_for_event("the stopped health probe", |e| {
        e["kind"] == "exec" && e["kernel_action"] == "stopped"
    });
    assert_eq!(stopped["argv"][0], "/bin/sh", "{stopped}");
    agent.wait_for_log(&["stopped in kernel, not an attack: continued"], DEADLINE);
    wait_until("the probe to pass", DEADLINE, || {
        (container.inspect("{{.State.Health.Status}}") == "healthy").then_some(())
    });
    assert!(!container.is_paused());
    assert!(!agent.alerts().iter().any(is_critical_process));
}

#[test]
fn a_fileless_shell_that_exits_at_once_is_critical() {
    let (container, agent) = enforced(TestContainer::start("kfileless"), &["--no-auto-pause"]);
    for (mode, marker) in [("memfd", "kf-memfd"), ("execveat", "kf-at-empty")] {
        let script = format!("true; : {marker}");
        let (code, out) =
            container.exec_output(&["crabpot-evade", mode, "/bin/busybox", "sh", "-c", &script]);
        assert_eq!(code, 0, "{out}");
        let alert = agent.wait_for_alert(&format!("the {mode} shell"), |a| {
            a["source"] == "processes" && a["details"]["argv"].to_string().contains(marker)
        });
        assert_eq!(alert["severity"], "CRITICAL", "{alert}");
        assert_eq!(alert["details"]["executable"], "sh", "{alert}");
        assert!(
            alert["details"]["exe_inode"].as_u64().unwrap_or(0) > 0,
            "{alert}"
        );
        let memfd = mode == "memfd";
        assert_eq!(alert["details"]["exe_memfd"], memfd, "{alert}");
        assert_eq!(alert["details"]["exe_unlinked"], memfd, "{alert}");
    }
}

#[test]
fn a_relative_proc_open_by_a_process_that_exits_at_once_is_logged() {
    let (container, agent) = enforced(TestContainer::start("krel"), &["--no-auto-pause"]);
    // cwd /proc (set by runc), then `1/environ`; and a shell's own chdir.
    docker(&["exec", "-w", "/proc", &container.name, "cat", "1/environ"]);
    container.exec(&["sh", "-c", "cd /proc/1 && cat environ > /dev/null"]);
    for requested in ["1/environ", "environ"] {
        let alert = agent.wait_for_alert(&format!("the read of {requested}"), |a| {
            a["details"]["requested_path"] == requested
        });
        assert_eq!(alert["severity"], "WARNING", "{alert}");
        assert_eq!(alert["details"]["path"], "/proc/1/environ", "{alert}");
        assert_eq!(alert["details"]["base_from_kernel"], true, "{alert}");
    }
}

/// The value of the metric line starting with `name` on the agent's /metrics.
fn metric(port: u16, name: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    stream.write_all(request.as_bytes()).ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|line| line.starts_with(name))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

/// An agent guarding `container` without `--events` (the kernel filters), with its metrics
/// port and alerts log.
fn filtering_agent(container: &TestContainer) -> (Agent, u16, std::path::PathBuf) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let alerts_log = std::env::temp_dir().join(crabpot_integration_tests::unique_name("kf"));
    let agent = Agent::spawn(
        Command::new(agent_bin())
            .args(["--container", &container.name, "--no-auto-pause"])
            .args(["--listen", &listen, "--alerts-log"])
            .arg(&alerts_log),
    );
    agent.wait_guarding(&container.name, container.cgroup_id());
    (agent, port, alerts_log)
}

#[test]
fn opens_the_policy_does_not_need_stay_in_the_kernel() {
    let container = TestContainer::start("kfilter");
    // No --events: only the opens the policy needs reach the agent.
    let (agent, port, alerts_log) = filtering_agent(&container);
    let opens_name = "crabpot_kernel_events_total{kind=\"open\"}";
    let filtered = "crabpot_kernel_opens_filtered_total";
    let before = wait_until("the metrics", DEADLINE, || metric(port, filtered));
    // 50 opens of an ordinary file from one process, then /proc spelled otherwise.
    let loop_script = "for i in $(seq 50); do read x < /etc/hostname; done";
    container.exec(&["sh", "-c", loop_script]);
    container.exec(&["cat", "//proc/1/environ"]);
    container.exec(&["cat", "/./proc/1/environ"]);
    for spelled in ["//proc/1/environ", "/./proc/1/environ"] {
        let alert = wait_until(&format!("the read of {spelled}"), DEADLINE, || {
            let text = std::fs::read_to_string(&alerts_log).ok()?;
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|a| a["details"]["requested_path"] == spelled)
        });
        assert_eq!(alert["details"]["path"], "/proc/1/environ", "{alert}");
    }
    let after = wait_until("the filtered counter to move", DEADLINE, || {
        metric(port, filtered).filter(|v| *v >= before + 50.0)
    });
    let received = metric(port, opens_name).unwrap_or(f64::MAX);
    assert!(
        received < 50.0,
        "{received} opens reached the agent ({after} filtered): the ordinary ones were not kept out"
    );
    drop(agent);
    let _ = std::fs::remove_file(&alerts_log);

    // With --events every open is shown.
    let (container, agent) = guarded(container, &["--no-auto-pause"]);
    container.exec(&["cat", "/etc/hostname"]);
    agent.wait_for_event("the open of /etc/hostname", |e| {
        e["kind"] == "open" && e["path"] == "/etc/hostname"
    });
}

/// Connects the allowlist covers (here loopback) are counted in the kernel, not sent; one
/// outside it still is; with `--events` every connect is shown.
#[test]
fn allowed_connects_stay_in_the_kernel() {
    let container = TestContainer::start("kcfilter");
    let (agent, port, alerts_log) = filtering_agent(&container);
    let connects_name = "crabpot_kernel_events_total{kind=\"connect\"}";
    let filtered = "crabpot_kernel_connects_filtered_total";
    let before = wait_until("the metrics", DEADLINE, || metric(port, filtered));
    // 20 fetches of the stand-in gateway's health page over loopback.
    let fetches = "for i in $(seq 20); do wget -q -O /dev/null http://127.0.0.1:18789/health; done";
    container.exec(&["sh", "-c", fetches]);
    let after = wait_until("the filtered counter to move", DEADLINE, || {
        metric(port, filtered).filter(|v| *v >= before + 20.0)
    });
    let received = metric(port, connects_name).unwrap_or(f64::MAX);
    assert!(
        received < 20.0,
        "{received} connects reached the agent ({after} filtered): loopback was not kept out"
    );
    // A destination outside the allowlist is still sent (and refused: nc fails).
    let refused = Command::new("docker")
        .args(["exec", &container.name, "nc", "-w", "2", "192.0.2.1", "80"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("docker exec");
    assert!(!refused.status.success(), "{refused:?}");
    wait_until("the outside connect to reach the agent", DEADLINE, || {
        metric(port, connects_name).filter(|v| *v > received)
    });
    drop(agent);
    let _ = std::fs::remove_file(&alerts_log);

    let (container, agent) = guarded(container, &["--no-auto-pause"]);
    container.exec(&[
        "wget",
        "-q",
        "-O",
        "/dev/null",
        "http://127.0.0.1:18789/health",
    ]);
    agent.wait_for_event("the loopback connect", |e| {
        e["kind"] == "connect" && e["port"] == 18789
    });
}
