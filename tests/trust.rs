//! Fair trust: repeats of one blocked act count once, one quarantine alert per transition,
//! trust per container instance, audited operator resets; and sensitive reads alert.
use std::process::Command;

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, agent_bin, container::docker, enforced, free_port, wait_until,
};
use serde_json::Value;

/// A guarded container and its agent on a known control address.
struct Guarded {
    container: TestContainer,
    agent: Agent,
    address: String,
}

impl Guarded {
    fn start(prefix: &str) -> Self {
        let address = format!("127.0.0.1:{}", free_port());
        let (container, agent) = enforced(
            TestContainer::start(prefix),
            &["--listen", &address, "--no-auto-pause"],
        );
        agent.wait_for_log(&["HTTP listener on"], DEADLINE);
        Guarded {
            container,
            agent,
            address,
        }
    }

    /// `crabpot ARGS --agent ADDR --token-file F`: (success, output).
    fn crabpot(&self, args: &[&str]) -> (bool, String) {
        let token = self.agent.alerts_log.with_file_name("token");
        let token = token.to_string_lossy();
        let mut all = args.to_vec();
        all.extend(["--agent", &self.address, "--token-file", &token]);
        crabpot_integration_tests::crabpot(&all)
    }

    fn trust(&self) -> i64 {
        let out = Command::new(agent_bin().with_file_name("crabpot"))
            .args(["status", "--json", "--agent", &self.address])
            .output()
            .expect("crabpot status");
        let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        status["trust_score"].as_i64().expect("trust_score")
    }

    fn wait_trust(&self, score: i64) {
        wait_until(&format!("trust {score}"), DEADLINE, || {
            (self.trust() == score).then_some(())
        });
    }

    /// A connect to the bridge gateway's `port`: outside the allowlist, so blocked.
    fn blocked_connect(&self, port: u16) {
        let url = format!("http://{}:{port}/", self.container.gateway());
        let (code, out) = self
            .container
            .exec_output(&["wget", "-q", "-O", "/dev/null", &url]);
        assert_ne!(code, 0, "the connect to {url} went through: {out}");
    }

    fn blocked_alerts(&self, port: u16) -> usize {
        self.agent
            .alerts()
            .iter()
            .filter(|a| a["details"]["verdict"] == "blocked" && a["details"]["port"] == port)
            .count()
    }

    fn quarantine_alerts(&self) -> usize {
        let alerts = self.agent.alerts();
        alerts
            .iter()
            .filter(|a| a["details"]["quarantine"] == true)
            .count()
    }
}

#[test]
fn retries_of_one_blocked_connect_are_one_violation_and_one_alert() {
    let g = Guarded::start("retries");
    for _ in 0..5 {
        g.blocked_connect(18794);
    }
    g.agent.wait_for_alert("the blocked connect", |a| {
        a["details"]["verdict"] == "blocked" && a["details"]["port"] == 18794
    });
    g.wait_trust(80);
    // Another destination is another act.
    g.blocked_connect(18795);
    g.wait_trust(60);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(g.blocked_alerts(18794), 1, "{:#?}", g.agent.alerts());
    assert_eq!(g.trust(), 60);
}

#[test]
fn one_quarantine_alert_and_an_audited_resume_brings_trust_back() {
    let g = Guarded::start("requarantine");
    let script = "for p in 18801 18802 18803 18804 18805; do \
                  wget -q -O /dev/null http://$0:$p/; done; true";
    let gateway = g.container.gateway();
    let _ = g.container.exec_output(&["sh", "-c", script, &gateway]);
    g.agent
        .wait_for_alert("the quarantine", |a| a["details"]["quarantine"] == true);
    wait_until("the quarantine freeze", DEADLINE, || {
        g.container.is_paused().then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(g.quarantine_alerts(), 1, "{:#?}", g.agent.alerts());

    let (ok, out) = g.crabpot(&["resume", "--container", &g.container.name]);
    assert!(ok, "{out}");
    assert!(out.contains("trust reset to 100 (was"), "{out}");
    assert!(!g.container.is_paused());
    assert_eq!(g.trust(), 100);
    let audit = g.agent.wait_for_alert("the audited reset", |a| {
        a["details"]["operator_action"] == "resume"
    });
    assert_eq!(audit["severity"], "INFO");
    assert!(
        audit["details"]["from"]
            .as_str()
            .is_some_and(|f| f.contains("127.0.0.1"))
    );

    // After the reset one violation costs 20, without a new quarantine.
    g.blocked_connect(18806);
    g.wait_trust(80);
    assert_eq!(g.quarantine_alerts(), 1);
    let (ok, out) = g.crabpot(&["trust", "reset"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("was 80 after 4 violations") || out.contains("was 80"),
        "{out}"
    );
    assert_eq!(g.trust(), 100);
}

#[test]
fn a_recreated_container_starts_at_full_trust() {
    let g = Guarded::start("instance");
    g.blocked_connect(18811);
    g.wait_trust(80);
    let old_id = g.container.inspect("{{.Id}}");
    docker(&["rm", "-f", &g.container.name]);
    g.container.run(&[]);
    assert_ne!(g.container.inspect("{{.Id}}"), old_id);
    g.agent.wait_for_alert("the new instance", |a| {
        a["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("New container instance"))
    });
    assert_eq!(g.trust(), 100);
    // The token without the agent is refused; a wrong token too.
    let out = Command::new(agent_bin().with_file_name("crabpot"))
        .args([
            "trust",
            "reset",
            "--agent",
            &g.address,
            "--token-file",
            "/nonexistent",
        ])
        .output()
        .expect("crabpot");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the control token"));
}

#[test]
fn another_process_environ_is_a_warning_and_audit_records_name_the_container() {
    let g = Guarded::start("sensitive");
    let (code, _) = g.container.exec_output(&["cat", "/proc/1/environ"]);
    assert_eq!(code, 0);
    let alert = g.agent.wait_for_alert("the sensitive read", |a| {
        a["details"]["rule"] == "sensitive_read"
    });
    assert_eq!(alert["severity"], "WARNING");
    assert_eq!(alert["details"]["path"], "/proc/1/environ");
    assert_eq!(alert["container"]["name"], g.container.name.as_str());
    assert!(alert["details"]["lineage"].is_array(), "{alert}");
    assert_eq!(g.trust(), 100, "a warning, not a violation");
    // Its own environment is not sensitive; /proc/1/status is an audit record with the
    // container, its id and the lineage.
    let _ = g
        .container
        .exec_output(&["cat", "/proc/self/environ", "/proc/1/status"]);
    let audit = g.agent.alerts_log.with_file_name("audit.log");
    let record: Value = wait_until("the audit record", DEADLINE, || {
        std::fs::read_to_string(&audit)
            .ok()?
            .lines()
            .find_map(|line| {
                let record: Value = serde_json::from_str(line).ok()?;
                (record["details"]["path"] == "/proc/1/status").then_some(record)
            })
    });
    assert_eq!(record["container"]["name"], g.container.name.as_str());
    let id = g.container.inspect("{{.Id}}");
    assert_eq!(record["container_id"], id.as_str());
    assert!(record["details"]["lineage"].is_array(), "{record}");
    assert!(
        !g.agent
            .alerts()
            .iter()
            .any(|a| a["details"]["path"] == "/proc/self/environ")
    );
}
