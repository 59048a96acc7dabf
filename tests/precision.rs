//! Precision (issue 12): what Docker itself runs (the health probe, the configured main
//! process, a stop or restart) is not an attack, lookalikes from inside the container still
//! are, and an exec is judged by the program that ran, not by every PATH candidate.
use std::{
    os::unix::fs::PermissionsExt as _,
    process::Command,
    time::{Duration, Instant},
};

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, container::docker, guarded, test_image, unique_name, wait_until,
};
use serde_json::Value;

/// The shell-form health command the issue measured.
const HEALTH_CMD: &str = "wget -q -O- http://127.0.0.1:18789/health || exit 1";

fn is(alert: &Value, severity: &str, source: &str) -> bool {
    alert["severity"] == severity && alert["source"] == source
}

fn message(alert: &Value) -> &str {
    alert["message"].as_str().unwrap_or("")
}

fn criticals(agent: &Agent) -> Vec<Value> {
    agent
        .alerts()
        .into_iter()
        .filter(|a| a["severity"] == "CRITICAL")
        .collect()
}

fn probe_records(agent: &Agent) -> usize {
    agent
        .alerts()
        .into_iter()
        .filter(|a| is(a, "INFO", "processes") && message(a).starts_with("health probe"))
        .count()
}

/// An image whose entrypoint is a `#!/bin/sh` script that stays PID 1 (it starts httpd in
/// the background, ends on SIGTERM) with an exec-form health check that runs a shell.
/// Built per container under its own name, and removed with it.
fn script_image(tag: &str) {
    let dir = std::env::temp_dir().join(unique_name("image"));
    std::fs::create_dir_all(&dir).expect("image context");
    let script = dir.join("entrypoint.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nhttpd -p 18789 -h /www\ntrap 'exit 0' TERM\nwhile sleep 1; do :; done\n",
    )
    .expect("write entrypoint");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("chmod entrypoint");
    let dockerfile = format!(
        "FROM {}\nCOPY entrypoint.sh /entrypoint.sh\n\
         HEALTHCHECK --interval=1s --timeout=3s --retries=3 \
         CMD [\"/bin/sh\", \"-c\", \"wget -q -O /dev/null http://127.0.0.1:18789/health\"]\n\
         ENTRYPOINT [\"/entrypoint.sh\"]\nCMD []\n",
        test_image()
    );
    std::fs::write(dir.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    docker(&["build", "--quiet", "-t", tag, &dir.to_string_lossy()]);
    let _ = std::fs::remove_dir_all(&dir);
}

fn script_container(prefix: &str) -> TestContainer {
    let container = TestContainer::named(prefix);
    let tag = format!("{}-image:latest", container.name);
    script_image(&tag);
    let container = container.owning_image(tag.clone());
    docker(&["run", "-d", "--name", &container.name, &tag]);
    container
}

#[test]
fn shell_form_health_probes_are_trusted_and_an_operator_shell_is_not() {
    let container = TestContainer::named("probe");
    container.run(&["--health-cmd", HEALTH_CMD, "--health-interval", "1s"]);
    let (container, agent) = guarded(container, &[]);
    wait_until("three trusted probes", Duration::from_secs(30), || {
        (probe_records(&agent) >= 3).then_some(())
    });
    assert!(criticals(&agent).is_empty(), "{:?}", criticals(&agent));
    assert!(!container.is_paused());
    assert_eq!(container.inspect("{{.State.Health.Status}}"), "healthy");

    // An operator's `docker exec` also comes from runc, but is not the health test. Not
    // waited for: the kernel stops the shell before it runs, so it never returns.
    let mut operator = std::process::Command::new("docker")
        .args(["exec", &container.name, "sh", "-c", "id"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("docker exec");
    let alert = agent.wait_for_alert("the operator shell", |a| {
        is(a, "CRITICAL", "processes") && a["details"]["argv"][2] == "id"
    });
    assert_eq!(alert["details"]["origin"], "container");
    assert_eq!(alert["details"]["kernel_action"], "stopped", "{alert}");
    wait_until("auto-pause", DEADLINE, || {
        container.is_paused().then_some(())
    });
    docker(&["unpause", &container.name]);
    let _ = operator.kill();
    let _ = operator.wait();
}

#[test]
fn the_health_command_run_from_inside_the_container_is_critical() {
    let container = TestContainer::named("probelike");
    container.run(&["--health-cmd", HEALTH_CMD, "--health-interval", "1s"]);
    let (container, agent) = guarded(container, &["--no-auto-pause"]);
    wait_until("a trusted probe", Duration::from_secs(30), || {
        (probe_records(&agent) >= 1).then_some(())
    });
    // The inner shell shows exactly the probe's argv, but its parent is inside.
    let inner = format!("/bin/sh -c '{HEALTH_CMD}'; true");
    let _ = container.exec_status(&["sh", "-c", &inner]);
    let alert = agent.wait_for_alert("the lookalike", |a| {
        is(a, "CRITICAL", "processes")
            && a["details"]["argv"][0] == "/bin/sh"
            && a["details"]["argv"][2] == HEALTH_CMD
    });
    assert_eq!(alert["details"]["origin"], "container");
}

#[test]
fn a_shell_script_entrypoint_is_one_posture_warning_and_its_exec_form_probe_is_trusted() {
    let container = script_container("script");
    let (container, agent) = guarded(container, &["--process-poll-seconds", "1"]);
    let posture = agent.wait_for_alert("the posture warning", |a| {
        is(a, "WARNING", "processes") && message(a).starts_with("main process is a shell")
    });
    assert_eq!(posture["details"]["posture"], true);
    wait_until("trusted exec-form probes", Duration::from_secs(30), || {
        (probe_records(&agent) >= 3).then_some(())
    });
    // Several backstop polls later: still one warning, nothing critical, not frozen.
    std::thread::sleep(Duration::from_secs(3));
    let warnings = agent
        .alerts()
        .into_iter()
        .filter(|a| message(a).starts_with("main process is a shell"))
        .count();
    assert_eq!(warnings, 1);
    assert!(criticals(&agent).is_empty(), "{:?}", criticals(&agent));
    assert!(!container.is_paused());
}

#[test]
fn a_shell_form_command_is_the_app_and_what_it_starts_later_is_judged() {
    let container = TestContainer::named("shellform");
    // What `CMD <string>` in a Dockerfile becomes; it waits for a file, then runs a shell.
    let script = "while [ ! -e /tmp/go ]; do sleep 1; done; sh -c true; while sleep 1; do :; done";
    container.run_with(&[], &["/bin/sh", "-c", script]);
    let (container, agent) = guarded(container, &["--process-poll-seconds", "1"]);
    agent.wait_for_alert("the posture warning", |a| {
        is(a, "WARNING", "processes") && message(a).starts_with("main process is a shell")
    });
    assert!(criticals(&agent).is_empty(), "{:?}", criticals(&agent));
    assert!(!container.is_paused());
    container.put_file("/tmp/go", b"");
    let later = agent.wait_for_alert("the shell PID 1 starts later", |a| {
        is(a, "CRITICAL", "processes") && a["details"]["argv"][2] == "true"
    });
    assert_eq!(later["details"]["origin"], "container");
    wait_until("auto-pause", DEADLINE, || {
        container.is_paused().then_some(())
    });
    docker(&["unpause", &container.name]);
}

#[test]
fn a_path_lookup_is_judged_by_the_program_that_ran() {
    let (container, agent) = guarded(TestContainer::start("pathwalk"), &["--no-auto-pause"]);
    // env walks PATH (crabpot-evade is no busybox applet): two failed candidates, then
    // the helper runs and executes the real /bin/sh.
    container.exec(&[
        "env",
        "PATH=/nope1:/nope2:/bin",
        "crabpot-evade",
        "exec",
        "/bin/sh",
        "sh",
        "-c",
        "true",
    ]);
    let shell = agent.wait_for_alert("the shell alert", |a| is(a, "CRITICAL", "processes"));
    assert_eq!(shell["details"]["filename"], "/bin/sh");
    // busybox env runs its own applets through /proc/self/exe: one exec, one alert.
    container.exec(&["env", "PATH=/nope1:/nope2:/bin", "sh", "-c", "id"]);
    agent.wait_for_alert("the env shell alert", |a| {
        is(a, "CRITICAL", "processes") && a["details"]["argv"][2] == "id"
    });
    // A denylisted name found on the third try: one CRITICAL for what ran.
    container.exec(&["mkdir", "-p", "/tmp/pybin"]);
    container.exec(&["ln", "-sf", "/bin/busybox", "/tmp/pybin/python3"]);
    let _ = container.exec_status(&["env", "PATH=/nope1:/nope2:/tmp/pybin", "python3"]);
    let python = agent.wait_for_alert("the python alert", |a| {
        is(a, "CRITICAL", "processes") && a["details"]["executable"] == "python3"
    });
    assert_eq!(python["details"]["filename"], "/tmp/pybin/python3");
    assert_eq!(python["details"]["failed_path_candidates"], 2);
    // A name that is nowhere: at most one record, and it is not critical.
    let _ = container.exec_status(&["env", "PATH=/a:/b:/c", "perl"]);
    let failed = agent.wait_for_alert("the failed exec record", |a| {
        a["details"]["exec_failed"] == true && a["details"]["executable"] == "perl"
    });
    assert_eq!(failed["severity"], "INFO");
    assert_eq!(failed["details"]["tries"], 3);
    std::thread::sleep(Duration::from_secs(1));
    let alerts = agent.alerts();
    let critical: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["severity"] == "CRITICAL")
        .collect();
    assert_eq!(critical.len(), 3, "one per program that ran: {critical:?}");
    let mentions = |needle: &str| {
        alerts
            .iter()
            .filter(|a| a.to_string().contains(needle))
            .count()
    };
    assert_eq!(mentions("/nope1/"), 0, "failed candidates are no alerts");
    assert_eq!(mentions("perl"), 1, "{alerts:?}");
}

/// Run `docker` with `args` and return how long it took.
fn timed_docker(args: &[&str]) -> Duration {
    let started = Instant::now();
    docker(args);
    started.elapsed()
}

#[test]
fn stop_restart_and_removal_through_docker_are_not_attacks() {
    let container = script_container("stop");
    let (container, agent) = guarded(container, &[]);
    let restart = timed_docker(&["restart", &container.name]);
    assert!(restart < Duration::from_secs(5), "restart took {restart:?}");
    agent.wait_for_alert("the restart", |a| a["details"]["event"] == "restart");
    assert!(!container.is_paused());
    agent.wait_guarding(&container.name, container.cgroup_id());
    let stop = timed_docker(&["stop", &container.name]);
    assert!(stop < Duration::from_secs(5), "stop took {stop:?}");
    let stops = wait_until("two stop warnings and two INFO dies", DEADLINE, || {
        let alerts = agent.alerts();
        let count = |severity: &str, event: &str| {
            alerts
                .iter()
                .filter(|a| is(a, severity, "events") && a["details"]["event"] == event)
                .count()
        };
        (count("INFO", "die") == 2).then(|| count("WARNING", "kill"))
    });
    assert_eq!(stops, 2, "one warning per stop request");
    docker(&["start", &container.name]);
    agent.wait_guarding(&container.name, container.cgroup_id());
    docker(&["rm", "-f", &container.name]);
    agent.wait_for_alert("the removal's die", |a| {
        is(a, "INFO", "events")
            && a["details"]["event"] == "die"
            && a["details"]["exitCode"] == "137"
    });
    let alerts = agent.alerts();
    assert!(criticals(&agent).is_empty(), "{alerts:?}");
    assert!(
        !alerts.iter().any(|a| message(a).contains("auto-pause")),
        "{alerts:?}"
    );
    let warning = alerts
        .iter()
        .find(|a| is(a, "WARNING", "events"))
        .map(|a| message(a).to_string());
    assert_eq!(
        warning.as_deref(),
        Some("Container stopped through Docker, signal 15")
    );
}

#[test]
fn a_process_inside_killing_pid_1_still_alerts() {
    let (container, agent) = guarded(script_container("killone"), &[]);
    let _ = Command::new("docker")
        .args(["exec", &container.name, "kill", "1"])
        .output();
    let die = agent.wait_for_alert("the die alert", |a| {
        is(a, "CRITICAL", "events") && a["details"]["event"] == "die"
    });
    assert!(message(&die).contains("no stop requested"), "{die}");
}
