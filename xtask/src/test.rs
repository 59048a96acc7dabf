//! `cargo xtask test`: the README's test command and what `.ci/run` calls.
use std::{process::Command, time::Instant};

use crate::{cmd, setup, toolchain};

pub(crate) fn test(filter: Option<&str>) -> anyhow::Result<()> {
    let started = Instant::now();
    let image = setup::setup_for_tests()?;
    let root = cmd::workspace_root();
    let cargo = setup::cargo();
    let in_root = |program: &str, args: &[&str]| {
        cmd::run_command(Command::new(program).current_dir(&root).args(args))
    };
    in_root(&cargo, &["fmt", "--all", "--", "--check"])?;
    // The host lint excludes the kernel crate (`no_std`, it cannot build next to `std`
    // crates); that one is linted for its own target with the pinned nightly.
    in_root(
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--exclude",
            "crabpot-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    cmd::run_command(toolchain::rustup_run("cargo").current_dir(&root).args([
        "clippy",
        "-p",
        "crabpot-ebpf",
        "--bin",
        "crabpot",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Unit tests: no root, no Docker needed.
    in_root(&cargo, &["test"])?;
    // The alert path under load (half a minute; ignored by plain `cargo test`).
    in_root(
        &cargo,
        &[
            "test",
            "-p",
            "crabpot-agent",
            "--test",
            "load",
            "--",
            "--ignored",
            "--nocapture",
        ],
    )?;
    // Each fuzz target briefly, from a scratch copy of its committed corpus.
    crate::fuzz::fuzz(crate::fuzz::TEST_SECONDS, Some(crate::fuzz::TEST_SEED))?;
    // Integration tests: real dockerd, real kernel, the agent binary built here.
    in_root(&cargo, &["build", "-p", "crabpot-agent"])?;
    let agent = root.join("target/debug/crabpot-agent");
    // The Debian package, installed and purged by tests/package.rs.
    let deb = crate::dist::dist()?;
    // The real gateway for tests/openclaw.rs (its npm install cached; skipped when current).
    let openclaw_image = crate::openclaw_image::build_openclaw_image()?;
    let mut integration = Command::new(&cargo);
    integration
        .current_dir(&root)
        .args(["test", "-p", "crabpot-integration-tests", "--"])
        .env("CRABPOT_AGENT_BIN", &agent)
        .env("CRABPOT_TEST_IMAGE", &image)
        .env("CRABPOT_DEB", &deb)
        .env("CRABPOT_OPENCLAW_IMAGE", &openclaw_image);
    if let Some(filter) = filter {
        integration.arg(filter);
    }
    cmd::run_command(&mut integration)?;
    // The BPF LSM layer, which this host refuses to load, in a throwaway VM.
    crate::vm::vm_test("6.1")?;
    eprintln!(
        "xtask: all tests passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
