//! Escapes an outside attack corpus found, closed: a process with CAP_SYS_ADMIN and a
//! writable cgroup2 view leaving the watched cgroup (into a child cgroup, the root, another
//! branch), egress that is neither connect nor UDP sendmsg (ping and raw sockets), and a
//! mount kept alive by a child in a new mount namespace. The attacks come from the static
//! `crabpot-escape` helper in the test image (images/helpers/escape.c).
use std::{
    io::Read as _, net::TcpListener, os::unix::fs::MetadataExt as _, path::PathBuf, sync::mpsc,
    time::Duration,
};

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, container::docker, enforced, wait_until,
};
use serde_json::Value;

/// Where the host's cgroup2 tree is mounted (bind-mounted into the container writable).
fn cgroup2_mount() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_string())
        })
        .expect("a cgroup2 mount")
}

/// The container's cgroup2 path from the root (`/docker/<id>`).
fn cgroup_path(container: &TestContainer) -> String {
    let cgroup =
        std::fs::read_to_string(format!("/proc/{}/cgroup", container.pid())).expect("proc cgroup");
    cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("cgroup v2 line")
        .trim_end()
        .to_string()
}

/// A container that may move processes between cgroups: CAP_SYS_ADMIN and the host's
/// cgroup2 tree writable at /cg. (`--privileged` containers do not start on this machine.)
fn cgroup_capable(prefix: &str) -> TestContainer {
    let container = TestContainer::named(prefix);
    let volume = format!("{}:/cg:rw", cgroup2_mount());
    container.run(&["--cap-add", "SYS_ADMIN", "-v", &volume]);
    container
}

/// A TCP listener on the host that the container reaches through its gateway; whatever
/// connects is reported (with its first bytes) on the channel.
fn listener() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

fn escape(container: &TestContainer, args: &[&str]) -> (i32, String) {
    let mut command = vec!["crabpot-escape"];
    command.extend_from_slice(args);
    container.exec_output(&command)
}

fn alert_with(agent: &Agent, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    agent.wait_for_alert(what, matches)
}

fn audit_has(agent: &Agent, needle: &str) -> bool {
    std::fs::read_to_string(agent.alerts_log.with_file_name("audit.log"))
        .is_ok_and(|text| text.lines().any(|l| l.contains(needle)))
}

#[test]
fn leaving_the_watched_cgroup_is_caught_and_killed() {
    let (allowed_port, allowed) = listener();
    let (other_port, other) = listener();
    let container = cgroup_capable("esc-cgroup");
    let gateway = container.gateway();
    let allow = format!("{gateway}:{allowed_port}");
    let (container, agent) = enforced(container, &["--no-auto-pause", "--allow", &allow]);
    let own = format!("/cg{}", cgroup_path(&container));
    let child = format!("{own}/child");
    container.exec(&["mkdir", &child]);

    // A child cgroup of the container is still the container: its shell is reported, its
    // /proc reads logged, and the inherited cgroup hooks judge its connects.
    let (code, out) = escape(
        &container,
        &[
            "cgroup-move",
            &child,
            "exec",
            "/bin/sh",
            "sh",
            "-c",
            "cat /proc/self/status >/dev/null; : nested-shell",
        ],
    );
    assert_eq!(code, 0, "{out}");
    alert_with(&agent, "the nested shell's alert", |a| {
        a["source"] == "processes" && a["details"]["argv"].to_string().contains("nested-shell")
    });
    wait_until("the nested /proc read in the audit log", DEADLINE, || {
        audit_has(&agent, "/proc/self/status").then_some(())
    });
    let port = allowed_port.to_string();
    let (code, out) = escape(
        &container,
        &["cgroup-move", &child, "connect4", &gateway, &port],
    );
    assert_eq!(code, 0, "an allowed connect from the child cgroup: {out}");
    let got = allowed
        .recv_timeout(DEADLINE)
        .expect("the allowed connection");
    assert_eq!(got, "escape\n");
    let port = other_port.to_string();
    let (code, out) = escape(
        &container,
        &["cgroup-move", &child, "connect4", &gateway, &port],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");

    // Out to the root cgroup: killed at the move, the connect never made.
    let (code, out) = escape(
        &container,
        &["cgroup-move", "/cg", "connect4", &gateway, &port],
    );
    assert_eq!(code, 137, "killed by SIGKILL: {out}");
    let alert = alert_with(&agent, "the escape to the root cgroup", |a| {
        a["details"]["rule"] == "cgroup_escape" && a["details"]["dst_path"] == "/"
    });
    assert_eq!(alert["severity"], "CRITICAL", "{alert}");
    assert_eq!(alert["details"]["verdict"], "killed", "{alert}");

    // Moved by another process of the container (to a sibling branch): the mover is killed
    // by the kernel, the moved one by the agent; neither connects.
    let (code, out) = escape(
        &container,
        &["move-other", "/cg/docker", "connect4", &gateway, &port],
    );
    assert_eq!(code, 137, "the mover is killed: {out}");
    let alert = alert_with(&agent, "the escape of a moved process", |a| {
        a["details"]["rule"] == "cgroup_escape" && a["details"]["dst_path"] == "/docker"
    });
    assert_eq!(alert["severity"], "CRITICAL", "{alert}");
    let moved = alert["details"]["moved_pid"].as_u64().expect("moved pid");
    wait_until("the moved process to be gone", DEADLINE, || {
        (!std::path::Path::new(&format!("/proc/{moved}")).exists()).then_some(())
    });
    assert!(
        other.recv_timeout(Duration::from_millis(500)).is_err(),
        "a process outside the container's cgroup reached a destination it is refused"
    );
}

#[test]
fn every_packet_leaving_is_held_to_the_allowlist() {
    let (port, allowed) = listener();
    let container = TestContainer::start("esc-egress");
    let gateway = container.gateway();
    let allow = format!("{gateway}:{port}");
    let (container, agent) = enforced(container, &["--no-auto-pause", "--allow", &allow]);

    // Benign: fork, exec of its own binary, HTTP, ping and UDP on loopback.
    let (code, out) = escape(&container, &["benign"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok") && out.contains("reply from 127.0.0.1"),
        "{out}"
    );
    // An allowed TCP flow (handshake, data, the server's replies) still passes egress.
    let (code, out) = escape(&container, &["connect4", &gateway, &port.to_string()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        allowed.recv_timeout(DEADLINE).expect("connection"),
        "escape\n"
    );
    // Posture findings are about the launch (tests/posture.rs), not the traffic.
    let alerts: Vec<Value> = agent
        .alerts()
        .into_iter()
        .filter(|a| a["source"] != "posture")
        .collect();
    assert!(alerts.is_empty(), "benign traffic alerted: {alerts:?}");

    // ICMP through a ping socket: no connect, no UDP sendmsg, still refused.
    let (code, out) = escape(&container, &["ping", &gateway]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    let alert = alert_with(&agent, "the ping's packet alert", |a| {
        a["details"]["op"] == "packet" && a["details"]["address"] == gateway.as_str()
    });
    assert_eq!(alert["details"]["protocol"], "icmp", "{alert}");
    assert_eq!(alert["details"]["verdict"], "blocked", "{alert}");
    assert!(
        alert["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("icmp packet to "),
        "{alert}"
    );

    // A raw socket (allowed to exist under the default socket rule): its packets are not.
    let (code, out) = escape(&container, &["raw-ping", "192.0.2.1"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    let alert = alert_with(&agent, "the raw packet alert", |a| {
        a["details"]["op"] == "packet" && a["details"]["address"] == "192.0.2.1"
    });
    assert_eq!(alert["details"]["sock_type"], 3, "{alert}");
    assert_eq!(alert["details"]["verdict"], "blocked", "{alert}");
}

/// Host pids of every process in the container's cgroup subtree.
fn subtree_pids(container: &TestContainer) -> Vec<u32> {
    let root = PathBuf::from(format!("{}{}", cgroup2_mount(), cgroup_path(container)));
    let mut pids = Vec::new();
    let mut pending = vec![root];
    while let Some(dir) = pending.pop() {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            pending.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    pids
}

fn has_mount_at(pid: u32, target: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .is_ok_and(|text| text.lines().any(|l| l.split(' ').nth(4) == Some(target)))
}

#[test]
fn a_mount_kept_by_a_child_in_a_new_namespace_is_undone() {
    let container = TestContainer::named("esc-mountns");
    container.run(&["--cap-add", "SYS_ADMIN"]);
    let (container, agent) = enforced(container, &["--no-auto-pause"]);
    let (code, out) = escape(&container, &["mountns", "/mnt"]);
    assert_eq!(code, 137, "the mounting process is killed: {out}");
    alert_with(&agent, "the killed mount", |a| {
        a["details"]["rule"] == "mount" && a["details"]["verdict"] == "killed"
    });
    let undo = alert_with(&agent, "the undo", |a| {
        a["details"]["target"] == "/mnt" && a["details"]["undo"].is_string()
    });
    assert_eq!(undo["details"]["undo"], "Unmounted", "{undo}");
    // The child that shares the new namespace lives on, without the mount.
    let namespaces: std::collections::HashSet<u64> = subtree_pids(&container)
        .into_iter()
        .filter_map(|pid| std::fs::metadata(format!("/proc/{pid}/ns/mnt")).ok())
        .map(|m| m.ino())
        .collect();
    assert!(
        namespaces.len() >= 2,
        "the child's namespace is gone: {namespaces:?}"
    );
    let left: Vec<u32> = subtree_pids(&container)
        .into_iter()
        .filter(|pid| has_mount_at(*pid, "/mnt"))
        .collect();
    assert!(
        left.is_empty(),
        "processes still see the mount on /mnt: {left:?}"
    );
    docker(&["exec", &container.name, "true"]);
}
