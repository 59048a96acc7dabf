//! Idempotent machine set-up: everything the project needs, installed by its own files.
use std::{
    fs::OpenOptions,
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{cmd, images, toolchain};

/// Debian packages that running the agent needs: LLVM for bpf-linker, the Docker engine,
/// busybox and a C compiler for the demo image.
const RUN_PACKAGES: &[&str] = &[
    "docker.io",
    "containerd",
    "runc",
    "iptables",
    "busybox-static",
    "gcc",
    "libc6-dev",
];
/// What only the test command needs: systemd (unit verification), Prometheus and Chromium for
/// the sink tests, Alertmanager for the alert routing tests, tmux to drive `crabpot top`,
/// libatomic1 for node in the real OpenClaw image. (QEMU for the VM test is
/// installed by `vm-test` itself.)
const TEST_PACKAGES: &[&str] = &[
    "systemd",
    "prometheus",
    "prometheus-alertmanager",
    "chromium",
    "libatomic1",
    "tmux",
];
/// The fuzz targets' runner, pinned.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
const DOCKERD_LOG: &str = "/var/log/crabpot-dockerd.log";

/// Build the release agent (the binary users run) and return its path.
pub(crate) fn build_release_agent() -> anyhow::Result<std::path::PathBuf> {
    let root = cmd::workspace_root();
    cmd::run_command(Command::new(cargo()).current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "crabpot-agent",
    ]))?;
    Ok(root.join("target/release/crabpot-agent"))
}

pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// What running the agent needs: install what is missing, start dockerd, build the demo
/// image. Returns the image tag.
pub(crate) fn setup() -> anyhow::Result<String> {
    cmd::require_root()?;
    let started = Instant::now();
    install_packages(&llvm_packages())?;
    install_packages(RUN_PACKAGES)?;
    toolchain::install()?;
    start_dockerd()?;
    let image = images::build_demo_image()?;
    eprintln!(
        "xtask: set-up complete in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(image)
}

/// Everything the test command needs beyond [`setup`]; returns the image tag.
pub(crate) fn setup_for_tests() -> anyhow::Result<String> {
    let image = setup()?;
    install_packages(TEST_PACKAGES)?;
    install_cargo_fuzz()?;
    install_browser_driver()?;
    Ok(image)
}

/// Debian's LLVM development packages bpf-linker is built against.
fn llvm_packages() -> Vec<String> {
    let major = crabpot_common::toolchain::BPF_LLVM_MAJOR;
    vec![format!("llvm-{major}-dev"), format!("libpolly-{major}-dev")]
}

fn installed(package: &str) -> bool {
    cmd::output("dpkg-query", &["-W", "-f=${Status}", package])
        .is_ok_and(|status| status.contains("install ok installed"))
}

/// Install the Debian packages of `packages` that are missing.
pub(crate) fn install_packages<S: AsRef<str>>(packages: &[S]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages {missing:?}");
    cmd::run("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    cmd::run_command(
        Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// cargo-fuzz at [`CARGO_FUZZ_VERSION`]: installed when missing or at another version.
fn install_cargo_fuzz() -> anyhow::Result<()> {
    let version = cmd::output(&cargo(), &["fuzz", "--version"]).unwrap_or_default();
    if version.split_whitespace().nth(1) == Some(CARGO_FUZZ_VERSION) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} (found: {:?}; a few minutes, once)",
        version.trim()
    );
    cmd::run(
        &cargo(),
        &[
            "install",
            "--locked",
            "--force",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
        ],
    )
}

fn docker_answers() -> bool {
    cmd::succeeds("docker", &["info", "--format", "{{.ID}}"])
}

/// Start dockerd in its own process group (no systemd here) and wait for its socket.
fn start_dockerd() -> anyhow::Result<()> {
    if docker_answers() {
        return Ok(());
    }
    eprintln!("xtask: starting dockerd (log: {DOCKERD_LOG})");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(DOCKERD_LOG)
        .with_context(|| format!("opening {DOCKERD_LOG}"))?;
    let log_err = log
        .try_clone()
        .context("duplicating the dockerd log handle")?;
    Command::new("dockerd")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .context("starting dockerd (is the docker.io package installed?)")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if docker_answers() {
            return Ok(());
        }
        sleep(Duration::from_millis(250));
    }
    bail!("dockerd did not answer within 60 s; see {DOCKERD_LOG}")
}

/// playwright-core for the dashboard test (it drives Debian's chromium; no browser download).
fn install_browser_driver() -> anyhow::Result<()> {
    let dir = cmd::workspace_root().join("tests/browser");
    let wanted = locked_version(&dir.join("package-lock.json"), "playwright-core")?;
    let installed = locked_version(
        &dir.join("node_modules/playwright-core/package.json"),
        "playwright-core",
    )
    .ok();
    if installed.as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    if !cmd::succeeds("npm", &["--version"]) {
        bail!("npm is missing: install Node.js and npm (Debian: apt-get install nodejs npm)");
    }
    eprintln!(
        "xtask: installing playwright-core {wanted} (tests/browser, from package-lock.json; \
         found {installed:?})"
    );
    cmd::run_command(
        Command::new("npm")
            .current_dir(&dir)
            .args(["ci", "--no-audit", "--no-fund"]),
    )
}

/// The version of `package` in a package-lock.json (`packages["node_modules/NAME"].version`)
/// or in the package's own package.json (`version`).
pub(crate) fn locked_version(file: &std::path::Path, package: &str) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    json.pointer(&format!("/packages/node_modules~1{package}/version"))
        .or_else(|| json.get("version"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("no version of {package} in {}", file.display()))
}
