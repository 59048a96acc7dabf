//! Enforcement outlives the agent: the cgroup hooks are pinned in bpffs, so after `kill -9`
//! a blocked connect stays blocked; a new agent replaces the pins; `crabpot unload` lifts them.
use std::{path::Path, process::Command, time::Duration};

use crabpot_integration_tests::{Agent, DEADLINE, TestContainer, agent_bin, wait_until};

/// A connect to the bridge gateway on a closed port: EPERM while the policy is enforced,
/// "Connection refused" once it is not.
fn connect_outcome(container: &TestContainer) -> String {
    let url = format!("http://{}:18790/", container.gateway());
    let out = Command::new("docker")
        .args([
            "exec",
            &container.name,
            "wget",
            "-q",
            "-O",
            "/dev/null",
            &url,
        ])
        .output()
        .expect("docker exec");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn pins(container: &str) -> Vec<String> {
    std::fs::read_dir(Path::new("/sys/fs/bpf/crabpot").join(container))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn blocked_connects_stay_blocked_after_kill_9_until_unload() {
    let container = TestContainer::start("pinned");
    let mut agent = Agent::start(&container.name, &["--no-auto-pause"]);
    agent.wait_guarding(&container.name, container.cgroup_id());
    agent.wait_for_log(&["enforcing on cgroup", "pinned in"], DEADLINE);
    let blocked = connect_outcome(&container);
    assert!(blocked.contains("Operation not permitted"), "{blocked}");
    let first_pins = pins(&container.name);
    assert_eq!(first_pins.len(), 7, "seven hooks pinned: {first_pins:?}");

    // SAFETY: SIGKILL to the agent we started.
    unsafe { libc_kill(agent.pid() as i32, 9) };
    agent.wait_exit(DEADLINE);
    let after_kill = connect_outcome(&container);
    assert!(
        after_kill.contains("Operation not permitted"),
        "the policy must stay in force without the agent: {after_kill}"
    );
    assert_eq!(pins(&container.name), first_pins);

    // A new agent attaches its own hooks, then drops the old pins.
    let second = Agent::start(&container.name, &["--no-auto-pause"]);
    second.wait_for_log(&["replaced 7 hooks pinned by a previous agent"], DEADLINE);
    let now = pins(&container.name);
    assert_eq!(now.len(), 7, "{now:?}");
    assert!(now.iter().all(|p| !first_pins.contains(p)), "{now:?}");
    let still = connect_outcome(&container);
    assert!(still.contains("Operation not permitted"), "{still}");

    // Stopped cleanly, the agent still leaves the hooks in force...
    drop(second.keep_pins());
    let after_stop = connect_outcome(&container);
    assert!(
        after_stop.contains("Operation not permitted"),
        "{after_stop}"
    );
    // ...until the explicit command removes them.
    let crabpot = agent_bin().with_file_name("crabpot");
    let out = Command::new(&crabpot)
        .args(["unload", "--container", &container.name])
        .output()
        .expect("crabpot unload");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("removed 7 pinned hook(s)"),
        "{out:?}"
    );
    assert!(pins(&container.name).is_empty());
    let lifted = wait_until("the hooks to detach", Duration::from_secs(10), || {
        let out = connect_outcome(&container);
        (!out.contains("Operation not permitted")).then_some(out)
    });
    assert!(lifted.contains("refused"), "{lifted}");
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}
