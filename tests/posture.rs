//! How the container was launched: the posture audit at attach (and at re-creation) raises one
//! alert per risky setting without freezing the container or costing trust, and shows in
//! /metrics; `crabpot up --preset paranoid` launches a container whose settings Docker
//! reports and whose audit is clean; `crabpot down` removes it.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, container::docker, container::docker_status, crabpot,
    free_port, test_image, unique_name, wait_until,
};
use serde_json::Value;

/// GET `/metrics` from the agent.
fn metrics(address: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the agent");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

fn posture_alert(agent: &Agent, rule: &str) -> Value {
    agent.wait_for_alert(&format!("the {rule} alert"), |a| {
        a["source"] == "posture" && a["details"]["rule"] == rule
    })
}

fn rules(agent: &Agent) -> Vec<String> {
    agent
        .alerts()
        .iter()
        .filter(|a| a["source"] == "posture")
        .filter_map(|a| a["details"]["rule"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn docker_socket_and_sys_admin_are_critical_but_never_freeze() {
    let container = TestContainer::named("pos-sock");
    container.run(&["-v", "/var/run/docker.sock:/var/run/docker.sock"]);
    let address = format!("127.0.0.1:{}", free_port());
    // Auto-pause stays on: a CRITICAL posture alert must still not freeze.
    let agent = Agent::start(&container.name, &["--listen", &address]);
    agent.wait_guarding(&container.name, container.cgroup_id());
    let socket = posture_alert(&agent, "posture_docker_socket");
    assert_eq!(socket["severity"], "CRITICAL", "{socket}");
    assert_eq!(socket["details"]["no_pause"], true, "{socket}");
    assert_eq!(socket["container"]["name"], container.name.as_str());
    // The default run's other findings are there; a capability it was not given is not.
    posture_alert(&agent, "posture_root_user");
    posture_alert(&agent, "posture_no_memory_limit");
    assert!(!rules(&agent).iter().any(|r| r.starts_with("posture_cap_")));
    let text = wait_until("the posture metrics", DEADLINE, || {
        let text = metrics(&address);
        text.contains("crabpot_posture_score{").then_some(text)
    });
    assert!(
        text.contains(r#"crabpot_posture_findings{finding="docker_socket",severity="CRITICAL"} 1"#),
        "{text}"
    );

    assert!(
        !container.is_paused(),
        "the socket finding froze the container"
    );

    // Re-created under the same name, with SYS_ADMIN instead of the socket: audited again.
    docker(&["rm", "-f", &container.name]);
    container.run(&["--cap-add", "SYS_ADMIN"]);
    agent.wait_guarding(&container.name, container.cgroup_id());
    let cap = posture_alert(&agent, "posture_cap_sys_admin");
    assert_eq!(cap["severity"], "CRITICAL", "{cap}");
    wait_until("the re-created container's metrics", DEADLINE, || {
        let text = metrics(&address);
        (text.contains(r#"finding="cap_sys_admin",severity="CRITICAL"} 1"#)
            && !text.contains(r#"finding="docker_socket""#))
        .then_some(())
    });

    // Longer than an auto-pause takes (~35 ms): neither run was frozen, no trust was lost.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !container.is_paused(),
        "a posture alert froze the container"
    );
    let paused: Vec<Value> = agent
        .alerts()
        .into_iter()
        .filter(|a| a["details"]["auto_pause"] == true)
        .collect();
    assert!(paused.is_empty(), "{paused:?}");
    assert!(metrics(&address).contains("crabpot_trust_score 100"));
}

/// Removes the launched container when the test ends, pass or fail.
struct Launched(String);

impl Drop for Launched {
    fn drop(&mut self) {
        docker_status(&["rm", "-f", &self.0]);
    }
}

fn inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "--format", format, name])
}

#[test]
fn up_paranoid_launches_hardened_and_audits_clean() {
    let launched = Launched(unique_name("pos-up"));
    let name = launched.0.as_str();
    let image = test_image();
    let (ok, out) = crabpot(&[
        "up", "--preset", "paranoid", "--image", &image, "--name", name, "--port", "0", "--wait",
        "60",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("is healthy with the paranoid preset: http://127.0.0.1:"),
        "{out}"
    );
    let expect = [
        ("{{.HostConfig.ReadonlyRootfs}}", "true"),
        ("{{json .HostConfig.CapDrop}}", r#"["ALL"]"#),
        ("{{json .HostConfig.CapAdd}}", "null"),
        (
            "{{json .HostConfig.SecurityOpt}}",
            r#"["no-new-privileges:true"]"#,
        ),
        ("{{.HostConfig.Privileged}}", "false"),
        ("{{.HostConfig.Memory}}", "1610612736"),
        ("{{.HostConfig.MemorySwap}}", "1610612736"),
        ("{{.HostConfig.NanoCpus}}", "1500000000"),
        ("{{.HostConfig.PidsLimit}}", "256"),
        ("{{.Config.User}}", "65534:65534"),
        ("{{.State.Health.Status}}", "healthy"),
        (
            "{{range $p, $b := .NetworkSettings.Ports}}{{range $b}}{{.HostIp}}{{end}}{{end}}",
            "127.0.0.1",
        ),
    ];
    for (format, want) in expect {
        assert_eq!(inspect(name, format), want, "{format}");
    }
    let tmpfs = inspect(name, "{{json .HostConfig.Tmpfs}}");
    assert!(
        tmpfs.contains(r#""/tmp":"rw,nosuid,nodev,noexec"#),
        "{tmpfs}"
    );
    // What the kernel applies: seccomp filter mode, no new privileges, no capability.
    let status = docker(&["exec", name, "cat", "/proc/1/status"]);
    for line in ["Seccomp:\t2", "NoNewPrivs:\t1", "CapEff:\t0000000000000000"] {
        assert!(status.contains(line), "{line} missing:\n{status}");
    }
    assert!(
        !docker_status(&["exec", name, "touch", "/www/x"]),
        "root fs writable"
    );
    assert!(
        docker_status(&["exec", name, "touch", "/tmp/x"]),
        "/tmp not writable"
    );

    let (ok, out) = crabpot(&["audit", "--container", name]);
    assert!(ok && out.contains("score 100/100, 0 finding(s)"), "{out}");

    let (ok, out) = crabpot(&["down", "--name", name]);
    assert!(ok, "{out}");
    assert!(!docker_status(&["inspect", name]), "still there after down");
}

#[test]
fn audit_lists_a_default_runs_findings_and_fails() {
    let container = TestContainer::start("pos-audit");
    let (ok, out) = crabpot(&["audit", "--container", &container.name]);
    assert!(!ok, "a root container without limits audited clean: {out}");
    for finding in [
        "WARNING  posture_root_user",
        "WARNING  posture_no_memory_limit",
        "WARNING  posture_no_pids_limit",
        "INFO     posture_writable_rootfs",
    ] {
        assert!(out.contains(finding), "{finding} missing:\n{out}");
    }
    assert!(!out.contains("CRITICAL"), "{out}");
    let (ok, out) = crabpot(&["audit", "--container", &unique_name("absent")]);
    assert!(!ok && out.contains("not found"), "{out}");
}
