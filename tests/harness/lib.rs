//! Shared harness for the integration tests: each test owns a uniquely named container and
//! its own agent process; both are removed when the test ends, pass or fail.
pub mod agent;
pub mod container;
pub mod dns;
pub mod http;
pub mod wait;

pub use agent::Agent;
pub use container::TestContainer;
pub use wait::{DEADLINE, wait_until};

/// The agent binary under test (built by `cargo xtask test`).
pub fn agent_bin() -> std::path::PathBuf {
    std::env::var_os("CRABPOT_AGENT_BIN")
        .map(Into::into)
        .unwrap_or_else(|| {
            panic!(
                "CRABPOT_AGENT_BIN is not set: run the integration tests with `cargo xtask test` \
                 (as root), which builds the agent, starts dockerd and builds the test image"
            )
        })
}

/// Run the `crabpot` command built beside the agent: (success, stdout + stderr).
pub fn crabpot(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(agent_bin().with_file_name("crabpot"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run crabpot: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The locally built test image.
pub fn test_image() -> String {
    std::env::var("CRABPOT_TEST_IMAGE").unwrap_or_else(|_| "crabpot/openclaw-demo:latest".into())
}

/// The locally built image of the real OpenClaw gateway (`cargo xtask image --openclaw`).
pub fn openclaw_image() -> String {
    std::env::var("CRABPOT_OPENCLAW_IMAGE")
        .unwrap_or_else(|_| "crabpot/openclaw-real:2026.9.6".into())
}

/// A loopback port nothing listens on now (for an agent's `--listen` or a test server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A name no other test (or earlier run) uses.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "crabpot-it-{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Start an agent guarding `container` (with `extra` flags) and wait until it does.
pub fn guarded(container: TestContainer, extra: &[&str]) -> (TestContainer, Agent) {
    let agent = Agent::start(&container.name, extra);
    agent.wait_guarding(&container.name, container.cgroup_id());
    (container, agent)
}

/// [`guarded`], and also wait until the in-kernel cgroup hooks are attached.
pub fn enforced(container: TestContainer, extra: &[&str]) -> (TestContainer, Agent) {
    let (container, agent) = guarded(container, extra);
    agent.wait_for_log(&["enforcing on cgroup"], DEADLINE);
    (container, agent)
}

/// Where the agent pins the in-kernel hooks of `container`.
pub fn pin_dir(container: &str) -> std::path::PathBuf {
    std::path::Path::new("/sys/fs/bpf/crabpot").join(container)
}
