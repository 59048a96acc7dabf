//! The operator in the loop: exceptions in monitor.yml silence exactly their match, and the
//! announced break-glass shell (`crabpot shell`) is a WARNING naming the operator's uid,
//! audited and not frozen, while an unannounced or replayed `docker exec` stays CRITICAL.
use std::process::Command;

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, agent_bin, crabpot, enforced, free_port, unique_name,
    wait_until,
};
use serde_json::Value;

fn audit_records(agent: &Agent) -> Vec<Value> {
    let path = agent.alerts_log.with_file_name("audit.log");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn argv_is(alert: &Value, want: &[&str]) -> bool {
    alert["details"]["argv"].as_array().is_some_and(|a| {
        a.iter()
            .map(|v| v.as_str().unwrap_or(""))
            .eq(want.iter().copied())
    })
}

fn critical_with(agent: &Agent, filename: &str, argv: &[&str]) -> bool {
    agent.alerts().iter().any(|a| {
        a["severity"] == "CRITICAL" && a["details"]["filename"] == filename && argv_is(a, argv)
    })
}

const CONFIG: &str = "exceptions:\n  - name: ops-echo\n    rules: [exec, process]\n    \
                      executable: /bin/sh\n    argv: '\\S+ -c echo crabpot-ok'\n";

#[test]
fn an_exception_silences_exactly_its_match() {
    let dir = std::env::temp_dir().join(unique_name("operator-config"));
    std::fs::create_dir_all(&dir).expect("config dir");
    let config = dir.join("monitor.yml");
    std::fs::write(&config, CONFIG).expect("write config");
    let config_arg = config.to_string_lossy().into_owned();

    // --check-config names the exception.
    let out = Command::new(agent_bin())
        .args(["--check-config", "--config", &config_arg])
        .output()
        .expect("check-config");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("exception ops-echo: rules=exec,process executable=/bin/sh"),
        "{text}"
    );

    let address = format!("127.0.0.1:{}", free_port());
    let (container, agent) = enforced(
        TestContainer::start("exception"),
        &[
            "--config",
            &config_arg,
            "--listen",
            &address,
            "--no-auto-pause",
        ],
    );
    agent.wait_for_log(&["HTTP listener on"], DEADLINE);
    let ok = ["/bin/sh", "-c", "echo crabpot-ok"];
    assert!(container.exec(&ok).contains("crabpot-ok"));
    // Near misses: another argv, another executable with the same argv shape.
    let other_argv = ["/bin/sh", "-c", "echo crabpot-other"];
    let other_exe = ["/bin/ash", "-c", "echo crabpot-ok"];
    container.exec(&other_argv);
    container.exec(&other_exe);
    wait_until("both near misses are CRITICAL", DEADLINE, || {
        (critical_with(&agent, "/bin/sh", &other_argv)
            && critical_with(&agent, "/bin/ash", &other_exe))
        .then_some(())
    });
    let alerts = agent.alerts();
    assert!(
        !alerts.iter().any(|a| argv_is(a, &ok)),
        "the excepted exec raised: {alerts:#?}"
    );
    let audited = audit_records(&agent);
    assert!(
        audited
            .iter()
            .any(|r| r["details"]["exception"] == "ops-echo" && argv_is(r, &ok)),
        "no audit record names the exception: {audited:#?}"
    );
    let metrics = crabpot_integration_tests::http::get(&address, "/metrics");
    assert!(
        metrics.contains("crabpot_exception_hits_total{exception=\"ops-echo\"} 1"),
        "{metrics}"
    );
    let (ok_status, status) = crabpot(&["status", "--agent", &address]);
    assert!(
        ok_status && status.contains("exception ops-echo: 1 hit(s)"),
        "{status}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_announced_shell_is_a_warning_and_a_replay_is_critical() {
    let address = format!("127.0.0.1:{}", free_port());
    let (container, agent) = enforced(TestContainer::start("glass"), &["--listen", &address]);
    agent.wait_for_log(&["HTTP listener on"], DEADLINE);
    let token = agent.alerts_log.with_file_name("token");
    let token = token.to_string_lossy().into_owned();
    let shell = |cmd: &[&str]| {
        let mut args = vec!["shell", "--agent", &address, "--token-file", &token, "--"];
        args.extend_from_slice(cmd);
        crabpot(&args)
    };

    // A wrong token is refused: no grant.
    let (ok, text) = crabpot(&[
        "shell",
        "--agent",
        &address,
        "--token-file",
        "/dev/null",
        "--",
        "id",
    ]);
    assert!(!ok && text.contains("401"), "{text}");

    let (ok, text) = shell(&["id"]);
    assert!(ok && text.contains("uid=0(root)"), "{text}");
    let warning = agent.wait_for_alert("the break-glass WARNING", |a| {
        a["details"]["break_glass"] == true && argv_is(a, &["id"])
    });
    assert_eq!(warning["severity"], "WARNING", "{warning:#}");
    assert!(
        warning["message"]
            .as_str()
            .is_some_and(|m| m.contains("break-glass shell by uid 0")),
        "{warning:#}"
    );
    wait_until("the audit record naming the uid", DEADLINE, || {
        audit_records(&agent)
            .into_iter()
            .find(|r| r["details"]["operator_uid"] == 0 && argv_is(r, &["id"]))
    });

    // A shell itself, announced: WARNING, not frozen.
    let (ok, text) = shell(&["sh", "-c", "echo glass"]);
    assert!(ok && text.contains("glass"), "{text}");
    agent.wait_for_alert("the announced shell", |a| {
        a["details"]["break_glass"] == true && argv_is(a, &["sh", "-c", "echo glass"])
    });
    assert!(
        !container.is_paused(),
        "the announced shell froze the container"
    );

    // The grant was used: the same argv again, unannounced, is CRITICAL and frozen (the
    // shell is stopped in the kernel: its docker exec never returns, so it is not waited for).
    let _replay = container.spawn_exec(&["sh", "-c", "echo glass"]);
    let critical = agent.wait_for_alert("the replayed exec", |a| {
        a["severity"] == "CRITICAL" && argv_is(a, &["sh", "-c", "echo glass"])
    });
    assert_ne!(critical["details"]["break_glass"], true, "{critical:#}");
    wait_until("the container frozen", DEADLINE, || {
        container.is_paused().then_some(())
    });
}
