//! `crabpot top` in a real terminal: a tmux session runs it against a running agent; the test
//! reads the screen (`capture-pane`) and types keys (`send-keys`). A new alert must be on
//! screen within 2 s; `a` approves and `d` denies the pending decision of a freeze, `p`
//! pauses, `r` resumes, `q` quits.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crabpot_integration_tests::{
    DEADLINE, TestContainer, agent_bin, enforced, free_port, unique_name,
};

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

    /// Wait until the pending-decisions panel lists a decision other than `besides`; its id.
    fn wait_pending(&self, besides: Option<&str>) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            let panel = screen
                .lines()
                .skip_while(|l| !l.contains("pending decisions"))
                .take_while(|l| !l.contains('└'));
            let ids: Vec<String> = panel
                .flat_map(|l| l.split(['│', ' ']))
                .filter(|w| w.starts_with("d-"))
                .map(str::to_string)
                .collect();
            if let Some(id) = ids.into_iter().find(|id| Some(id.as_str()) != besides) {
                return id;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no new pending decision on screen:\n{screen}"
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

/// Wait until Docker reports the container paused (or not).
fn wait_paused(container: &TestContainer, paused: bool, after: &str) {
    let start = Instant::now();
    while container.is_paused() != paused {
        assert!(
            start.elapsed() < DEADLINE,
            "after {after} the container is not {}",
            if paused { "paused" } else { "running" }
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn top_shows_a_new_alert_within_two_seconds_and_its_keys_decide() {
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

    // The freeze is a pending decision: `a` approves it (resumes, continues the shell).
    tmux.wait_state(name, "paused", DEADLINE);
    let first = tmux.wait_pending(None);
    tmux.keys("a");
    tmux.wait_state(name, "running", DEADLINE);
    wait_paused(&container, false, "`a` (approve)");

    // Another shell, another decision: `d` denies it (kills the shell, resumes).
    let _second = container.spawn_exec(&["sh", "-c", "echo crabpot-top-2"]);
    tmux.wait_state(name, "paused", DEADLINE);
    let second = tmux.wait_pending(Some(&first));
    assert_ne!(first, second);
    tmux.keys("d");
    tmux.wait_state(name, "running", DEADLINE);
    wait_paused(&container, false, "`d` (deny)");

    // `p` pauses and `r` resumes through the agent's token-protected API.
    tmux.keys("p");
    tmux.wait_state(name, "paused", DEADLINE);
    wait_paused(&container, true, "`p` (pause)");
    tmux.keys("r");
    tmux.wait_state(name, "running", DEADLINE);
    wait_paused(&container, false, "`r` (resume)");
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
