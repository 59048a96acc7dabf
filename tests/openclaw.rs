//! Issue 12: the real OpenClaw gateway (`crabpot/openclaw-real`, built by
//! `cargo xtask image --openclaw`) runs clean under the agent's default `--openclaw` profile.
//!
//! For [`SOAK`] the gateway is exercised as a user would (HTTP health, readiness and the
//! Control UI, WebSocket connections, the `openclaw` CLI's status commands) while it does
//! its own start-up work (DNS lookups of its catalog and telemetry hosts, the image's
//! shell-form health check every 5 s). Nothing of that may raise a CRITICAL alert, cost
//! trust or freeze the container. Then a shell started from node is caught and frozen,
//! `crabpot resume` brings the gateway back, and a `docker restart` is quiet and quick.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, container::docker, crabpot, enforced, openclaw_image,
    unique_name, wait_until,
};
use serde_json::Value;

/// How long the gateway runs under the agent while being exercised.
const SOAK: Duration = Duration::from_secs(300);
/// Local debugging only: the soak in seconds instead of [`SOAK`].
const SOAK_ENV: &str = "CRABPOT_OPENCLAW_SOAK_SECS";
const PORT: u16 = 18789;
/// The gateway needs well over half a GiB; no tight limit.
const MEMORY: &str = "2g";
/// Between two rounds of HTTP and WebSocket traffic.
const ROUND: Duration = Duration::from_secs(5);
/// Between two CLI status calls.
const CLI_EVERY: Duration = Duration::from_secs(60);
/// The gateway's cold start (about 10 s alone, slower on a busy host) until healthy and ready.
const STARTUP: Duration = Duration::from_secs(120);
/// One HTTP request or WebSocket handshake.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon a shell from node must be alerted and the container frozen.
const CAUGHT_WITHIN: Duration = Duration::from_secs(5);
/// Docker's stop timeout for the restart. The gateway alone sometimes needs ~10 s to exit on a
/// busy 2-core host, so the default 10 s would test the host; 30 s leaves room for a slow
/// clean exit while a pause (which blocks the shutdown for good) still ends in a SIGKILL.
const RESTART_TIMEOUT_SECS: u64 = 30;
/// After the restart: how long the new run is watched for alerts.
const AFTER_RESTART: Duration = Duration::from_secs(30);

fn soak_duration() -> Duration {
    std::env::var(SOAK_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(SOAK)
}

/// The gateway container (its own token) under an agent with the default `--openclaw`
/// profile, the cgroup hooks attached.
fn start() -> (TestContainer, Agent) {
    let container = TestContainer::named("openclaw");
    let token = format!("OPENCLAW_GATEWAY_TOKEN={}", unique_name("token"));
    container.run_image(&openclaw_image(), &["--memory", MEMORY, "-e", &token], &[]);
    enforced(container, &["--openclaw"])
}

/// The gateway's address on the Docker bridge.
fn gateway_address(container: &TestContainer) -> String {
    let ip = container.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    format!("{ip}:{PORT}")
}

fn connect(address: &str) -> Result<TcpStream, String> {
    let socket = address.parse().map_err(|e| format!("{address}: {e}"))?;
    let stream = TcpStream::connect_timeout(&socket, IO_TIMEOUT)
        .map_err(|e| format!("connect {address}: {e}"))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("socket options: {e}"))?;
    Ok(stream)
}

/// A raw HTTP/1.1 GET: (status code, body).
fn http_get(address: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = connect(address)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status line in {head:?}"))?;
    Ok((code, body.to_string()))
}

/// GET `path` and require a 200 whose body contains `needle`.
fn expect_ok(address: &str, path: &str, needle: &str) -> Result<(), String> {
    match http_get(address, path)? {
        (200, body) if body.contains(needle) => Ok(()),
        (code, body) => Err(format!(
            "GET {path}: {code}, wanted 200 with {needle:?}: {}",
            body.chars().take(300).collect::<String>()
        )),
    }
}

/// Open a WebSocket to the gateway (HTTP upgrade, 101), then close it cleanly: a masked
/// close frame, and the server ends the connection.
fn websocket_open_close(address: &str) -> Result<(), String> {
    let mut stream = connect(address)?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: Y3JhYnBvdC1vcGVuY2xhdw==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("WebSocket upgrade: {e}"))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => return Err(format!("WebSocket upgrade: {other:?} after {head:?}")),
        }
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(format!("WebSocket upgrade refused: {head}"));
    }
    // Close, status 1000, masked with a zero key (as a client must mask).
    let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8];
    stream
        .write_all(&close)
        .map_err(|e| format!("WebSocket close: {e}"))?;
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .map_err(|e| format!("WebSocket close: the server did not end the connection: {e}"))?;
    Ok(())
}

/// One round of what a user's browser and tools do.
fn exercise(address: &str) -> Result<(), String> {
    expect_ok(address, "/healthz", r#""ok":true"#)?;
    expect_ok(address, "/readyz", r#""ready":true"#)?;
    expect_ok(address, "/", "<html")?;
    websocket_open_close(address)
}

/// Until Docker calls the container healthy and the gateway says it is ready; fails at once
/// when a CRITICAL alert after the first `skip` alerts appears or the container is frozen.
fn wait_ready(container: &TestContainer, agent: &Agent, address: &str, skip: usize) {
    wait_until("the gateway to be healthy and ready", STARTUP, || {
        if let Some(problem) = dirty(container, agent, skip) {
            panic!("before the gateway was ready: {problem}");
        }
        let health = container.inspect("{{if .State.Health}}{{.State.Health.Status}}{{end}}");
        (health == "healthy" && expect_ok(address, "/readyz", r#""ready":true"#).is_ok())
            .then_some(())
    });
}

/// CRITICAL alerts after the first `skip` alerts, or a frozen container, described.
fn dirty(container: &TestContainer, agent: &Agent, skip: usize) -> Option<String> {
    let critical: Vec<Value> = agent
        .alerts()
        .into_iter()
        .skip(skip)
        .filter(is_critical)
        .collect();
    let paused = container.is_paused();
    (paused || !critical.is_empty()).then(|| {
        format!(
            "paused: {paused}; {} CRITICAL alert(s):\n{}",
            critical.len(),
            alert_lines(&critical)
        )
    })
}

/// The `openclaw` CLI inside the container, against the local gateway.
fn cli_status(container: &TestContainer, call: usize) {
    let (command, needle): (&[&str], &str) = if call.is_multiple_of(2) {
        (&["openclaw", "gateway", "status"], "Connectivity probe: ok")
    } else {
        (&["openclaw", "status"], "Channels")
    };
    let (code, out) = container.exec_output(command);
    assert!(
        code == 0 && out.contains(needle),
        "{command:?} exited {code}, wanted {needle:?}:\n{out}"
    );
}

fn is_critical(alert: &Value) -> bool {
    alert["severity"] == "CRITICAL"
}

fn alert_lines(alerts: &[Value]) -> String {
    alerts
        .iter()
        .map(|a| {
            format!(
                "[{}] {}: {} {}",
                a["severity"].as_str().unwrap_or("?"),
                a["source"].as_str().unwrap_or("?"),
                a["message"].as_str().unwrap_or("?"),
                a["details"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The agent's /api/status (its listener address from its log).
fn agent_status(agent: &Agent) -> Value {
    let line = agent.wait_for_log(&["HTTP listener on"], DEADLINE);
    let address = line
        .split("HTTP listener on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let (code, body) =
        http_get(address, "/api/status").unwrap_or_else(|e| panic!("the agent's /api/status: {e}"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/api/status ({e}): {body}"))
}

/// Docker's `actions` events (e.g. pause, kill, die) for the container since `since` (Unix
/// seconds): action, signal or exit code, time.
fn docker_events(container: &TestContainer, since: u64, actions: &[&str]) -> Vec<String> {
    let now = unix_now() + 1;
    let (since, now) = (since.to_string(), now.to_string());
    let container_filter = format!("container={}", container.name);
    let action_filters: Vec<String> = actions.iter().map(|a| format!("event={a}")).collect();
    let mut args = vec!["events", "--since", &since, "--until", &now];
    args.extend(["--filter", &container_filter]);
    for filter in &action_filters {
        args.extend(["--filter", filter]);
    }
    let format = "{{.Action}}{{with .Actor.Attributes.signal}} signal {{.}}{{end}}\
                  {{with .Actor.Attributes.exitCode}} exit {{.}}{{end}} at {{.Time}}";
    args.extend(["--format", format]);
    docker(&args).lines().map(str::to_string).collect()
}

fn pause_events(container: &TestContainer, since: u64) -> Vec<String> {
    docker_events(container, since, &["pause"])
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// No CRITICAL alert, no violation, full trust, never paused since `since`.
fn assert_clean(container: &TestContainer, agent: &Agent, since: u64, when: &str) {
    let critical: Vec<Value> = agent.alerts().into_iter().filter(is_critical).collect();
    assert!(
        critical.is_empty(),
        "{when}: {} CRITICAL alert(s):\n{}",
        critical.len(),
        alert_lines(&critical)
    );
    let status = agent_status(agent);
    assert!(
        status["violations"] == 0 && status["trust_score"] == 100 && status["quarantined"] == false,
        "{when}: violations or lost trust: {status}"
    );
    let pauses = pause_events(container, since);
    assert!(
        pauses.is_empty() && !container.is_paused(),
        "{when}: the container was paused: {pauses:?}"
    );
}

/// Exercise the gateway for the soak duration, checking after every round.
fn soak(container: &TestContainer, agent: &Agent, address: &str, since: u64) {
    let duration = soak_duration();
    let started = Instant::now();
    let mut next_cli = Instant::now();
    let (mut rounds, mut cli_calls) = (0usize, 0usize);
    while started.elapsed() < duration {
        let when = format!("soak, {:.0} s in", started.elapsed().as_secs_f64());
        if let Err(e) = exercise(address) {
            panic!("{when}: {e}\nalerts:\n{}", alert_lines(&agent.alerts()));
        }
        rounds += 1;
        if Instant::now() >= next_cli {
            cli_status(container, cli_calls);
            cli_calls += 1;
            next_cli = Instant::now() + CLI_EVERY;
        }
        assert_clean(container, agent, since, &when);
        std::thread::sleep(ROUND);
    }
    assert!(cli_calls >= 2, "only {cli_calls} CLI calls");
    eprintln!("openclaw: {rounds} rounds and {cli_calls} CLI calls in {duration:?}, clean");
}

/// A shell from node (`execSync` runs /bin/sh): CRITICAL and frozen within
/// [`CAUGHT_WITHIN`]; `crabpot resume` brings the gateway back.
fn shell_from_node_is_caught(container: &TestContainer, agent: &Agent, address: &str) {
    let before = agent.alerts().len();
    // Frozen mid-call, docker exec returns only after the resume: run it aside.
    let mut exec = Command::new("docker")
        .args(["exec", &container.name, "node", "-e"])
        .arg("require('child_process').execSync('id')")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker exec node");
    let alert = wait_until("a CRITICAL for the shell from node", CAUGHT_WITHIN, || {
        agent.alerts().into_iter().skip(before).find(is_critical)
    });
    assert_eq!(alert["source"], "processes", "{alert}");
    wait_until("the container to be frozen", CAUGHT_WITHIN, || {
        container.is_paused().then_some(())
    });
    let (ok, out) = crabpot(&["resume", "--container", &container.name]);
    assert!(ok && out.contains("resumed"), "{out}");
    wait_until("the gateway to answer after the resume", DEADLINE, || {
        expect_ok(address, "/healthz", r#""ok":true"#).ok()
    });
    // The shell was stopped in the kernel before its first instruction and stays stopped
    // after the resume (an operator kills or continues it after review), so the node that
    // waits for it does not return: end the client.
    assert!(
        matches!(exec.try_wait(), Ok(None)),
        "the stopped shell's docker exec ended"
    );
    let _ = exec.kill();
    let _ = exec.wait();
    eprintln!("openclaw: shell from node caught: {}", alert["message"]);
}

/// `docker restart` of the gateway: quick, and raises no CRITICAL and no pause; the agent
/// follows the new run and the gateway serves again.
fn restart_is_quiet(container: &TestContainer, agent: &Agent) {
    let before = agent.alerts().len();
    let first_cgroup = container.cgroup_id();
    // Docker's event filter counts whole seconds: start in a second of our own, so the
    // freeze of the step before (its pause event) is not counted as the restart's.
    std::thread::sleep(Duration::from_millis(1100));
    let since = unix_now();
    let started = Instant::now();
    let timeout = RESTART_TIMEOUT_SECS.to_string();
    docker(&["restart", "-t", &timeout, &container.name]);
    let took = started.elapsed();
    let mut problems = Vec::new();
    // Without Docker's kill timeout: the gateway exited on SIGTERM, never SIGKILLed.
    let stops = docker_events(container, since, &["kill", "die"]);
    if took >= Duration::from_secs(RESTART_TIMEOUT_SECS)
        || stops
            .iter()
            .any(|e| e.contains("signal 9") || e.contains("exit 137"))
    {
        problems.push(format!(
            "docker restart took {took:?} and ended in Docker's kill: {stops:?}"
        ));
    }
    let watch_until = Instant::now() + AFTER_RESTART;
    while Instant::now() < watch_until {
        if let Some(problem) = dirty(container, agent, before) {
            problems.push(format!("after the restart: {problem}"));
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let pauses = pause_events(container, since);
    if !pauses.is_empty() {
        problems.push(format!("pauses after the restart: {pauses:?}"));
    }
    assert!(
        problems.is_empty(),
        "{}\nall alerts since the restart:\n{}",
        problems.join("\n"),
        alert_lines(&agent.alerts()[before..])
    );
    let second_cgroup = wait_until("the restarted container's cgroup", DEADLINE, || {
        let id = container.cgroup_id();
        (id != first_cgroup).then_some(id)
    });
    agent.wait_guarding(&container.name, second_cgroup);
    let address = gateway_address(container);
    wait_ready(container, agent, &address, before);
    if let Err(e) = exercise(&address) {
        panic!("after the restart: {e}");
    }
    eprintln!("openclaw: docker restart in {took:?}, quiet");
}

#[test]
fn the_real_gateway_runs_clean_under_the_openclaw_profile() {
    let since = unix_now();
    let (container, agent) = start();
    let address = gateway_address(&container);
    wait_ready(&container, &agent, &address, 0);
    assert_clean(&container, &agent, since, "after start-up");
    soak(&container, &agent, &address, since);
    shell_from_node_is_caught(&container, &agent, &address);
    restart_is_quiet(&container, &agent);
}
