//! The dashboard in a real browser (Debian's chromium driven by playwright-core): alerts
//! caused in the real container appear without a reload, a `<script>` log line stays text,
//! pause without the token is refused and with it the container pauses.
use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use crabpot_integration_tests::{Agent, DEADLINE, TestContainer, wait_until};

#[test]
fn alerts_appear_live_and_control_needs_the_token() {
    let container = TestContainer::start("dashboard");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let address = format!("127.0.0.1:{port}");
    let agent = Agent::start(&container.name, &["--listen", &address, "--no-auto-pause"]);
    agent.wait_guarding(&container.name, container.cgroup_id());
    agent.wait_for_log(&["HTTP listener on"], DEADLINE);
    let token = std::fs::read_to_string(agent.alerts_log.with_file_name("token")).expect("token");

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let artifacts = root.join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let screenshot = artifacts.join("dashboard.png");
    let mut browser = Command::new("node")
        .arg(root.join("browser/dashboard.mjs"))
        .arg(format!("http://{address}/"))
        .arg(format!("http://{address}/?token={}", token.trim()))
        .arg(&screenshot)
        .current_dir(root.join("browser"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (playwright-core installed by `cargo xtask setup`)");
    let mut lines = BufReader::new(browser.stdout.take().expect("stdout")).lines();
    let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();

    assert_eq!(next(), "READY");
    // Caused after the page loaded: they must arrive over the WebSocket.
    let _ = container.exec_status(&["sh", "-c", "true"]);
    container.put_file(
        "/tmp/line",
        b"<script>window.pwned=1</script> FATAL: hostile\n",
    );
    container.exec(&["dd", "if=/tmp/line", "of=/proc/1/fd/1"]);
    assert_eq!(next(), "ALERTS_SHOWN");
    assert_eq!(next(), "UNAUTHENTICATED_REFUSED");
    assert_eq!(next(), "PAUSED");
    let status = browser.wait().expect("browser script");
    assert!(status.success());
    wait_until("the container to be paused", DEADLINE, || {
        container.is_paused().then_some(())
    });
    assert!(screenshot.exists());
    crabpot_integration_tests::container::docker(&["unpause", &container.name]);
}
