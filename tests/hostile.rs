//! Everything the guarded container emits is hostile. The real container prints log lines and
//! runs processes whose text carries ANSI escapes, control characters, invalid UTF-8, HTML
//! and huge lengths; the terminal sink must escape it, the alerts log must stay valid JSON
//! with the text preserved, the dashboard must show it as inert text, and everything must be
//! bounded. And the control API must not be usable from inside the container.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    process::{Command, Stdio},
};

use crabpot_integration_tests::{
    Agent, DEADLINE, TestContainer, agent_bin, container::docker, wait_until,
};
use serde_json::Value;

const ANSI: &str = "FATAL: ansi \u{1b}[2J\u{1b}[31mRED\u{1b}]0;owned-title\u{7} end";
const CONTROL: &str =
    "FATAL: ctl \u{0}\u{8}\u{8}\r\u{b}\u{c}\u{7f}\u{1}\u{1f}\u{9b}31m \u{202e}gnp end";
const SCRIPT: &str = "FATAL: <script>window.pwned=1</script>";
const IMG: &str = "FATAL: <img src=x onerror=\"window.pwned=2\">";
const INVALID_UTF8: &[u8] = b"FATAL: utf8 \xff\xfe\xc3( end";
/// The hostile part of a process path; the process runs as `{HOSTILE_DIR}/sh`.
const PATH_HTML: &str = "<img src=x onerror=window.pwned=3>";
/// Run in the container: renames its shell to a hostile name, then runs a shell from a
/// hostile directory (a symlink to busybox) as its child.
const SCRIPT_FILE: &[u8] = b"printf '\\033[31m\\377<b>pwn\\r' > /proc/self/comm\n\
d=$(printf '/tmp/p\\033]0;owned\\007\\033[2J\\r\\377<img src=x onerror=window.pwned=3>')\n\
mkdir -p \"$d\" && ln -sf /bin/busybox \"$d/sh\" && \"$d/sh\" -c true\n";
const EXPECTED_PATH: &str =
    "/tmp/p\u{1b}]0;owned\u{7}\u{1b}[2J\r\u{fffd}<img src=x onerror=window.pwned=3>/sh";
const EXPECTED_COMM: &str = "\u{1b}[31m\u{fffd}<b>pwn\r";

fn free_port(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A character that must never reach the terminal raw (controls, bidirectional overrides).
fn is_control(c: char) -> bool {
    (c.is_control() && c != '\t') || ('\u{202a}'..='\u{202e}').contains(&c)
}

fn line_of(alert: &Value) -> &str {
    alert["details"]["line"].as_str().unwrap_or("")
}

#[test]
fn hostile_text_is_escaped_bounded_and_inert_on_every_sink() {
    let container = TestContainer::start("hostile");
    let address = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let agent = Agent::start(&container.name, &["--listen", &address, "--no-auto-pause"]);
    agent.wait_guarding(&container.name, container.cgroup_id());
    agent.wait_for_log(&["HTTP listener on"], DEADLINE);

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script_payload = SCRIPT.trim_start_matches("FATAL: ");
    let img_payload = IMG.trim_start_matches("FATAL: ");
    let mut browser = Command::new("node")
        .arg(root.join("browser/hostile.mjs"))
        .arg(format!("http://{address}/"))
        .args([script_payload, img_payload, PATH_HTML])
        .current_dir(root.join("browser"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (playwright-core installed by `cargo xtask setup`)");
    let mut lines = BufReader::new(browser.stdout.take().expect("stdout")).lines();
    let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(next(), "READY");

    // The hostile log lines, written to the main process's stdout.
    let mut output = Vec::new();
    for line in [
        ANSI.as_bytes(),
        CONTROL.as_bytes(),
        SCRIPT.as_bytes(),
        IMG.as_bytes(),
    ] {
        output.extend_from_slice(line);
        output.push(b'\n');
    }
    output.extend_from_slice(INVALID_UTF8);
    output.extend_from_slice(b"\nFATAL: huge ");
    output.extend(std::iter::repeat_n(b'A', 100_000));
    output.extend_from_slice(b" tail\n");
    container.put_file("/tmp/lines", &output);
    container.exec(&["dd", "if=/tmp/lines", "of=/proc/1/fd/1"]);
    // The hostile process names and paths.
    container.put_file("/tmp/hostile.sh", SCRIPT_FILE);
    container.exec(&["sh", "/tmp/hostile.sh"]);

    assert_eq!(next(), "INERT", "the browser check failed");
    assert!(browser.wait().expect("browser script").success());

    // The alerts log: valid JSON (`alerts()` panics on any other line), text preserved.
    let logs = |text: &str| {
        let text = text.to_string();
        move |a: &Value| a["source"] == "logs" && line_of(a) == text
    };
    for text in [ANSI, CONTROL, SCRIPT, IMG] {
        let alert = agent.wait_for_alert(&format!("the alert for {text:?}"), logs(text));
        assert!(alert["message"].as_str().unwrap_or("").ends_with(text));
    }
    let utf8 = agent.wait_for_alert("the invalid UTF-8 alert", |a| {
        line_of(a).starts_with("FATAL: utf8 ")
    });
    assert!(line_of(&utf8).contains('\u{fffd}') && line_of(&utf8).ends_with("( end"));
    let huge = agent.wait_for_alert("the huge line's alert", |a| {
        line_of(a).starts_with("FATAL: huge AAAA")
    });
    let shown = line_of(&huge);
    assert!(
        shown.chars().count() <= 240,
        "not bounded: {} chars",
        shown.len()
    );
    assert!(
        shown.contains("…[truncated ") && shown.ends_with(" bytes]"),
        "{shown}"
    );
    let process = agent.wait_for_alert("the hostile process alert", |a| {
        a["source"] == "processes" && a["details"]["filename"] == EXPECTED_PATH
    });
    assert_eq!(process["details"]["comm"], EXPECTED_COMM, "{process}");
    assert!(
        process["message"]
            .as_str()
            .unwrap_or("")
            .contains(EXPECTED_PATH)
    );
    let raw = std::fs::read(&agent.alerts_log).expect("alerts log");
    for line in raw.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        assert!(
            line.len() < 16 * 1024,
            "an alert line of {} bytes",
            line.len()
        );
        assert!(
            !line.iter().any(|b| *b < 0x20),
            "a raw control byte in the alerts log: {}",
            String::from_utf8_lossy(line)
        );
    }

    // The terminal sink: escaped, not raw, on the agent's stderr.
    agent.wait_for_log(&["logs: ", r"ansi \u{1b}[2J\u{1b}[31mRED"], DEADLINE);
    agent.wait_for_log(
        &["processes: ", r"\u{1b}]0;owned\u{7}", PATH_HTML],
        DEADLINE,
    );
    let huge_line = agent.wait_for_log(&["logs: ", "FATAL: huge AAAA"], DEADLINE);
    assert!(
        huge_line.len() < 4096,
        "terminal line of {}",
        huge_line.len()
    );
    for line in agent.logs() {
        assert!(
            !line.chars().any(is_control),
            "a raw control character on the terminal: {line:?}"
        );
    }

    // `crabpot alerts` prints the same log on a terminal: escaped too.
    let out = Command::new(agent_bin().with_file_name("crabpot"))
        .args(["alerts", "--last", "100", "--file"])
        .arg(&agent.alerts_log)
        .output()
        .expect("crabpot alerts");
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    assert!(
        out.status.success() && text.contains(r"ansi \u{1b}[2J"),
        "{text}"
    );
    assert!(text.contains(r"ctl \u{0}\u{8}\u{8}\r"), "{text}");
    assert!(text.contains(r"\u{9b}31m \u{202e}gnp end"), "{text}");
    for line in text.lines() {
        assert!(!line.chars().any(is_control), "raw control: {line:?}");
    }
}

#[test]
fn a_huge_command_line_is_bounded_in_the_alert() {
    let container = TestContainer::named("hugeargs");
    let huge = "A".repeat(100_000);
    // Started before the agent: the `docker top` poll reports it, with its whole command line.
    // Through `docker exec`: a container's own main process is only a posture warning.
    container.run_with(&[], &["sleep", "100000"]);
    docker(&[
        "exec",
        "-d",
        &container.name,
        "sh",
        "-c",
        "sleep 100000; true",
        &huge,
    ]);
    wait_until("the shell to run", DEADLINE, || {
        docker(&["top", &container.name])
            .contains("sleep 100000; true")
            .then_some(())
    });
    let agent = Agent::start(
        &container.name,
        &["--no-auto-pause", "--process-poll-seconds", "1"],
    );
    agent.wait_guarding(&container.name, container.cgroup_id());
    let alert = agent.wait_for_alert("the poll's shell alert", |a| {
        a["source"] == "processes" && a["details"]["detected_by"] == "docker top"
    });
    let args = alert["details"]["args"].as_str().unwrap_or("");
    assert!(args.starts_with("sh -c sleep 100000; true AAAA"), "{args}");
    assert!(
        args.chars().count() < 1100,
        "not bounded: {} chars",
        args.len()
    );
    assert!(
        args.contains("…[truncated ") && args.ends_with(" bytes]"),
        "{args}"
    );
    let raw = std::fs::read_to_string(&agent.alerts_log).expect("alerts log");
    assert!(
        raw.lines().all(|l| l.len() < 16 * 1024),
        "an unbounded alert line"
    );
    let terminal = agent.wait_for_log(&["processes: ", "Suspicious process"], DEADLINE);
    assert!(terminal.len() < 4096, "terminal line of {}", terminal.len());
}

/// `docker exec` a command in the container; whether it succeeded, and stdout plus stderr.
fn exec_output(container: &TestContainer, command: &[&str]) -> (bool, String) {
    let out = Command::new("docker")
        .args(["exec", &container.name])
        .args(command)
        .output()
        .expect("docker exec");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// busybox wget from inside the container (`-T` crashes busybox; `timeout` bounds it).
fn wget(container: &TestContainer, url: &str, extra: &[&str]) -> (bool, String) {
    let mut command = vec!["timeout", "10", "wget", "-q", "-O", "-"];
    command.extend_from_slice(extra);
    command.push(url);
    exec_output(container, &command)
}

#[test]
fn the_default_loopback_listener_is_unreachable_from_the_container() {
    let container = TestContainer::start("reach");
    let gateway = container.gateway();
    // Allow the gateway so the agent's own connect rule does not hide what the bind does.
    let agent = Agent::start(&container.name, &["--no-auto-pause", "--allow", &gateway]);
    agent.wait_guarding(&container.name, container.cgroup_id());
    let line = agent.wait_for_log(&["HTTP listener on 127.0.0.1:"], DEADLINE);
    let port: u16 = line
        .rsplit("127.0.0.1:")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    // The listener is up (from the host)…
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("the agent listens on loopback");
    // …but the container cannot reach it through the bridge gateway.
    for (path, extra) in [("", &[][..]), ("api/pause", &["--post-data="][..])] {
        let (ok, out) = wget(
            &container,
            &format!("http://{gateway}:{port}/{path}"),
            extra,
        );
        assert!(!ok, "reached the dashboard from the container: {out}");
        assert!(out.contains("refused"), "{out}");
    }
    assert!(!container.is_paused());
}

/// POST to the agent from the host with `token`; the HTTP status line.
fn host_post(address: &str, path: &str, token: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the agent");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response.lines().next().unwrap_or_default().to_string()
}

#[test]
fn beyond_loopback_no_control_action_works_without_the_token() {
    let container = TestContainer::start("remote");
    let gateway = container.gateway();
    let address = format!("{gateway}:{}", free_port(&gateway));
    let agent = Agent::start(
        &container.name,
        &[
            "--listen",
            &address,
            "--listen-remote",
            "--no-auto-pause",
            "--allow",
            &gateway,
        ],
    );
    agent.wait_guarding(&container.name, container.cgroup_id());
    agent.wait_for_log(&["HTTP listener on"], DEADLINE);
    let token = std::fs::read_to_string(agent.alerts_log.with_file_name("token")).expect("token");
    let token = token.trim();
    let wrong = "0".repeat(token.len());
    let bearer = format!("Authorization: Bearer {wrong}");

    // The container reaches the listener, and is refused everything without the token.
    let attempts: Vec<(String, Vec<&str>)> = vec![
        (format!("http://{address}/"), vec![]),
        (format!("http://{address}/api/status"), vec![]),
        (format!("http://{address}/metrics"), vec![]),
        (format!("http://{address}/api/pause"), vec!["--post-data="]),
        (format!("http://{address}/api/resume"), vec!["--post-data="]),
        (
            format!("http://{address}/api/pause"),
            vec!["--post-data=", "--header", &bearer],
        ),
        (
            format!("http://{address}/api/pause?token={wrong}"),
            vec!["--post-data="],
        ),
    ];
    for (url, extra) in &attempts {
        let (ok, out) = wget(&container, url, extra);
        assert!(!ok && out.contains("401"), "{url} {extra:?}: {out}");
    }
    // A real WebSocket handshake for the live feed (busybox wget cannot send one). stdin
    // stays open a while: the server drops a connection whose client half-closes first.
    let (host, port) = address.rsplit_once(':').expect("host:port");
    let handshake = |query: &str| {
        let script = format!(
            "{{ printf 'GET /ws{query} HTTP/1.1\\r\\nHost: {address}\\r\\n\
             Connection: Upgrade\\r\\nUpgrade: websocket\\r\\nSec-WebSocket-Version: 13\\r\\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n\\r\\n'; sleep 3; }} \
             | timeout 10 nc {host} {port}"
        );
        exec_output(&container, &["sh", "-c", &script]).1
    };
    let refused = handshake("");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    // The same handshake with the token is accepted: the refusal was the token's doing.
    let accepted = handshake(&format!("?token={token}"));
    assert!(accepted.starts_with("HTTP/1.1 101"), "{accepted}");
    assert!(!container.is_paused(), "paused without the token");

    // With the token the same endpoint works, so the refusals above were the token's doing.
    assert!(host_post(&address, "/api/pause", token).contains(" 200 "));
    wait_until("the container to be paused", DEADLINE, || {
        container.is_paused().then_some(())
    });
    docker(&["unpause", &container.name]);
}
