//! Kernel → ring buffer → agent, on a real container: events carry the container's cgroup
//! and the right process, host activity stays out, restarts are followed, floods are counted.
use std::time::Duration;

use crabpot_integration_tests::{Agent, DEADLINE, TestContainer, container::docker, wait_until};
use serde_json::Value;

fn kind(event: &Value) -> &str {
    event["kind"].as_str().unwrap_or("")
}

fn argv0(event: &Value) -> &str {
    event["argv"][0].as_str().unwrap_or("")
}

/// A container and an agent guarding it, ready (the kernel filter holds its cgroup).
fn guarded(prefix: &str, extra: &[&str]) -> (TestContainer, Agent, u64) {
    let container = TestContainer::start(prefix);
    let cgroup_id = container.cgroup_id();
    // These tests watch the event stream; freezing the container on the shells they run
    // is the monitor tests' subject.
    let mut args = vec!["--no-auto-pause"];
    args.extend_from_slice(extra);
    let agent = Agent::start(&container.name, &args);
    agent.wait_guarding(&container.name, cgroup_id);
    (container, agent, cgroup_id)
}

#[test]
fn exec_and_open_events_carry_the_container_identity() {
    let (container, agent, cgroup_id) = guarded("exec", &[]);
    container.exec(&["sh", "-c", "cat /etc/passwd"]);

    let sh = agent.wait_for_event("exec of sh", |e| {
        kind(e) == "exec" && e["filename"] == "/bin/sh" && argv0(e) == "sh"
    });
    assert_eq!(sh["argv"][1], "-c");
    assert_eq!(sh["argv"][2], "cat /etc/passwd");
    // busybox sh runs its `cat` applet through /proc/self/exe with argv[0] = "cat".
    let cat = agent.wait_for_event("exec of cat", |e| kind(e) == "exec" && argv0(e) == "cat");
    assert_eq!(cat["comm"], "sh", "cat is executed by the shell");
    let open = agent.wait_for_event("open of /etc/passwd by cat", |e| {
        kind(e) == "open" && e["path"] == "/etc/passwd" && e["comm"] == "cat"
    });
    for event in [&sh, &cat, &open] {
        assert_eq!(event["cgroup_id"], cgroup_id, "{event}");
        assert_eq!(event["container"], container.name.as_str(), "{event}");
        assert!(event["pid"].as_u64().unwrap_or(0) > 1, "{event}");
    }
    // The open comes from the process that exec'd cat.
    assert_eq!(open["tgid"], cat["tgid"]);
    // Lineage reaches outside the exec'd process (its parent is the runtime's process).
    assert!(
        !open["lineage"]
            .as_array()
            .map(Vec::is_empty)
            .unwrap_or(true),
        "{open}"
    );
}

#[test]
fn exec_event_pid_is_the_host_pid_docker_reports() {
    let (container, agent, cgroup_id) = guarded("pid", &[]);
    docker(&["exec", "-d", &container.name, "sleep", "1234"]);
    let exec = agent.wait_for_event("exec of sleep 1234", |e| {
        kind(e) == "exec" && argv0(e) == "sleep" && e["argv"][1] == "1234"
    });
    let top = wait_until("sleep in docker top", DEADLINE, || {
        let listing = docker(&["top", &container.name, "-o", "pid,args"]);
        listing.lines().find_map(|line| {
            let (pid, args) = line.trim().split_once(' ')?;
            (args.trim() == "sleep 1234").then(|| pid.parse::<u64>().ok())?
        })
    });
    assert_eq!(exec["tgid"], top, "{exec}");
    assert_eq!(exec["pid"], top, "single-threaded: pid == tgid");
    assert_eq!(exec["cgroup_id"], cgroup_id);
    assert_eq!(exec["uid"], 0);
}

#[test]
fn connect_event_has_the_bridge_address_and_port() {
    let (container, agent, cgroup_id) = guarded("connect", &[]);
    let gateway = container.gateway();
    assert!(!gateway.is_empty(), "container has a bridge gateway");
    // Nothing listens on the port: the connect is refused, but it is attempted.
    container.exec_status(&["nc", "-w", "1", &gateway, "18790"]);
    let connect = agent.wait_for_event("connect to the bridge", |e| {
        kind(e) == "connect" && e["port"] == 18790
    });
    assert_eq!(connect["address"], gateway.as_str(), "{connect}");
    assert_eq!(connect["family"], 2);
    assert_eq!(connect["comm"], "nc");
    assert_eq!(connect["cgroup_id"], cgroup_id);
}

#[test]
fn host_commands_produce_no_events() {
    let (container, agent, _) = guarded("host", &[]);
    let marker = format!("/tmp/{}-host-marker", container.name);
    std::fs::write(&marker, "x").expect("write marker");
    // The same kinds of activity as the container tests, on the host.
    for _ in 0..3 {
        let status = std::process::Command::new("/bin/busybox")
            .args([
                "sh",
                "-c",
                &format!("cat {marker}; nc -w 1 127.0.0.1 18790"),
            ])
            .output()
            .expect("run busybox on the host");
        assert!(!status.stdout.is_empty(), "host cat read the marker");
    }
    // A container event after the host activity: once it is seen, anything the host produced
    // before it would have been seen too (one ring buffer, one reader, in order).
    container.exec(&["cat", "/etc/group"]);
    agent.wait_for_event("the container's own open", |e| {
        kind(e) == "open" && e["path"] == "/etc/group"
    });
    let leaked: Vec<Value> = agent
        .events()
        .into_iter()
        .filter(|e| e.to_string().contains(&marker) || e["port"] == 18790)
        .collect();
    let _ = std::fs::remove_file(&marker);
    assert!(leaked.is_empty(), "host activity leaked: {leaked:?}");
}

#[test]
fn events_follow_the_container_across_a_restart() {
    let (container, agent, first_id) = guarded("restart", &[]);
    docker(&["restart", "-t", "1", &container.name]);
    let second_id = wait_until("a new cgroup after restart", DEADLINE, || {
        let id = container.cgroup_id();
        (id != first_id).then_some(id)
    });
    agent.wait_guarding(&container.name, second_id);
    let event = wait_until("an event from the restarted container", DEADLINE, || {
        container.exec(&["cat", "/etc/passwd"]);
        agent
            .events()
            .into_iter()
            .find(|e| kind(e) == "open" && e["cgroup_id"] == second_id)
    });
    assert_eq!(event["container"], container.name.as_str());
}

#[test]
fn a_flood_moves_the_drop_counter_and_the_agent_keeps_up() {
    // A one-page ring buffer holds about a dozen open events: a burst must overflow it.
    let (container, agent, cgroup_id) = guarded("flood", &["--ring-buffer-bytes", "4096"]);
    container.exec(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 40 ]; do cat /bin/* > /dev/null 2>&1; i=$((i+1)); done",
    ]);
    let dropped = agent.wait_for_event("a drop report", |e| {
        kind(e) == "dropped" && e["total"].as_u64().unwrap_or(0) > 0
    });
    assert!(dropped["by_kind"].to_string().contains("open"), "{dropped}");
    let overrun = |a: &serde_json::Value| {
        a["severity"] == "WARNING" && a["message"].as_str().unwrap_or("").contains("overrun")
    };
    agent.wait_for_alert("the overrun alert", overrun);
    // A second flood is counted again, but not alerted again.
    let first_total = dropped["total"].as_u64().unwrap_or(0);
    container.exec(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 40 ]; do cat /bin/* > /dev/null 2>&1; i=$((i+1)); done",
    ]);
    agent.wait_for_event("a higher drop total", |e| {
        kind(e) == "dropped" && e["total"].as_u64().unwrap_or(0) > first_total
    });
    let overruns = agent.alerts().iter().filter(|a| overrun(a)).count();
    assert_eq!(overruns, 1, "the overrun is alerted once");
    // Still alive and still delivering after the flood.
    container.exec(&["cat", "/etc/group"]);
    let after = agent.wait_for_event("an event after the flood", |e| {
        kind(e) == "open" && e["path"] == "/etc/group" && e["comm"] == "cat"
    });
    assert_eq!(after["cgroup_id"], cgroup_id);
    wait_until("agent still running", Duration::from_secs(1), || {
        std::path::Path::new(&format!("/proc/{}", agent.pid()))
            .exists()
            .then_some(())
    });
}
