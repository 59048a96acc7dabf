//! Fault: the alerts log's directory fills up (a 64 KiB tmpfs). Alerts must still reach the
//! terminal and the dashboard, the failure must be reported once (not per alert), the held
//! alerts must be written when space returns, and no line may be torn.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use crabpot_integration_tests::{Agent, DEADLINE, TestContainer, agent_bin, wait_until};
use serde_json::Value;

/// A small tmpfs, unmounted (and its parent removed) on drop, pass or fail.
struct Tmpfs {
    base: PathBuf,
    mount: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let base = std::env::temp_dir().join(crabpot_integration_tests::unique_name("full"));
        let mount = base.join("logs");
        std::fs::create_dir_all(&mount).expect("mount point");
        let tmpfs = Tmpfs { base, mount };
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&tmpfs.mount)
            .status()
            .expect("mount");
        assert!(status.success(), "mount -t tmpfs failed");
        tmpfs
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Make the container's main process print `lines` (no shell in the container).
fn print_lines(container: &TestContainer, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    container.put_file("/tmp/lines", text.as_bytes());
    container.exec(&["dd", "if=/tmp/lines", "of=/proc/1/fd/1"]);
}

/// Fill the file system holding `path` until it reports ENOSPC.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = [b'x'; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => panic!("a zero-byte write before the disk was full"),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => return,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

/// The alert messages the dashboard holds, as a fresh WebSocket client receives them.
fn dashboard_messages(port: u16) -> Vec<String> {
    const CLIENT: &str = "const ws = new WebSocket(process.argv[1]);\
        setTimeout(() => process.exit(3), 10000);\
        ws.onerror = () => process.exit(2);\
        ws.onmessage = (e) => { const m = JSON.parse(e.data);\
          if (m.type === 'hello') { console.log(JSON.stringify(m.alerts)); process.exit(0); } };";
    let out = Command::new("node")
        .args(["--experimental-websocket", "--no-warnings", "-e", CLIENT])
        .arg(format!("ws://127.0.0.1:{port}/ws"))
        .output()
        .expect("node");
    assert!(out.status.success(), "WebSocket client failed: {out:?}");
    let alerts: Vec<Value> = serde_json::from_slice(&out.stdout).expect("hello alerts");
    alerts
        .iter()
        .filter_map(|a| a["message"].as_str().map(String::from))
        .collect()
}

fn count_logs(agent: &Agent, needle: &str) -> usize {
    agent.logs().iter().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_full_log_directory_loses_no_alert_and_says_so_once() {
    let tmpfs = Tmpfs::mount("64k");
    let log = tmpfs.mount.join("alerts.log");
    let container = TestContainer::start("logfull");
    let mut command = Command::new(agent_bin());
    command
        .args([
            "--container",
            &container.name,
            "--events",
            "json",
            "--no-auto-pause",
        ])
        .args(["--listen", "127.0.0.1:0", "--alerts-log"])
        .arg(&log)
        .arg("--token-file")
        .arg(tmpfs.base.join("token"));
    let mut agent = Agent::spawn(&mut command);
    agent.alerts_log = log.clone();
    agent.wait_guarding(&container.name, container.cgroup_id());
    let listening = agent.wait_for_log(&["HTTP listener on 127.0.0.1:"], DEADLINE);
    let port: u16 = listening
        .rsplit("127.0.0.1:")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {listening:?}"));

    print_lines(&container, &["FATAL: before-full".to_string()]);
    agent.wait_for_alert("the alert before the disk is full", |a| {
        a["details"]["line"] == "FATAL: before-full"
    });

    let filler = tmpfs.mount.join("filler");
    fill(&filler);
    // Each alert line is about 600 bytes: together well past any slack in the last page.
    let during: Vec<String> = (0..30)
        .map(|i| format!("FATAL: during-full-{i:02} {}", "p".repeat(150)))
        .collect();
    print_lines(&container, &during);

    // The terminal and the dashboard still get every alert.
    for line in &during {
        agent.wait_for_log(&["logs: ", line], DEADLINE);
    }
    // The dashboard sink runs beside the terminal's: wait for it rather than race it.
    wait_until("the dashboard to hold every alert", DEADLINE, || {
        let shown = dashboard_messages(port);
        during
            .iter()
            .all(|line| shown.iter().any(|m| m.ends_with(line.as_str())))
            .then_some(())
    });
    let failed = format!(
        "cannot write alerts to {}: No space left on device",
        log.display()
    );
    agent.wait_for_log(&[&failed], DEADLINE);
    let logged = |agent: &Agent| -> Vec<String> {
        agent
            .alerts()
            .iter()
            .filter_map(|a| a["details"]["line"].as_str().map(String::from))
            .collect()
    };
    let written = logged(&agent);
    assert!(
        during.iter().any(|l| !written.contains(l)),
        "every alert was written: the disk was not full"
    );

    // Space returns: the held alerts are written, in order, and new ones too.
    std::fs::remove_file(&filler).expect("remove the filler");
    let recovered = format!("writing alerts to {} works again", log.display());
    agent.wait_for_log(&[&recovered], DEADLINE);
    print_lines(&container, &["FATAL: after-space".to_string()]);
    let written = wait_until("every alert in the log", DEADLINE, || {
        let written = logged(&agent);
        written
            .iter()
            .any(|l| l == "FATAL: after-space")
            .then_some(written)
    });
    let expected: Vec<String> = std::iter::once("FATAL: before-full".to_string())
        .chain(during.iter().cloned())
        .chain(std::iter::once("FATAL: after-space".to_string()))
        .collect();
    assert_eq!(written, expected, "alerts lost, repeated or reordered");
    let raw = std::fs::read(&log).expect("alerts log");
    assert_eq!(raw.last(), Some(&b'\n'), "a torn last line");
    let failure = format!("cannot write alerts to {}", log.display());
    assert_eq!(
        count_logs(&agent, &failure),
        1,
        "reported once, not per alert"
    );
    assert_eq!(count_logs(&agent, &recovered), 1);
    // The audit log shares the directory: at most one report for it too.
    let audit = log.with_file_name("audit.log");
    let audit_failure = format!("cannot write alerts to {}", audit.display());
    assert!(
        count_logs(&agent, &audit_failure) <= 1,
        "audit log reported per entry"
    );
    drop(agent);
}
