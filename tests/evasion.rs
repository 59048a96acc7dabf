//! A hostile container against the agent: shells under other names, fileless execs, a
//! renamed process, connects through io_uring and IPv4-mapped IPv6 addresses, and /proc
//! opens spelled so that they do not start with "/proc/". Each is still caught, and blocked
//! where the policy blocks. The syscalls busybox cannot make come from the static
//! `crabpot-evade` helper in the test image (images/helpers/evade.c).
use std::process::Command;

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, container::docker, enforced, wait_until,
};
use serde_json::Value;

fn exec(container: &TestContainer, command: &[&str]) -> (i32, String) {
    container.exec_output(command)
}

/// Start a command in the container without waiting for it.
fn exec_detached(container: &TestContainer, command: &[&str]) {
    let mut args = vec!["exec", "-d", container.name.as_str()];
    args.extend_from_slice(command);
    docker(&args);
}

/// The shell alert whose argv carries `marker` (each attack tags its own command line).
fn shell_alert(agent: &Agent, marker: &str) -> Value {
    agent.wait_for_alert(&format!("the shell alert for `{marker}`"), |a| {
        a["source"] == "processes"
            && a["severity"] == "CRITICAL"
            && a["details"]["argv"].to_string().contains(marker)
    })
}

#[test]
fn shells_under_other_names_are_still_shells() {
    let (container, agent) = enforced(TestContainer::start("ev-names"), &["--no-auto-pause"]);
    // Prepared before any shell runs; cp and ln are not denylisted.
    container.exec(&["cp", "/bin/busybox", "/tmp/busybox.bak"]);
    container.exec(&["cp", "/bin/busybox", "/tmp/x"]);
    container.exec(&["ln", "/bin/busybox", "/tmp/notes"]);
    container.exec(&["ln", "-s", "/bin/busybox", "/tmp/readme"]);
    assert!(
        !agent.alerts().iter().any(|a| a["source"] == "processes"),
        "preparing raised an alert: {:?}",
        agent.alerts()
    );

    // A renamed copy that still answers to busybox's multi-call name.
    exec(
        &container,
        &["/tmp/busybox.bak", "sh", "-c", "true; : copy-bak"],
    );
    let alert = shell_alert(&agent, "copy-bak");
    assert_eq!(alert["details"]["executable"], "sh", "{alert}");
    assert_eq!(alert["details"]["filename"], "/tmp/busybox.bak");

    // A copy, a hard link and a symlink with innocent names, the applet chosen by argv[0]:
    // no name the kernel sees says "sh", only the file does.
    for (path, marker) in [
        ("/tmp/x", "copy-x"),
        ("/tmp/notes", "hard-link"),
        ("/tmp/readme", "symlink"),
    ] {
        let script = format!("true; : {marker}");
        let (code, out) = exec(
            &container,
            &["crabpot-evade", "exec", path, "sh", "-c", &script],
        );
        assert_eq!(code, 0, "{path}: {out}");
        let alert = shell_alert(&agent, marker);
        assert_eq!(alert["details"]["executable"], "sh", "{alert}");
        assert_eq!(alert["details"]["filename"], path, "{alert}");
        assert_eq!(alert["details"]["identified_by_file"], true, "{alert}");
    }

    // A script: the kernel starts its #! interpreter itself, no exec names the shell.
    container.put_file("/tmp/notes.txt", b"#!/bin/sh\n: script\n");
    container.exec(&["chmod", "755", "/tmp/notes.txt"]);
    let (code, out) = exec(&container, &["/tmp/notes.txt"]);
    assert_eq!(code, 0, "{out}");
    let alert = shell_alert(&agent, "notes.txt");
    assert_eq!(alert["details"]["executable"], "sh", "{alert}");
    assert_eq!(alert["details"]["filename"], "/tmp/notes.txt", "{alert}");
}

#[test]
fn fileless_execs_of_busybox_are_shells() {
    let (container, agent) = enforced(TestContainer::start("ev-fileless"), &["--no-auto-pause"]);
    // execveat(fd, "", AT_EMPTY_PATH): the kernel is given no path at all.
    exec_detached(
        &container,
        &[
            "crabpot-evade",
            "execveat",
            "/bin/busybox",
            "sh",
            "-c",
            "sleep 1000; : at-empty-path",
        ],
    );
    let alert = shell_alert(&agent, "at-empty-path");
    assert_eq!(alert["details"]["executable"], "sh", "{alert}");
    assert_eq!(alert["details"]["filename"], "", "{alert}");
    assert_eq!(alert["details"]["identified_by_file"], true);

    // A copy of busybox in a memfd_create file, run with fexecve.
    exec_detached(
        &container,
        &[
            "crabpot-evade",
            "memfd",
            "/bin/busybox",
            "sh",
            "-c",
            "sleep 1000; : memfd",
        ],
    );
    let alert = shell_alert(&agent, "memfd");
    assert_eq!(alert["details"]["executable"], "sh", "{alert}");
    assert_eq!(alert["details"]["identified_by_file"], true, "{alert}");

    // A fileless shell that exits at once may be gone (its memfd with it) before the agent
    // looks: then it is still reported, as an unidentified fileless exec.
    let (code, out) = exec(
        &container,
        &[
            "crabpot-evade",
            "memfd",
            "/bin/busybox",
            "sh",
            "-c",
            "true; : short-lived",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let alert = agent.wait_for_alert("an alert for the short-lived fileless shell", |a| {
        a["source"] == "processes" && a["details"]["argv"].to_string().contains("short-lived")
    });
    let executable = &alert["details"]["executable"];
    assert!(
        (alert["severity"] == "CRITICAL" && executable == "sh")
            || (alert["severity"] == "WARNING" && executable == "unidentified"),
        "{alert}"
    );
    eprintln!("short-lived fileless shell reported as {executable}");
}

#[test]
fn a_disguised_shell_still_freezes_the_container() {
    // The default policy: a shell alert auto-pauses, whatever the shell is called.
    let (container, agent) = enforced(TestContainer::start("ev-pause"), &[]);
    container.exec(&["cp", "/bin/busybox", "/tmp/x"]);
    // Not waited for: a frozen process never returns.
    let mut attack = Command::new("docker")
        .args([
            "exec",
            &container.name,
            "crabpot-evade",
            "memfd",
            "/tmp/x",
            "sh",
            "-c",
        ])
        .arg("sleep 30; : frozen")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker exec");
    shell_alert(&agent, "frozen");
    wait_until("the container to be paused", DEADLINE, || {
        container.is_paused().then_some(())
    });
    let _ = attack.kill();
    let _ = attack.wait();
    docker(&["unpause", &container.name]);
}

#[test]
fn a_process_is_judged_by_what_it_executes_not_the_name_it_shows() {
    let container = TestContainer::start("ev-prctl");
    // Both started before the agent, so only the docker-top poll can judge them: a harmless
    // program calling itself "sh" (prctl PR_SET_NAME), and a real shell from a renamed copy.
    exec_detached(&container, &["crabpot-evade", "rename", "sh", "1000"]);
    container.exec(&["cp", "/bin/busybox", "/tmp/busybox.bak"]);
    exec_detached(
        &container,
        &["/tmp/busybox.bak", "sh", "-c", "sleep 1000; : early-shell"],
    );
    let (container, agent) = enforced(
        container,
        &["--no-auto-pause", "--process-poll-seconds", "1"],
    );
    let alert = agent.wait_for_alert("the poll's alert for the early shell", |a| {
        a["details"]["detected_by"] == "docker top"
            && a["details"]["args"]
                .as_str()
                .is_some_and(|args| args.contains("early-shell"))
    });
    assert!(
        alert["message"].as_str().unwrap_or("").contains("sh"),
        "{alert}"
    );
    // The same poll tick saw the fake "sh"; it must not be called a shell.
    let fake: Vec<Value> = agent
        .alerts()
        .into_iter()
        .filter(|a| a.to_string().contains("rename"))
        .collect();
    assert!(
        fake.is_empty(),
        "a renamed harmless process alerted: {fake:?}"
    );

    // The kernel path too: renaming is no exec of a shell; the real one after it is.
    let (code, out) = exec(&container, &["crabpot-evade", "rename", "sh", "0"]);
    assert_eq!(code, 0, "{out}");
    exec(&container, &["sh", "-c", "true; : marker"]);
    shell_alert(&agent, "marker");
    let fake: Vec<Value> = agent
        .alerts()
        .into_iter()
        .filter(|a| a["source"] == "processes" && a.to_string().contains("rename"))
        .collect();
    assert!(fake.is_empty(), "{fake:?}");
}

fn connect_alert(agent: &Agent, address: &str, port: u16) -> Value {
    agent.wait_for_alert(&format!("the connect alert for {address}:{port}"), |a| {
        a["details"]["rule"] == "connect"
            && a["details"]["address"] == address
            && a["details"]["port"] == port
    })
}

#[test]
fn a_connect_through_io_uring_is_blocked_and_alerted() {
    let (container, agent) = enforced(TestContainer::start("ev-uring"), &["--no-auto-pause"]);
    let gateway = container.gateway();
    // No connect(2) syscall is made: the ring's worker connects.
    let (code, out) = exec(
        &container,
        &["crabpot-evade", "uring-connect", &gateway, "18790"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    let alert = connect_alert(&agent, &gateway, 18790);
    assert_eq!(alert["details"]["verdict"], "blocked", "{alert}");
    assert_eq!(alert["details"]["comm"], "crabpot-evade", "{alert}");
    // The same path to an allowed destination (loopback, the gateway stand-in) works.
    let (code, out) = exec(
        &container,
        &["crabpot-evade", "uring-connect", "127.0.0.1", "18789"],
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn ipv4_mapped_ipv6_destinations_follow_the_ipv4_allowlist() {
    let container = TestContainer::start("ev-mapped");
    let gateway = container.gateway();
    let mapped = format!("::ffff:{gateway}");
    {
        let (container, agent) = enforced(container, &["--no-auto-pause"]);
        let (code, out) = exec(&container, &["crabpot-evade", "connect6", &mapped, "18790"]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("Operation not permitted"), "{out}");
        let alert = connect_alert(&agent, &mapped, 18790);
        assert_eq!(alert["details"]["verdict"], "blocked", "{alert}");
        // Mapped loopback is loopback.
        let (code, out) = exec(
            &container,
            &["crabpot-evade", "connect6", "::ffff:127.0.0.1", "18789"],
        );
        assert_eq!(code, 0, "{out}");
        drop(agent);
        // The v4 allowlist entry covers the mapped form: the host answers (refused).
        let cidr = format!("{gateway}/32");
        let agent = Agent::start(&container.name, &["--no-auto-pause", "--allow", &cidr]);
        agent.wait_for_log(&["enforcing on cgroup"], DEADLINE);
        let (code, out) = exec(&container, &["crabpot-evade", "connect6", &mapped, "18790"]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("Connection refused"), "allowed: {out}");
    }
}

/// The audit-log record of an open of `path`.
/// The record of an open of `path`: an audit line, or for a sensitive entry (another
/// process's environ, cmdline, maps, mem) a WARNING in the alerts log.
fn proc_open_record(agent: &Agent, path: &str) -> Value {
    let audit = agent.alerts_log.with_file_name("audit.log");
    let wanted = format!("open of {path}");
    let in_audit = || {
        std::fs::read_to_string(&audit)
            .ok()?
            .lines()
            .find_map(|line| {
                let record: Value = serde_json::from_str(line).ok()?;
                (record["message"] == wanted.as_str()).then_some(record)
            })
    };
    let alerted = || {
        agent
            .alerts()
            .into_iter()
            .find(|a| a["details"]["rule"] == "sensitive_read" && a["details"]["path"] == path)
    };
    wait_until(
        &format!("the record of the open of {path}"),
        DEADLINE,
        || in_audit().or_else(alerted),
    )
}

#[test]
fn proc_opens_are_logged_however_the_path_is_spelled() {
    let (container, agent) = enforced(TestContainer::start("ev-proc"), &[]);
    // openat2, which the openat tracepoint never sees.
    let (code, out) = exec(&container, &["crabpot-evade", "openat2", "/proc/1/cmdline"]);
    assert_eq!(code, 0, "{out}");
    proc_open_record(&agent, "/proc/1/cmdline");
    // The legacy open(2), which libc no longer uses but a hostile binary can.
    if cfg!(target_arch = "x86_64") {
        let (code, out) = exec(&container, &["crabpot-evade", "open", "/proc/1/comm"]);
        assert_eq!(code, 0, "{out}");
        proc_open_record(&agent, "/proc/1/comm");
    }
    // Relative to the cwd, climbing out of /tmp.
    let out = Command::new("docker")
        .args([
            "exec",
            "-w",
            "/tmp",
            &container.name,
            "cat",
            "../proc/1/environ",
        ])
        .output()
        .expect("docker exec -w");
    assert!(out.status.success(), "{out:?}");
    let record = proc_open_record(&agent, "/proc/1/environ");
    assert_eq!(record["details"]["requested_path"], "../proc/1/environ");
    // Relative to a directory fd.
    let (code, out) = exec(
        &container,
        &["crabpot-evade", "openat", "/tmp", "../proc/1/limits"],
    );
    assert_eq!(code, 0, "{out}");
    let record = proc_open_record(&agent, "/proc/1/limits");
    assert_eq!(record["details"]["requested_path"], "../proc/1/limits");
    // Through the process's own root, and through `..` in an absolute path.
    exec(&container, &["cat", "/proc/self/root/proc/1/maps"]);
    proc_open_record(&agent, "/proc/1/maps");
    let (code, out) = exec(
        &container,
        &[
            "crabpot-evade",
            "openat2",
            "/tmp/../proc/self/root/proc/1/mounts",
        ],
    );
    assert_eq!(code, 0, "{out}");
    proc_open_record(&agent, "/proc/1/mounts");
    // A path into the container's own root through /proc is not a /proc open.
    exec(&container, &["cat", "/proc/self/root/etc/group"]);
    exec(&container, &["cat", "/proc/1/status"]);
    proc_open_record(&agent, "/proc/1/status");
    let audit =
        std::fs::read_to_string(agent.alerts_log.with_file_name("audit.log")).unwrap_or_default();
    let wrong: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"proc_open\"") && l.contains("etc/group"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
}

/// The `proc_link` WARNING for a link made at `link`.
fn link_alert(agent: &Agent, link: &str) -> Value {
    wait_until(&format!("the alert for the link {link}"), DEADLINE, || {
        agent
            .alerts()
            .into_iter()
            .find(|a| a["details"]["rule"] == "proc_link" && a["details"]["link"] == link)
    })
}

/// /proc reached under another name: a symbolic link into /proc (or to the root above it)
/// is raised when it is made, whatever its spelling or chain; Docker's own `/dev/fd` link
/// climbed with `..` is followed to the file it names. An ordinary link raises nothing.
#[test]
fn links_into_proc_are_raised_and_followed() {
    let (container, agent) = enforced(TestContainer::start("ev-link"), &[]);
    for (target, link) in [
        ("/proc/1/environ", "/tmp/e"),
        ("/", "/tmp/r"),
        ("../proc", "/tmp/p"),
        // A chain: its target is itself a link to the root.
        ("/tmp/r", "/tmp/r2"),
        ("busybox", "/tmp/bb"),
    ] {
        let (code, out) = exec(&container, &["ln", "-s", target, link]);
        assert_eq!(code, 0, "ln -s {target} {link}: {out}");
    }
    let environ = link_alert(&agent, "/tmp/e");
    assert_eq!(environ["severity"], "WARNING", "{environ}");
    assert_eq!(environ["details"]["path"], "/proc/1/environ", "{environ}");
    assert!(
        environ["message"]
            .as_str()
            .is_some_and(|m| m.contains("environ")),
        "{environ}"
    );
    assert_eq!(link_alert(&agent, "/tmp/r")["details"]["path"], "/");
    assert_eq!(link_alert(&agent, "/tmp/p")["details"]["path"], "/proc");
    assert_eq!(link_alert(&agent, "/tmp/r2")["details"]["path"], "/");
    // Docker's /dev/fd -> /proc/self/fd, climbed out of: another process's environment.
    let (code, out) = exec(&container, &["cat", "/dev/fd/../../1/environ"]);
    assert_eq!(code, 0, "{out}");
    let read = proc_open_record(&agent, "/proc/1/environ");
    assert_eq!(read["details"]["requested_path"], "/dev/fd/../../1/environ");
    let ordinary: Vec<Value> = agent
        .alerts()
        .into_iter()
        .filter(|a| a["details"]["link"] == "/tmp/bb")
        .collect();
    assert!(ordinary.is_empty(), "{ordinary:?}");
    assert!(
        !container.is_paused(),
        "a link is a warning, not a violation"
    );
}
