//! `cargo xtask test`: the README's test command and what `.ci/run` calls.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};

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
    // Integration tests: real dockerd, real kernel, the agent binary built here.
    in_root(&cargo, &["build", "-p", "crabpot-agent"])?;
    let env = IntegrationEnv {
        agent: root.join("target/debug/crabpot-agent"),
        image,
        // The Debian package, installed and purged by tests/package.rs.
        deb: crate::dist::dist()?,
        // The real gateway for tests/openclaw.rs (its npm install cached; skipped when
        // current).
        openclaw_image: crate::openclaw_image::build_openclaw_image()?,
    };
    in_root(
        &cargo,
        &["test", "-p", "crabpot-integration-tests", "--no-run"],
    )?;
    // The real gateway's soak is five minutes of mostly waiting: it runs beside the load
    // test and the fuzzing (neither is timed against a deadline), not after everything.
    let soak = Soak::start(&env, filter)?;
    let cpu_bound = async_free_stages(&cargo, &root);
    let tests = integration_tests()?;
    let beside_soak: Vec<&str> = tests
        .iter()
        .map(String::as_str)
        .filter(|t| !ALONE.contains(t))
        .collect();
    let others = cpu_bound.and_then(|()| run_integration(&env, &cargo, &beside_soak, filter));
    let soaked = soak.finish();
    others?;
    soaked?;
    // Restarting dockerd would break any test beside it: last, alone.
    run_integration(&env, &cargo, &[RESTARTS_DOCKERD], filter)?;
    // The BPF LSM layer, which this host refuses to load, in a throwaway VM.
    crate::vm::vm_test("6.1")?;
    eprintln!(
        "xtask: all tests passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The integration test that soaks the real gateway (run beside the rest).
const SOAK_TEST: &str = "openclaw";
/// The integration test that restarts dockerd (run alone, after everything else).
const RESTARTS_DOCKERD: &str = "daemon_restart";
/// What does not run in the main batch.
const ALONE: &[&str] = &[SOAK_TEST, RESTARTS_DOCKERD];

/// `cargo test` of the integration `tests`, each its own binary, one after another.
fn run_integration(
    env: &IntegrationEnv,
    cargo: &str,
    tests: &[&str],
    filter: Option<&str>,
) -> anyhow::Result<()> {
    let mut integration = env.command(cargo);
    integration.args(["test", "-p", "crabpot-integration-tests"]);
    for name in tests {
        integration.args(["--test", name]);
    }
    integration.arg("--").args(filter);
    cmd::run_command(&mut integration)
}

/// What every integration test binary is given.
struct IntegrationEnv {
    agent: PathBuf,
    image: String,
    deb: PathBuf,
    openclaw_image: String,
}

impl IntegrationEnv {
    fn command(&self, cargo: &str) -> Command {
        let mut command = Command::new(cargo);
        command
            .current_dir(cmd::workspace_root())
            .env("CRABPOT_AGENT_BIN", &self.agent)
            .env("CRABPOT_TEST_IMAGE", &self.image)
            .env("CRABPOT_DEB", &self.deb)
            .env("CRABPOT_OPENCLAW_IMAGE", &self.openclaw_image);
        command
    }
}

/// The load test and the fuzz targets: CPU-bound, with no deadline a soak could disturb.
fn async_free_stages(cargo: &str, root: &Path) -> anyhow::Result<()> {
    // The alert path under load (half a minute; ignored by plain `cargo test`).
    cmd::run_command(Command::new(cargo).current_dir(root).args([
        "test",
        "-p",
        "crabpot-agent",
        "--test",
        "load",
        "--",
        "--ignored",
        "--nocapture",
    ]))?;
    // Each fuzz target briefly, from a scratch copy of its committed corpus.
    crate::fuzz::fuzz(crate::fuzz::TEST_SECONDS, Some(crate::fuzz::TEST_SEED))
}

/// The `[[test]]` names of the integration test crate.
fn integration_tests() -> anyhow::Result<Vec<String>> {
    let manifest = cmd::workspace_root().join("tests/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let mut names = Vec::new();
    let mut in_test = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_test = line == "[[test]]";
        } else if in_test && let Some(value) = line.strip_prefix("name") {
            let name = value.trim_start().trim_start_matches('=').trim();
            names.push(name.trim_matches('"').to_string());
        }
    }
    for alone in ALONE {
        if !names.iter().any(|n| n == alone) {
            bail!("{} has no [[test]] named `{alone}`", manifest.display());
        }
    }
    Ok(names)
}

/// The soak running in the background, its output kept in a file (printed when it ends,
/// so it does not interleave with the other tests').
struct Soak {
    child: Child,
    log: PathBuf,
}

impl Soak {
    fn start(env: &IntegrationEnv, filter: Option<&str>) -> anyhow::Result<Self> {
        let dir = cmd::workspace_root().join("target/test-artifacts");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let log = dir.join("openclaw-soak.log");
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = env.command(&setup::cargo());
        command
            .args([
                "test",
                "-p",
                "crabpot-integration-tests",
                "--test",
                SOAK_TEST,
            ])
            .arg("--")
            .args(filter)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        eprintln!(
            "xtask: tests/{SOAK_TEST}.rs runs in the background (log: {})",
            log.display()
        );
        let child = command
            .spawn()
            .context("starting the real gateway's test")?;
        Ok(Soak { child, log })
    }

    /// Wait for it, print its output, and fail if it failed.
    fn finish(mut self) -> anyhow::Result<()> {
        let status = self
            .child
            .wait()
            .context("waiting for the real gateway's test")?;
        let output = std::fs::read_to_string(&self.log).unwrap_or_default();
        eprintln!("xtask: tests/{SOAK_TEST}.rs output:\n{output}");
        if !status.success() {
            bail!("tests/{SOAK_TEST}.rs failed ({status}); its output is above");
        }
        Ok(())
    }
}
