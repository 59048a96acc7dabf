//! `crabpot top` in a real terminal: a tmux session runs it against a running agent; the test
//! reads the screen (`capture-pane`) and types keys (`send-keys`). A new alert must be on
//! screen within 2 s, and the resume key must unfreeze the container.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crabpot_integration_tests::{DEADLINE, TestContainer, agent_bin, enforced, unique_name};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A detached tmux session, killed on drop (pass or fail).
struct Tmux {
    session: String,
}

impl Tmux {
    fn start(command: &[&str]) -> Self {
        let session = unique_name("top");
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", "160", "-y", "45"])
            .args(command)
            .status()
            .expect("tmux is installed (cargo xtask setup --test installs it)");
        assert!(status.success(), "tmux new-session failed");
        Tmux { session }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.session, keys])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Wait until the screen shows every needle; the screen, or a panic with the last one.
    fn wait_for(&self, needles: &[&str], deadline: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            assert!(
                start.elapsed() < deadline,
                "{needles:?} not on screen within {deadline:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the container table's row of `name` shows `state`.
    fn wait_state(&self, name: &str, state: &str, deadline: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            // The container table is the first place the name appears.
            let row = screen.lines().find(|l| l.contains(name)).unwrap_or("");
            if row.split_whitespace().any(|word| word == state) {
                return screen;
            }
            assert!(
                start.elapsed() < deadline,
                "`{name}` not {state} on screen within {deadline:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.session])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn top_shows_a_new_alert_within_two_seconds_and_resumes_on_a_key() {
    let address = format!("127.0.0.1:{}", free_port());
    let (container, agent) = enforced(TestContainer::start("top"), &["--listen", &address]);
    agent.wait_for_log(&["HTTP listener on"], DEADLINE);
    let token = agent.alerts_log.with_file_name("token");
    let crabpot = agent_bin().with_file_name("crabpot");
    let crabpot = crabpot.to_string_lossy();
    let token = token.to_string_lossy();
    let tmux = Tmux::start(&[
        &crabpot,
        "top",
        "--agent",
        &address,
        "--token-file",
        &token,
        "--interval-ms",
        "250",
    ]);

    // The guarded container, running, with the agent reachable.
    let name = container.name.as_str();
    let screen = tmux.wait_state(name, "running", DEADLINE);
    assert!(
        screen.contains("updated"),
        "the agent is reachable:\n{screen}"
    );
    assert!(
        !screen.contains("CRITICAL"),
        "no CRITICAL before the shell:\n{screen}"
    );
    let started = Instant::now();
    let _shell = container.spawn_exec(&["sh", "-c", "echo crabpot-top"]);
    let shown = tmux.wait_for(&["CRITICAL"], Duration::from_secs(5));
    let elapsed = started.elapsed();
    assert!(
        elapsed <= Duration::from_secs(2),
        "the CRITICAL took {elapsed:?} to reach the screen (target 2 s):\n{shown}"
    );
    eprintln!("crabpot top showed the CRITICAL {elapsed:?} after the shell started");
    assert!(container.is_paused(), "the shell froze the container");

    // `r` resumes it through the agent's token-protected API.
    tmux.wait_state(name, "paused", DEADLINE);
    tmux.keys("r");
    tmux.wait_state(name, "running", DEADLINE);
    let start = Instant::now();
    while container.is_paused() {
        assert!(
            start.elapsed() < DEADLINE,
            "`r` did not resume the container"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // `q` quits and leaves the terminal.
    tmux.keys("q");
    let start = Instant::now();
    while tmux.alive() {
        assert!(start.elapsed() < DEADLINE, "`q` did not end crabpot top");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn top_without_an_agent_says_so_and_keeps_running() {
    let address = format!("127.0.0.1:{}", free_port());
    let crabpot = agent_bin().with_file_name("crabpot");
    let tmux = Tmux::start(&[&crabpot.to_string_lossy(), "top", "--agent", &address]);
    let screen = tmux.wait_for(&["does not answer", &address], DEADLINE);
    assert!(screen.contains("(no guarded container)"), "{screen}");
    assert!(tmux.alive(), "top keeps running while the agent is away");
}
