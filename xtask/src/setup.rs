//! Idempotent machine set-up: everything the project needs, installed by its own files.
use std::{
    fs::OpenOptions,
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{cmd, images};

/// Debian packages: LLVM for bpf-linker, the Docker engine, busybox for the test images.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "docker.io",
    "containerd",
    "runc",
    "iptables",
    "busybox-static",
    "gcc",
    "libc6-dev",
    "systemd",
    "prometheus",
    "chromium",
];
const DOCKERD_LOG: &str = "/var/log/crabpot-dockerd.log";

/// Build the release agent (the binary users run) and return its path.
pub fn build_release_agent() -> anyhow::Result<std::path::PathBuf> {
    let root = cmd::workspace_root();
    cmd::run_command(Command::new(cargo()).current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "crabpot-agent",
    ]))?;
    Ok(root.join("target/release/crabpot-agent"))
}

pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Install what is missing, start dockerd, build the images. Returns the image tag.
pub fn setup() -> anyhow::Result<String> {
    cmd::require_root()?;
    let started = Instant::now();
    install_packages(PACKAGES)?;
    install_rust_pieces()?;
    install_browser_driver()?;
    start_dockerd()?;
    let image = images::build_demo_image()?;
    eprintln!(
        "xtask: set-up complete in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(image)
}

fn installed(package: &str) -> bool {
    cmd::output("dpkg-query", &["-W", "-f=${Status}", package])
        .is_ok_and(|status| status.contains("install ok installed"))
}

/// Install the Debian packages of `packages` that are missing.
pub fn install_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
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

fn install_rust_pieces() -> anyhow::Result<()> {
    let components = cmd::output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .unwrap_or_default();
    let has = |name: &str| components.lines().any(|c| c.starts_with(name));
    if !has("rust-src") || !has("clippy") {
        eprintln!("xtask: adding rust-src and clippy to the nightly toolchain");
        cmd::run(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        )?;
        cmd::run(
            "rustup",
            &[
                "component",
                "add",
                "rust-src",
                "clippy",
                "--toolchain",
                "nightly",
            ],
        )?;
    }
    if !cmd::succeeds("bpf-linker", &["--version"]) {
        eprintln!("xtask: building bpf-linker against LLVM 22 (a few minutes, once)");
        cmd::run_command(
            Command::new(cargo())
                .args([
                    "install",
                    "--locked",
                    "bpf-linker",
                    "--version",
                    "0.13.0",
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                ])
                .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
        )?;
    }
    if !cmd::succeeds(&cargo(), &["fuzz", "--version"]) {
        eprintln!("xtask: installing cargo-fuzz (the fuzz targets' runner; a few minutes, once)");
        cmd::run(&cargo(), &["install", "--locked", "cargo-fuzz"])?;
    }
    Ok(())
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
    if dir.join("node_modules/playwright-core").is_dir() {
        return Ok(());
    }
    if !cmd::succeeds("npm", &["--version"]) {
        bail!("npm is missing: install Node.js and npm (Debian: apt-get install nodejs npm)");
    }
    eprintln!("xtask: installing playwright-core (tests/browser, from package-lock.json)");
    cmd::run_command(
        Command::new("npm")
            .current_dir(&dir)
            .args(["ci", "--no-audit", "--no-fund"]),
    )
}
