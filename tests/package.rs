//! The Debian package from `cargo xtask dist`, as an operator installs it: `dpkg -i`, the
//! installed agent validates its default configuration, `systemd-analyze verify` accepts the
//! installed unit, the installed agent guards a container and raises an alert, and
//! `dpkg --purge` leaves no file behind.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use crabpot_integration_tests::{Agent, TestContainer, unique_name};

const PACKAGE: &str = "crabpot";
/// Where a purge must leave things exactly as they were.
const WATCHED: &[&str] = &[
    "/usr/local",
    "/etc/crabpot",
    "/etc/systemd",
    "/usr/bin/crabpot",
    "/usr/bin/crabpot-agent",
    "/lib/systemd/system/crabpot-agent.service",
    "/lib/systemd/system/crabpot-agent@.service",
    "/usr/share/doc/crabpot",
];

fn deb() -> PathBuf {
    std::env::var_os("CRABPOT_DEB")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "CRABPOT_DEB is not set: `cargo xtask test` builds the package (cargo xtask dist)"
            )
        })
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every path under the watched places (files, links and directories).
fn snapshot() -> BTreeSet<PathBuf> {
    fn walk(path: &Path, into: &mut BTreeSet<PathBuf>) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        into.insert(path.to_path_buf());
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(path)
        {
            for entry in entries.flatten() {
                walk(&entry.path(), into);
            }
        }
    }
    let mut paths = BTreeSet::new();
    for place in WATCHED {
        walk(Path::new(place), &mut paths);
    }
    paths
}

/// Purges the package when the test ends, pass or fail.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", PACKAGE]);
    }
}

#[test]
fn the_package_installs_runs_and_purges_without_a_trace() {
    let (installed_before, _) = run("dpkg-query", &["-W", PACKAGE]);
    assert!(
        !installed_before,
        "the {PACKAGE} package is already installed on this host; purge it before the test"
    );
    let before = snapshot();
    let _purge = Purge;
    let deb = deb();
    let (ok, out) = run("dpkg", &["-i", &deb.to_string_lossy()]);
    assert!(ok, "dpkg -i {}: {out}", deb.display());

    let (ok, out) = run("/usr/bin/crabpot-agent", &["--check-config"]);
    assert!(
        ok,
        "the installed agent rejects its default configuration: {out}"
    );
    assert!(out.contains("rule connect: block"), "{out}");
    for unit in [
        "/lib/systemd/system/crabpot-agent.service",
        "/lib/systemd/system/crabpot-agent@.service",
    ] {
        let (ok, out) = run("systemd-analyze", &["verify", unit]);
        assert!(ok, "systemd-analyze verify of the installed {unit}: {out}");
    }

    alert_from_the_installed_agent();

    let (ok, out) = run("dpkg", &["--purge", PACKAGE]);
    assert!(ok, "dpkg --purge: {out}");
    let after = snapshot();
    let left: Vec<_> = after.difference(&before).collect();
    assert!(left.is_empty(), "the purge left these behind: {left:?}");
    assert!(!Path::new("/usr/bin/crabpot-agent").exists());
    assert!(!Path::new("/etc/crabpot").exists());
}

/// The installed binary (kernel object embedded) guards a container and alerts on a shell.
fn alert_from_the_installed_agent() {
    let container = TestContainer::start("package");
    let dir = std::env::temp_dir().join(unique_name("package"));
    std::fs::create_dir_all(&dir).expect("private dir");
    let log = dir.join("alerts.log");
    let mut command = Command::new("/usr/bin/crabpot-agent");
    command
        // The packaged configuration, with the test's container and private files.
        .args(["--config", "/etc/crabpot/monitor.yml"])
        .args(["--container", &container.name, "--events", "json"])
        .args(["--listen", "127.0.0.1:0", "--no-auto-pause", "--alerts-log"])
        .arg(&log)
        .arg("--token-file")
        .arg(dir.join("token"));
    let mut agent = Agent::spawn(&mut command);
    agent.alerts_log = log;
    agent.wait_guarding(&container.name, container.cgroup_id());
    let _ = container.exec_status(&["sh", "-c", "true"]);
    let alert = agent.wait_for_alert("a CRITICAL from the installed agent", |a| {
        a["severity"] == "CRITICAL" && a["details"]["executable"] == "sh"
    });
    assert_eq!(alert["source"], "processes", "{alert}");
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
