//! The BPF build chain, pinned: the dated nightly of `crabpot_common::toolchain` with
//! `rust-src` and `clippy`, and bpf-linker at a fixed version built on the same LLVM major.
//! Installed exactly, whatever other `nightly` the machine has; checked by version, not
//! presence.
use std::process::Command;

use anyhow::bail;
use crabpot_common::toolchain::{
    BPF_LINKER_VERSION, BPF_LLVM_MAJOR, BPF_TOOLCHAIN, mismatch_message, probe,
};

use crate::{cmd, setup};

/// `rustup run <pinned> <program> …`, for cargo clippy/fuzz on the BPF toolchain.
pub(crate) fn rustup_run(program: &str) -> Command {
    let mut command = Command::new("rustup");
    command.args(["run", BPF_TOOLCHAIN, program]);
    command
}

/// Install what is missing or at the wrong version, then check the pair's LLVM.
pub(crate) fn install() -> anyhow::Result<()> {
    install_pinned_nightly()?;
    install_bpf_linker()?;
    let rustc = probe::pinned_rustc_llvm().map_err(anyhow::Error::msg)?;
    let (linker_version, linker) = probe::bpf_linker().map_err(anyhow::Error::msg)?;
    if rustc != linker || rustc != BPF_LLVM_MAJOR {
        bail!("{}", mismatch_message(rustc, linker));
    }
    eprintln!(
        "xtask: BPF build chain: {BPF_TOOLCHAIN} (LLVM {rustc}), {linker_version} (LLVM {linker})"
    );
    Ok(())
}

fn install_pinned_nightly() -> anyhow::Result<()> {
    let components = cmd::output(
        "rustup",
        &[
            "component",
            "list",
            "--toolchain",
            BPF_TOOLCHAIN,
            "--installed",
        ],
    )
    .unwrap_or_default();
    let has = |name: &str| components.lines().any(|c| c.starts_with(name));
    if has("rust-src") && has("clippy") {
        return Ok(());
    }
    eprintln!("xtask: installing {BPF_TOOLCHAIN} with rust-src and clippy (the BPF toolchain)");
    cmd::run(
        "rustup",
        &[
            "toolchain",
            "install",
            BPF_TOOLCHAIN,
            "--profile",
            "minimal",
            "--component",
            "rust-src,clippy",
        ],
    )
}

/// bpf-linker at [`BPF_LINKER_VERSION`] on LLVM [`BPF_LLVM_MAJOR`]; rebuilt when either
/// differs (a linker on another LLVM cannot read the pinned rustc's bitcode).
fn install_bpf_linker() -> anyhow::Result<()> {
    let wanted = format!("bpf-linker {BPF_LINKER_VERSION}");
    match probe::bpf_linker() {
        Ok((version, major)) if version == wanted && major == BPF_LLVM_MAJOR => return Ok(()),
        Ok((version, major)) => eprintln!(
            "xtask: found {version} on LLVM {major}; want {wanted} on LLVM {BPF_LLVM_MAJOR}"
        ),
        Err(_) => {}
    }
    eprintln!("xtask: building {wanted} against LLVM {BPF_LLVM_MAJOR} (a few minutes, once)");
    cmd::run_command(
        Command::new(setup::cargo())
            .args(["install", "--locked", "--force", "bpf-linker", "--version"])
            .arg(BPF_LINKER_VERSION)
            .args(["--no-default-features", "--features"])
            .arg(format!("llvm-{BPF_LLVM_MAJOR}"))
            .env("LLVM_PREFIX", format!("/usr/lib/llvm-{BPF_LLVM_MAJOR}")),
    )
}
