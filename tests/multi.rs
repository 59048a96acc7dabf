//! Several containers under one agent: containers chosen by a label selector are guarded at
//! once, each frozen alone by a shell in it; a matching container started later is guarded
//! within a second; a removed one is let go; a container without the label is left alone.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, agent_bin, container::docker_status, crabpot, free_port, http,
    pin_dir, unique_name, wait_until,
};
use serde_json::Value;

/// How soon a matching container started after the agent must be guarded.
const ATTACH_WITHIN: Duration = Duration::from_secs(1);

/// Removes the pinned hooks of the named containers (after the agent, which is declared
/// later and so dropped first); hooks outlive an agent by design.
struct Unpin(Vec<String>);

impl Drop for Unpin {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new(agent_bin().with_file_name("crabpot"))
                .args(["unload", "--container", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// An agent guarding every container labelled `crabpot.test=<label>`, plus `extra` flags.
fn start_agent(label: &str, address: &str, extra: &[&str]) -> Agent {
    let dir = std::env::temp_dir().join(unique_name("multi-agent"));
    std::fs::create_dir_all(&dir).expect("agent directory");
    let alerts_log = dir.join("alerts.log");
    let selector = format!("label=crabpot.test={label}");
    let mut command = Command::new(agent_bin());
    command
        .args(["--select", &selector, "--listen", address, "--alerts-log"])
        .arg(&alerts_log)
        .arg("--token-file")
        .arg(dir.join("token"))
        .args(extra);
    let mut agent = Agent::spawn(&mut command);
    agent.alerts_log = alerts_log;
    agent
}

/// The guarded containers `/api/status` lists: (name, id, state).
fn listed(address: &str) -> Vec<(String, String, String)> {
    let status: Value =
        serde_json::from_str(&http::get(address, "/api/status")).expect("status JSON");
    status["containers"]
        .as_array()
        .expect("containers in the status")
        .iter()
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (field("name"), field("id"), field("state"))
        })
        .collect()
}

/// The trust score `/api/status` gives container `name`.
fn trust_of(address: &str, name: &str) -> i64 {
    let status: Value =
        serde_json::from_str(&http::get(address, "/api/status")).expect("status JSON");
    status["containers"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .and_then(|c| c["trust_score"].as_i64())
        .unwrap_or_else(|| panic!("no trust for {name}: {status}"))
}

/// Whether `/api/status` lists `name` as running (its cgroup then in the kernel filter).
fn listed_running(address: &str, name: &str) -> bool {
    listed(address)
        .iter()
        .any(|(n, id, state)| n == name && !id.is_empty() && state == "running")
}

/// A shell in `target` freezes it, and only it: `others` keep running.
fn shell_freezes_only(agent: &Agent, target: &TestContainer, others: &[&TestContainer]) {
    // Stopped in the kernel at its exec: the client never returns, so it is not waited for.
    let _shell = target.spawn_exec(&["sh", "-c", "true"]);
    wait_until(&format!("{} frozen", target.name), DEADLINE, || {
        target.is_paused().then_some(())
    });
    let alert = agent.wait_for_alert("the shell alert", |a| {
        a["severity"] == "CRITICAL"
            && a["source"] == "processes"
            && a["container"]["name"] == target.name.as_str()
    });
    assert!(
        alert["container"]["id"]
            .as_str()
            .is_some_and(|id| id.len() == 64),
        "{alert}"
    );
    for other in others {
        assert!(!other.is_paused(), "{} was frozen too", other.name);
    }
    docker_status(&["unpause", &target.name]);
}

/// Run a command in `container` that must end on its own (it is not guarded: nothing stops
/// it), within `limit`.
fn exec_finishes(container: &TestContainer, command: &[&str], limit: Duration) -> bool {
    let mut child = Command::new("docker")
        .args(["exec", &container.name])
        .args(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker exec");
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

#[test]
fn label_selected_containers_are_guarded_each_on_its_own() {
    let label = unique_name("label");
    let with_label = ["--label", &format!("crabpot.test={label}")];
    let first = TestContainer::named("multi-a");
    first.run(&with_label);
    let second = TestContainer::named("multi-b");
    second.run(&with_label);
    // The negative case: the same image, no label.
    let unlabelled = TestContainer::start("multi-none");
    let late = TestContainer::named("multi-late");
    // Chosen by a name prefix (no label), and one named that does not exist (waited for).
    let prefixed = TestContainer::named("multi-prefix");
    prefixed.run(&[]);
    let prefix = format!("name={}*", &prefixed.name[..prefixed.name.len() - 2]);
    let missing = unique_name("multi-missing");
    let _unpin = Unpin(vec![
        first.name.clone(),
        second.name.clone(),
        late.name.clone(),
        prefixed.name.clone(),
    ]);
    let address = format!("127.0.0.1:{}", free_port());
    let agent = start_agent(
        &label,
        &address,
        &["--select", &prefix, "--container", &missing],
    );
    agent.wait_guarding(&first.name, first.cgroup_id());
    agent.wait_guarding(&second.name, second.cgroup_id());
    agent.wait_for_log(&["HTTP listener on"], DEADLINE);
    wait_until("both listed as running", DEADLINE, || {
        (listed_running(&address, &first.name) && listed_running(&address, &second.name))
            .then_some(())
    });
    wait_until("the prefixed one listed as running", DEADLINE, || {
        listed_running(&address, &prefixed.name).then_some(())
    });
    let all = listed(&address);
    let names: Vec<&str> = all.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names.len(),
        4,
        "the selected and the named ones only: {names:?}"
    );
    assert!(
        all.iter()
            .any(|(n, id, state)| n == &missing && id.is_empty() && state == "absent"),
        "{all:?}"
    );

    // Each shell freezes its own container; the other keeps running.
    shell_freezes_only(&agent, &first, &[&second, &unlabelled, &prefixed]);
    shell_freezes_only(&agent, &second, &[&first, &unlabelled]);
    // Not selected: a shell there is neither stopped nor frozen.
    assert!(
        exec_finishes(&unlabelled, &["sh", "-c", "true"], DEADLINE),
        "a shell in the unlabelled container did not finish"
    );
    assert!(!unlabelled.is_paused());

    // Trust is per container: a resume of one resets its trust alone, and a blocked connect
    // costs only the trust of the container it came from.
    let token = agent.alerts_log.with_file_name("token");
    let token = token.to_string_lossy();
    let second_trust = trust_of(&address, &second.name);
    let resume = [
        "resume",
        "--container",
        first.name.as_str(),
        "--agent",
        &address,
    ];
    let (ok, out) = crabpot(&[&resume[..], &["--token-file", &token]].concat());
    assert!(ok, "{out}");
    assert_eq!(trust_of(&address, &first.name), 100);
    assert_eq!(trust_of(&address, &second.name), second_trust);
    let url = format!(
        "http://{}:9/",
        first.inspect("{{.NetworkSettings.Gateway}}")
    );
    let (code, out) = first.exec_output(&["wget", "-q", "-O", "/dev/null", &url]);
    assert_ne!(code, 0, "the connect to {url} went through: {out}");
    wait_until("the first container's trust charged", DEADLINE, || {
        (trust_of(&address, &first.name) < 100).then_some(())
    });
    assert_eq!(trust_of(&address, &second.name), second_trust);

    // Started after the agent: guarded within a second of its start.
    late.run(&with_label);
    let started = Instant::now();
    wait_until("the late container guarded", DEADLINE, || {
        listed_running(&address, &late.name).then_some(())
    });
    let took = started.elapsed();
    eprintln!(
        "late container guarded {} ms after `docker run` returned",
        took.as_millis()
    );
    assert!(took <= ATTACH_WITHIN, "guarded only after {took:?}");
    // A shell one second after its start is caught in the kernel and frozen.
    std::thread::sleep(ATTACH_WITHIN.saturating_sub(started.elapsed()));
    shell_freezes_only(&agent, &late, &[&first, &second]);
    wait_until("its cgroup hooks pinned", DEADLINE, || {
        pin_dir(&late.name).exists().then_some(())
    });

    // Removed: no longer listed, its pinned hooks gone with it.
    docker_status(&["rm", "-f", &late.name]);
    let removed = Instant::now();
    wait_until("the removed container let go", DEADLINE, || {
        let names: Vec<String> = listed(&address).into_iter().map(|(n, _, _)| n).collect();
        (!names.contains(&late.name)).then_some(())
    });
    eprintln!(
        "removed container let go after {} ms",
        removed.elapsed().as_millis()
    );
    wait_until("its pins removed", DEADLINE, || {
        (!pin_dir(&late.name).exists()).then_some(())
    });
    let remaining: Vec<String> = listed(&address).into_iter().map(|(n, _, _)| n).collect();
    assert!(
        remaining.contains(&first.name) && remaining.contains(&second.name),
        "{remaining:?}"
    );
}
