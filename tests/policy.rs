//! ASF-42 enforcement against a real container started with SYS_ADMIN and SYS_PTRACE, so
//! that only our policy can be the reason a call fails.
use std::process::Command;

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, container::docker, enforced, wait_until,
};
use serde_json::Value;

const CAPS: &[&str] = &["--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE"];

fn privileged(prefix: &str) -> TestContainer {
    let container = TestContainer::named(prefix);
    container.run(CAPS);
    container
}

fn exec(container: &TestContainer, command: &[&str]) -> (i32, String) {
    container.exec_output(command)
}

fn wget(container: &TestContainer, url: &str) -> (i32, String) {
    exec(container, &["wget", "-q", "-O", "/dev/null", url])
}

fn rule_alert(agent: &Agent, rule: &str, verdict: &str) -> Value {
    agent.wait_for_alert(&format!("a {rule} alert with verdict {verdict}"), |a| {
        a["details"]["rule"] == rule && a["details"]["verdict"] == verdict
    })
}

fn mounted(container: &TestContainer, target: &str) -> bool {
    let info =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", container.pid())).expect("mountinfo");
    info.lines()
        .any(|l| l.split_whitespace().nth(4) == Some(target))
}

#[test]
fn connects_outside_the_allowlist_fail_with_eperm_and_loopback_works() {
    let (container, agent) = enforced(privileged("connect"), &["--no-auto-pause"]);
    let gateway = container.gateway();
    let (code, out) = wget(&container, &format!("http://{gateway}:18790/"));
    assert_ne!(code, 0);
    assert!(out.contains("Operation not permitted"), "{out}");
    let (code, out) = wget(&container, "http://127.0.0.1:18789/health");
    assert_eq!(code, 0, "{out}");
    let alert = rule_alert(&agent, "connect", "blocked");
    assert_eq!(alert["severity"], "WARNING");
    assert_eq!(alert["details"]["address"], gateway.as_str());
    assert_eq!(alert["details"]["port"], 18790);
    assert_eq!(alert["details"]["comm"], "wget");
    // UDP goes through the same allowlist.
    let (code, out) = exec(&container, &["nslookup", "example.com", &gateway]);
    assert_ne!(code, 0);
    assert!(out.contains("Operation not permitted"), "{out}");
    agent.wait_for_alert("the UDP block", |a| {
        a["details"]["rule"] == "connect" && a["details"]["port"] == 53
    });
}

#[test]
fn packet_sockets_follow_the_socket_rule() {
    let container = privileged("packet");
    let gateway = container.gateway();
    // arping first connects a UDP socket to learn its source address: allow that, so the
    // packet socket is what the socket rule sees.
    let cidr = format!("{gateway}/32");
    let (container, agent) = enforced(container, &["--no-auto-pause", "--allow", &cidr]);
    // Default: alert, let through.
    exec(&container, &["arping", "-c", "1", "-w", "1", &gateway]);
    let alert = rule_alert(&agent, "socket", "alert");
    assert_eq!(alert["details"]["family"], 17, "AF_PACKET: {alert}");
    drop(agent);
    let agent = Agent::start(
        &container.name,
        &[
            "--no-auto-pause",
            "--allow",
            &cidr,
            "--rule",
            "socket=block",
        ],
    );
    agent.wait_for_log(&["enforcing on cgroup"], DEADLINE);
    // No hook can refuse a packet socket: the caller is killed.
    let (code, out) = exec(&container, &["arping", "-c", "1", "-w", "1", &gateway]);
    assert_eq!(code, 137, "{out}");
    let killed = rule_alert(&agent, "socket", "killed");
    assert_eq!(killed["details"]["family"], 17);
    // A raw IP socket is refused by the cgroup hook instead.
    let (code, out) = exec(&container, &["ping", "-c", "1", "-W", "1", &gateway]);
    assert_ne!(code, 0, "{out}");
    let blocked = rule_alert(&agent, "socket", "blocked");
    assert_eq!(blocked["details"]["sock_type"], 3, "SOCK_RAW: {blocked}");
}

#[test]
fn mount_is_killed_alerted_and_undone() {
    let (container, agent) = enforced(privileged("mount"), &["--no-auto-pause"]);
    let (code, out) = exec(&container, &["mount", "-t", "tmpfs", "none", "/mnt"]);
    assert_eq!(code, 137, "killed by SIGKILL: {out}");
    let alert = rule_alert(&agent, "mount", "killed");
    assert_eq!(alert["severity"], "CRITICAL");
    assert_eq!(alert["details"]["target"], "/mnt");
    assert_eq!(alert["details"]["comm"], "mount");
    agent.wait_for_alert("the undo report", |a| {
        a["source"] == "policy"
            && a["details"]["target"] == "/mnt"
            && a["details"]["undo"].is_string()
    });
    assert!(
        !mounted(&container, "/mnt"),
        "the mount is not left in place"
    );
}

#[test]
fn ptrace_attach_is_killed_and_alerted() {
    let (container, agent) = enforced(privileged("ptrace"), &["--no-auto-pause"]);
    let (code, out) = exec(&container, &["crabpot-ptrace-attach", "1"]);
    assert_eq!(code, 137, "killed by SIGKILL: {out}");
    let alert = rule_alert(&agent, "ptrace", "killed");
    assert_eq!(alert["details"]["request"], 16);
    assert_eq!(alert["details"]["target_pid"], 1);
}

#[test]
fn the_same_operations_on_the_host_still_succeed() {
    let (_container, _agent) = enforced(privileged("hostops"), &[]);
    let dir = std::env::temp_dir().join(crabpot_integration_tests::unique_name("mnt"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let target = dir.to_string_lossy().into_owned();
    let ok = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .status()
            .expect(program)
            .success()
    };
    assert!(ok("mount", &["-t", "tmpfs", "none", &target]), "host mount");
    assert!(ok("umount", &[&target]), "host umount");
    let _ = std::fs::remove_dir(&dir);
    let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
    let helper = crabpot_integration_tests::agent_bin()
        .parent()
        .and_then(|p| p.parent())
        .map(|target| target.join("images/crabpot-ptrace-attach"))
        .expect("target dir");
    let attached = Command::new(&helper)
        .arg(sleeper.id().to_string())
        .status()
        .expect("ptrace helper");
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(attached.success(), "host ptrace attach");
}

#[test]
fn three_violations_take_trust_to_40_and_quarantine() {
    let (container, agent) = enforced(privileged("trust"), &["--no-auto-pause"]);
    let gateway = container.gateway();
    for port in [18791, 18792, 18793] {
        wget(&container, &format!("http://{gateway}:{port}/"));
    }
    let quarantine = agent.wait_for_alert("the quarantine", |a| {
        a["severity"] == "CRITICAL" && a["details"]["quarantine"] == true
    });
    assert_eq!(quarantine["details"]["trust_score"], 40);
    assert_eq!(quarantine["details"]["violations"], 3);
    let logs = agent.logs().join("\n");
    for score in [80, 60, 40] {
        assert!(logs.contains(&format!("trust score now {score}")), "{logs}");
    }
    wait_until(
        "quarantine freezes even without auto-pause",
        DEADLINE,
        || container.is_paused().then_some(()),
    );
    docker(&["unpause", &container.name]);
}

#[test]
fn audit_mode_lets_calls_through_and_alerts_audit() {
    let (container, agent) = enforced(
        privileged("audit"),
        &[
            "--no-auto-pause",
            "--rule",
            "connect=audit",
            "--rule",
            "mount=audit",
        ],
    );
    let gateway = container.gateway();
    let (_, out) = wget(&container, &format!("http://{gateway}:18790/"));
    assert!(
        out.contains("Connection refused"),
        "reached the host: {out}"
    );
    rule_alert(&agent, "connect", "audit");
    let (code, out) = exec(&container, &["mount", "-t", "tmpfs", "none", "/mnt"]);
    assert_eq!(code, 0, "{out}");
    assert!(mounted(&container, "/mnt"));
    let alert = rule_alert(&agent, "mount", "audit");
    assert!(alert["message"].as_str().unwrap_or("").contains("audit"));
    assert!(!container.is_paused());
}

#[test]
fn clawbot_blocks_what_openclaw_with_an_allowlisted_cidr_permits() {
    let container = privileged("profiles");
    let gateway = container.gateway();
    let cidr = format!("{gateway}/32");
    let url = format!("http://{gateway}:18790/");
    {
        let (_, agent) = (
            &container,
            Agent::start(&container.name, &["--openclaw", "--allow", &cidr]),
        );
        agent.wait_for_log(&["enforcing on cgroup"], DEADLINE);
        let (_, out) = wget(&container, &url);
        assert!(
            out.contains("Connection refused"),
            "openclaw permits it: {out}"
        );
    }
    let agent = Agent::start(
        &container.name,
        &["--clawbot", "--allow", &cidr, "--no-auto-pause"],
    );
    agent.wait_for_log(&["enforcing on cgroup"], DEADLINE);
    let (_, out) = wget(&container, &url);
    assert!(
        out.contains("Operation not permitted"),
        "clawbot blocks it: {out}"
    );
}

#[test]
fn a_mount_refused_by_seccomp_is_still_a_violation() {
    // No SYS_ADMIN: Docker's default seccomp profile refuses mount before any entry hook.
    let container = TestContainer::start("seccomp");
    let (container, agent) = enforced(container, &["--no-auto-pause"]);
    let (code, _) = exec(&container, &["mount", "-t", "tmpfs", "none", "/mnt"]);
    assert_ne!(code, 0);
    let alert = rule_alert(&agent, "mount", "refused");
    assert_eq!(alert["severity"], "CRITICAL");
    assert!(agent.logs().join("\n").contains("trust score now 80"));
}

#[test]
fn proc_opens_are_logged_to_the_audit_log() {
    let (container, agent) = enforced(privileged("procopen"), &[]);
    exec(&container, &["cat", "/proc/1/status"]);
    let audit = agent.alerts_log.with_file_name("audit.log");
    wait_until("the audit record", DEADLINE, || {
        std::fs::read_to_string(&audit)
            .ok()
            .filter(|text| text.contains("open of /proc/1/status"))
    });
    assert!(
        !agent
            .alerts()
            .iter()
            .any(|a| a.to_string().contains("/proc/1/status"))
    );
}

#[test]
fn a_sighup_applies_a_new_allowlist_and_a_broken_file_is_refused() {
    let container = privileged("reload");
    let gateway = container.gateway();
    let dir = std::env::temp_dir().join(crabpot_integration_tests::unique_name("config"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = dir.join("monitor.yml");
    std::fs::write(&config, "auto_pause: false\nallow: []\n").expect("write config");
    let config_arg = config.to_string_lossy().into_owned();
    let (container, agent) = enforced(container, &["--config", &config_arg]);
    let url = format!("http://{gateway}:18790/");
    assert!(wget(&container, &url).1.contains("Operation not permitted"));

    std::fs::write(
        &config,
        format!("auto_pause: false\nallow: [\"{gateway}/32\"]\n"),
    )
    .expect("write config");
    let hup = |pid: u32| {
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP")
    };
    hup(agent.pid());
    agent.wait_for_alert("the reload", |a| {
        a["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Configuration reloaded")
    });
    let (_, out) = wget(&container, &url);
    assert!(
        out.contains("Connection refused"),
        "allowed after reload: {out}"
    );

    std::fs::write(&config, "auto_pause: false\npolicy:\n  connect: maybe\n").expect("write");
    hup(agent.pid());
    let refused = agent.wait_for_alert("the refused reload", |a| {
        a["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Configuration reload refused")
    });
    let text = refused["message"].as_str().unwrap_or("");
    assert!(
        text.contains(&format!("{config_arg}:3:")),
        "line and column: {text}"
    );
    let (_, out) = wget(&container, &url);
    assert!(out.contains("Connection refused"), "old policy kept: {out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_config_names_file_line_and_column() {
    let dir = std::env::temp_dir().join(crabpot_integration_tests::unique_name("check"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let config = dir.join("monitor.yml");
    std::fs::write(&config, "container: x\nthresholds:\n  cpu_pct: 90\n").expect("write");
    let out = Command::new(crabpot_integration_tests::agent_bin())
        .args(["--check-config", "--config"])
        .arg(&config)
        .output()
        .expect("run --check-config");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:3:3:", config.display())),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `cpu_pct`"), "{stderr}");
    std::fs::write(
        &config,
        "container: x\npolicy: {connect: audit}\nallow: [10.0.0.0/8]\n",
    )
    .expect("write");
    let out = Command::new(crabpot_integration_tests::agent_bin())
        .args(["--check-config", "--config"])
        .arg(&config)
        .output()
        .expect("run --check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("rule connect: audit") && stdout.contains("10.0.0.0/8"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// An /etc/hosts line for the duration of a test.
struct HostsLine(String);

impl HostsLine {
    fn add(line: String) -> Self {
        let mut hosts = std::fs::read_to_string("/etc/hosts").expect("read /etc/hosts");
        if !hosts.ends_with('\n') {
            hosts.push('\n');
        }
        hosts.push_str(&line);
        hosts.push('\n');
        std::fs::write("/etc/hosts", hosts).expect("write /etc/hosts");
        HostsLine(line)
    }
}

impl Drop for HostsLine {
    fn drop(&mut self) {
        if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
            let kept: String = hosts
                .lines()
                .filter(|l| *l != self.0)
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = std::fs::write("/etc/hosts", kept);
        }
    }
}

#[test]
fn allowlisted_host_names_are_resolved_by_the_agent() {
    let container = privileged("hostname");
    let gateway = container.gateway();
    let name = format!("{}.crabpot.test", container.name);
    let _line = HostsLine::add(format!("{gateway} {name}"));
    let allow = format!("{name}:18790");
    let (container, agent) = enforced(container, &["--no-auto-pause", "--allow", &allow]);
    agent.wait_for_log(
        &["allowlist hosts resolved", &format!("{gateway}:18790")],
        DEADLINE,
    );
    let (_, out) = wget(&container, &format!("http://{gateway}:18790/"));
    assert!(out.contains("Connection refused"), "allowed by name: {out}");
    let (_, out) = wget(&container, &format!("http://{gateway}:18791/"));
    assert!(
        out.contains("Operation not permitted"),
        "only that port: {out}"
    );
}
