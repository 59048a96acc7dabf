//! Compile `crabpot-ebpf` for the BPF target (the pinned nightly, `-Z build-std=core`,
//! bpf-linker) so a plain `cargo build` of the agent yields one binary with the kernel object
//! embedded. Before building, the pinned rustc's LLVM and bpf-linker's must agree: a mismatch
//! otherwise surfaces as bpf-linker's opaque "Invalid record".
use anyhow::{Context as _, anyhow, bail};
use aya_build::Toolchain;
use crabpot_common::toolchain::{BPF_TOOLCHAIN, probe};

/// The first line a command prints, if it runs and succeeds.
fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.lines().next()?.trim().to_string();
    (out.status.success() && !line.is_empty()).then_some(line)
}

/// The commit and compiler behind this build, for `crabpot_build_info`.
fn emit_build_info() {
    let commit = first_line("git", &["rev-parse", "--short=12", "HEAD"]);
    println!(
        "cargo:rustc-env=CRABPOT_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    // A new commit changes this file: the commit label follows it.
    if let Some(log) = first_line("git", &["rev-parse", "--git-path", "logs/HEAD"]) {
        println!("cargo:rerun-if-changed={log}");
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    // `rustc 1.92.0 (ded5c06cf 2025-12-08)`: the version alone.
    let version = first_line(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string));
    println!(
        "cargo:rustc-env=CRABPOT_RUSTC_VERSION={}",
        version.as_deref().unwrap_or("unknown")
    );
}

fn main() -> anyhow::Result<()> {
    emit_build_info();
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|package| package.name.as_str() == "crabpot-ebpf")
        .ok_or_else(|| anyhow!("crabpot-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    println!("cargo:rerun-if-changed={root_dir}/rust-toolchain.toml");
    if std::env::var_os("AYA_BUILD_SKIP").is_none()
        && let Err(message) = probe::check()
    {
        bail!("{message}");
    }
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(BPF_TOOLCHAIN),
    )
    .context(format!(
        "building the eBPF programs with {BPF_TOOLCHAIN} failed; `cargo xtask setup` installs \
         what they need (that toolchain with rust-src, bpf-linker on the same LLVM)"
    ))
}
