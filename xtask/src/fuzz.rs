//! `cargo xtask fuzz` and part of `cargo xtask test`: the libFuzzer targets in `fuzz/`, built
//! once (the pinned nightly, AddressSanitizer, debug assertions), then each run for a bounded time from a
//! scratch copy of its committed seed corpus, so a run never dirties the tree. A crash, panic,
//! leak or hang fails the command; the input that caused it is kept and named.
use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context as _, bail};

use crate::cmd;

/// Every target in `fuzz/Cargo.toml`.
pub(crate) const TARGETS: &[&str] = &["decode", "config", "log_scanner", "alerts_reader", "dns"];

fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut command = crate::toolchain::rustup_run("cargo");
    command.current_dir(fuzz_dir).arg("fuzz");
    command
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))
            .with_context(|| format!("copying {}", entry.path().display()))?;
    }
    Ok(())
}

/// Build every target, then run each for `seconds`.
/// Run every target for `seconds`; `seed` fixes libFuzzer's random seed (the test command
/// uses one so that a run is repeatable; `cargo xtask fuzz` explores with a fresh one).
pub(crate) fn fuzz(seconds: u64, seed: Option<u64>) -> anyhow::Result<()> {
    let fuzz_dir = cmd::workspace_root().join("fuzz");
    let started = Instant::now();
    cmd::run_command(cargo_fuzz(&fuzz_dir).arg("build"))?;
    let built = started.elapsed();
    let scratch = std::env::temp_dir().join(format!("crabpot-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    for target in TARGETS {
        let corpus = scratch.join(target);
        let artifacts = scratch.join("artifacts").join(target);
        copy_dir(&fuzz_dir.join("corpus").join(target), &corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        let run_started = Instant::now();
        let result = cmd::run_command(
            cargo_fuzz(&fuzz_dir)
                .args(["run", target])
                .arg(&corpus)
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                // A single input that takes this long is a hang.
                .arg("-timeout=10")
                .arg(format!("-artifact_prefix={}/", artifacts.display()))
                .arg("-print_final_stats=1")
                .args(seed.map(|seed| format!("-seed={seed}"))),
        );
        if let Err(error) = result {
            bail!(
                "fuzz target `{target}` failed ({error:#}); the input is in {} (reproduce: \
                 cd fuzz && cargo +{} fuzz run {target} <file>)",
                artifacts.display(),
                crabpot_common::toolchain::BPF_TOOLCHAIN
            );
        }
        eprintln!(
            "xtask: fuzz target `{target}` ran {:.0} s",
            run_started.elapsed().as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    eprintln!(
        "xtask: fuzzing done in {:.0} s (build {:.0} s)",
        started.elapsed().as_secs_f64(),
        built.as_secs_f64()
    );
    Ok(())
}

/// What `cargo xtask test` spends on each target.
pub(crate) const TEST_SECONDS: u64 = 20;
/// The seed of the test command's fuzz runs.
pub(crate) const TEST_SEED: u64 = 1;
