//! Pending decisions: an auto-pause waits for `crabpot approve ID [--always]` or
//! `crabpot deny ID [--keep-frozen]`; `--always` writes the narrowest exception to the
//! managed conf.d/90-approved.yml and reloads (the same exec then passes, a near miss still
//! freezes); a pending decision survives an agent restart; unknown and stale ids are clear
//! errors; a decision whose container is removed expires (audited); the dashboard's Approve
//! button resumes the container in a real browser.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, agent_bin, crabpot, free_port, unique_name, wait_until,
};
use serde_json::Value;

/// A private directory for one test's configuration and state; removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(prefix: &str) -> Self {
        Self::with_config(prefix, "{}\n")
    }
    fn with_config(prefix: &str, monitor_yml: &str) -> Self {
        let dir = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(dir.join("config")).expect("config dir");
        std::fs::create_dir_all(dir.join("state")).expect("state dir");
        std::fs::write(dir.join("config/monitor.yml"), monitor_yml).expect("monitor.yml");
        Dir(dir)
    }
    fn config(&self) -> PathBuf {
        self.0.join("config/monitor.yml")
    }
    fn managed(&self) -> PathBuf {
        self.0.join("config/conf.d/90-approved.yml")
    }
    fn state(&self) -> PathBuf {
        self.0.join("state")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An agent guarding `container` with its configuration in `dir` and its state in
/// `dir/state` (STATE_DIRECTORY, as systemd gives it).
fn start_agent(container: &TestContainer, dir: &Dir, address: &str) -> Agent {
    let own = std::env::temp_dir().join(unique_name("decisions-agent"));
    std::fs::create_dir_all(&own).expect("agent dir");
    let alerts_log = own.join("alerts.log");
    let mut command = Command::new(agent_bin());
    command
        .args([
            "--container",
            &container.name,
            "--events",
            "json",
            "--alerts-log",
        ])
        .arg(&alerts_log)
        .arg("--token-file")
        .arg(own.join("token"))
        .arg("--config")
        .arg(dir.config())
        .args(["--listen", address])
        .env("STATE_DIRECTORY", dir.state());
    let mut agent = Agent::spawn(&mut command);
    agent.alerts_log = alerts_log;
    agent.wait_guarding(&container.name, container.cgroup_id());
    agent.wait_for_log(&["enforcing on cgroup"], DEADLINE);
    agent.wait_for_log(&["HTTP listener on"], DEADLINE);
    agent
}

/// `crabpot VERB ...` against this agent (its address and token file).
fn operator(agent: &Agent, address: &str, args: &[&str]) -> (bool, String) {
    let token = agent.alerts_log.with_file_name("token");
    let token = token.to_string_lossy().into_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--agent", address, "--token-file", &token]);
    crabpot(&all)
}

/// The pending decisions as the agent lists them (`crabpot pending --json`).
fn pending(agent: &Agent, address: &str) -> Vec<Value> {
    let (ok, text) = operator(agent, address, &["pending", "--json"]);
    assert!(ok, "crabpot pending failed: {text}");
    let parsed: Value = serde_json::from_str(text.trim()).expect("pending JSON");
    parsed["pending"].as_array().cloned().unwrap_or_default()
}

/// Wait until the container is frozen and a pending decision about `argv` is listed.
fn wait_pending(container: &TestContainer, agent: &Agent, address: &str, argv: &[&str]) -> Value {
    wait_until("the container to be auto-paused", DEADLINE, || {
        container.is_paused().then_some(())
    });
    let want: Vec<Value> = argv.iter().map(|a| Value::from(*a)).collect();
    wait_until("a pending decision about the exec", DEADLINE, || {
        pending(agent, address)
            .into_iter()
            .find(|d| d["subject"]["argv"].as_array() == Some(&want))
    })
}

fn wait_running(container: &TestContainer) {
    wait_until("the container to run again", DEADLINE, || {
        (!container.is_paused()).then_some(())
    });
}

/// A process is gone once it no longer exists or is a zombie awaiting its parent.
fn gone(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn audited(agent: &Agent, id: &str, action: &str) -> bool {
    let path = agent.alerts_log.with_file_name("audit.log");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .any(|line| {
            serde_json::from_str::<Value>(line).is_ok_and(|r| {
                r["details"]["decision_id"] == id && r["details"]["operator_action"] == action
            })
        })
}

#[test]
fn approve_once_then_always_and_a_near_miss_still_freezes() {
    let dir = Dir::new("decisions-approve");
    let address = format!("127.0.0.1:{}", free_port());
    let container = TestContainer::start("decide-approve");
    let agent = start_agent(&container, &dir, &address);
    let shell = ["sh", "-c", "echo crabpot-decide"];

    // (a) A shell freezes the container; the decision is listed; approve resumes it.
    let _first = container.spawn_exec(&shell);
    let decision = wait_pending(&container, &agent, &address, &shell);
    let id = decision["id"].as_str().expect("id").to_string();
    assert_eq!(decision["subject"]["kind"], "exec", "{decision}");
    let (ok, listed) = operator(&agent, &address, &["pending"]);
    assert!(
        ok && listed.contains(&id) && listed.contains("exec of"),
        "{listed}"
    );
    let pause_alert = agent.wait_for_alert("the auto-pause alert names the decision", |a| {
        a["details"]["decision_id"] == id.as_str()
    });
    assert!(
        pause_alert["details"]["decide"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("sudo crabpot approve {id}"))),
        "{pause_alert}"
    );
    let (ok, text) = operator(&agent, &address, &["approve", &id]);
    assert!(ok && text.contains("container resumed"), "{text}");
    assert!(
        text.contains("continued"),
        "the stopped shell is continued: {text}"
    );
    wait_running(&container);
    wait_until("the approval audited", DEADLINE, || {
        audited(&agent, &id, "approve").then_some(())
    });
    // (e) A second answer is stale; an unknown id says how to list them.
    let (ok, text) = operator(&agent, &address, &["deny", &id]);
    assert!(
        !ok && text.contains("stale") && text.contains("approve"),
        "{text}"
    );
    let (ok, text) = operator(&agent, &address, &["approve", "d-1-424242"]);
    assert!(!ok && text.contains("crabpot pending"), "{text}");
    assert!(!dir.managed().exists(), "approve once writes nothing");

    // The same shell freezes it again: approve --always writes the exception and reloads.
    let _second = container.spawn_exec(&shell);
    let again = wait_pending(&container, &agent, &address, &shell);
    let again_id = again["id"].as_str().expect("id").to_string();
    assert_ne!(again_id, id);
    let (ok, text) = operator(&agent, &address, &["approve", &again_id, "--always"]);
    assert!(ok && text.contains("90-approved.yml"), "{text}");
    wait_running(&container);
    let managed = std::fs::read_to_string(dir.managed()).expect("the managed file");
    assert!(
        managed.starts_with("# managed by crabpot approve"),
        "{managed}"
    );
    assert!(
        managed.contains(&format!("approved-{again_id}")),
        "{managed}"
    );
    let exception = format!("approved-{again_id}");
    agent.wait_for_alert("the reload with the approved exception", |a| {
        a["rule"] == "config_reload"
            && a["details"]["exceptions"]
                .as_array()
                .is_some_and(|e| e.iter().any(|n| n == exception.as_str()))
    });

    // --check-config reads the managed drop-in and names its exception.
    let out = Command::new(agent_bin())
        .arg("--check-config")
        .arg("--config")
        .arg(dir.config())
        .output()
        .expect("check-config");
    let checked = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{checked}");
    assert!(
        checked.contains("drop-in: ") && checked.contains("conf.d/90-approved.yml"),
        "{checked}"
    );
    assert!(
        checked.contains(&format!("exception {exception}: rules=exec,process")),
        "{checked}"
    );

    // (b) After the reload the same exec passes: audited under the exception, no freeze.
    let _third = container.spawn_exec(&shell);
    let audit = agent.alerts_log.with_file_name("audit.log");
    wait_until(
        "the exec audited under the approved exception",
        DEADLINE,
        || {
            std::fs::read_to_string(&audit)
                .unwrap_or_default()
                .contains(&format!("\"exception\":\"{exception}\""))
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !container.is_paused(),
        "the approved exec froze the container"
    );

    // A near miss (another argv) still freezes; deny kills it and resumes.
    let near = ["sh", "-c", "echo crabpot-decide; id"];
    let _near = container.spawn_exec(&near);
    let missed = wait_pending(&container, &agent, &address, &near);
    let missed_id = missed["id"].as_str().expect("id").to_string();
    let pid = missed["subject"]["pid"].as_u64().expect("pid");
    let (ok, text) = operator(&agent, &address, &["deny", &missed_id]);
    assert!(
        ok && text.contains(&format!("killed process {pid}")),
        "{text}"
    );
    wait_running(&container);
    wait_until("the denied process to be gone", DEADLINE, || {
        gone(pid).then_some(())
    });
    assert!(audited(&agent, &missed_id, "deny"));
}

#[test]
fn deny_keep_frozen_and_a_decision_survives_an_agent_restart() {
    let dir = Dir::new("decisions-restart");
    let address = format!("127.0.0.1:{}", free_port());
    let container = TestContainer::start("decide-restart");
    let agent = start_agent(&container, &dir, &address);

    // (c) deny --keep-frozen: the process is killed, the container stays frozen.
    let kept = ["sh", "-c", "echo crabpot-kept"];
    let _kept = container.spawn_exec(&kept);
    let decision = wait_pending(&container, &agent, &address, &kept);
    let id = decision["id"].as_str().expect("id").to_string();
    let pid = decision["subject"]["pid"].as_u64().expect("pid");
    let (ok, text) = operator(&agent, &address, &["deny", &id, "--keep-frozen"]);
    assert!(ok && text.contains("stays frozen"), "{text}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(container.is_paused(), "--keep-frozen resumed the container");
    // The killed process never runs again: gone once the operator thaws the container
    // (the cgroup v1 freezer holds the SIGKILL until then).
    crabpot_integration_tests::container::docker(&["unpause", &container.name]);
    wait_running(&container);
    wait_until("the denied process to be gone", DEADLINE, || {
        gone(pid).then_some(())
    });

    // (d) A pending decision outlives the agent that raised it.
    let waiting = ["sh", "-c", "echo crabpot-restart"];
    let _waiting = container.spawn_exec(&waiting);
    let decision = wait_pending(&container, &agent, &address, &waiting);
    let id = decision["id"].as_str().expect("id").to_string();
    drop(agent);
    // A dead agent is a clear error naming where it was looked for.
    let (ok, text) = crabpot(&["pending", "--agent", &address, "--token-file", "/dev/null"]);
    assert!(!ok, "{text}");
    let (ok, text) = crabpot(&[
        "approve",
        &id,
        "--agent",
        &address,
        "--token-file",
        "/etc/hostname",
    ]);
    assert!(!ok && text.contains(&format!("http://{address}")), "{text}");
    assert!(text.contains("is the service running"), "{text}");

    let agent = start_agent(&container, &dir, &address);
    let listed = pending(&agent, &address);
    assert!(listed.iter().any(|d| d["id"] == id.as_str()), "{listed:?}");
    let (ok, text) = operator(&agent, &address, &["approve", &id]);
    assert!(ok && text.contains("container resumed"), "{text}");
    wait_running(&container);
    assert!(pending(&agent, &address).is_empty());
}

#[test]
fn a_decision_whose_container_is_removed_expires_audited() {
    let dir = Dir::new("decisions-expire");
    let address = format!("127.0.0.1:{}", free_port());
    let container = TestContainer::start("decide-expire");
    let agent = start_agent(&container, &dir, &address);
    let argv = ["sh", "-c", "echo crabpot-expire"];
    let _shell = container.spawn_exec(&argv);
    let decision = wait_pending(&container, &agent, &address, &argv);
    let id = decision["id"].as_str().expect("id").to_string();

    // Removed while it waits: nothing is left to decide about.
    crabpot_integration_tests::container::docker(&["rm", "-f", &container.name]);
    wait_until("the decision to leave the pending list", DEADLINE, || {
        (!pending(&agent, &address)
            .iter()
            .any(|d| d["id"] == id.as_str()))
        .then_some(())
    });
    let (ok, text) = operator(&agent, &address, &["approve", &id]);
    assert!(!ok && text.contains("expired"), "{text}");
    wait_until("the expiry in audit.log", DEADLINE, || {
        audited(&agent, &id, "expire").then_some(())
    });
}

#[test]
fn the_dashboard_approve_button_resumes_the_container() {
    // An unanswered decision times out after 1 s and, by this setting, stays frozen: said
    // in an alert, still pending.
    let dir = Dir::with_config(
        "decisions-dashboard",
        "decisions: {timeout_seconds: 1, on_timeout: stay_frozen}\n",
    );
    let address = format!("127.0.0.1:{}", free_port());
    let container = TestContainer::start("decide-dashboard");
    let agent = start_agent(&container, &dir, &address);
    let token = std::fs::read_to_string(agent.alerts_log.with_file_name("token")).expect("token");

    // A newly blocked destination asks once; --always writes an address:port allow entry.
    let gateway = container.gateway();
    let url = format!("http://{gateway}:18790/");
    let wget = ["wget", "-q", "-O", "/dev/null", url.as_str()];
    container.exec_status(&wget);
    let asked = wait_until("a pending decision about the destination", DEADLINE, || {
        pending(&agent, &address).into_iter().find(|d| {
            d["subject"]["kind"] == "destination" && d["subject"]["address"] == gateway.as_str()
        })
    });
    let asked_id = asked["id"].as_str().expect("id").to_string();
    agent.wait_for_alert("the blocked connect names the decision", |a| {
        a["details"]["decision_id"] == asked_id.as_str() && a["details"]["verdict"] == "blocked"
    });
    container.exec_status(&wget);
    let (ok, text) = operator(&agent, &address, &["approve", &asked_id, "--always"]);
    let entry = format!("{gateway}:18790");
    assert!(
        ok && text.contains(&format!("allow entry `{entry}`")),
        "{text}"
    );
    let managed = std::fs::read_to_string(dir.managed()).expect("the managed file");
    assert!(managed.contains(&entry), "{managed}");
    // After the reload the kernel lets it through (nothing listens there: refused, not EPERM).
    wait_until(
        "the approved destination to be allowed in the kernel",
        DEADLINE,
        || {
            let (_, out) = container.exec_output(&wget);
            (!out.contains("Operation not permitted")).then_some(())
        },
    );
    assert!(
        !pending(&agent, &address)
            .iter()
            .any(|d| d["subject"]["kind"] == "destination"),
        "the same destination asked twice"
    );

    let shell = ["sh", "-c", "echo crabpot-dashboard"];
    let _shell = container.spawn_exec(&shell);
    let decision = wait_pending(&container, &agent, &address, &shell);
    let id = decision["id"].as_str().expect("id").to_string();
    let timed_out = agent.wait_for_alert("the timeout alert", |a| {
        a["rule"] == "decision_timeout" && a["details"]["decision_id"] == id.as_str()
    });
    assert!(
        timed_out["message"]
            .as_str()
            .is_some_and(|m| m.contains("stays pending and the container frozen")),
        "{timed_out}"
    );
    assert!(container.is_paused());

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("browser/decisions.mjs"))
        .arg(format!("http://{address}/?token={}", token.trim()))
        .arg(&id)
        .current_dir(root.join("browser"))
        .stderr(Stdio::inherit())
        .output()
        .expect("node (playwright-core installed by `cargo xtask setup`)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("LISTED") && said.contains("APPROVED"),
        "{said}"
    );
    wait_running(&container);
    wait_until("the dashboard approval audited", DEADLINE, || {
        audited(&agent, &id, "approve").then_some(())
    });
    let alert = agent.wait_for_alert("the decision alert", |a| {
        a["rule"] == "decision" && a["details"]["decision_id"] == id.as_str()
    });
    assert_eq!(alert["details"]["who"], "dashboard", "{alert}");
}
