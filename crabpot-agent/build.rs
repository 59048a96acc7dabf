//! Compile `crabpot-ebpf` for the BPF target (the pinned nightly, `-Z build-std=core`,
//! bpf-linker) so a plain `cargo build` of the agent yields one binary with the kernel object
//! embedded. Before building, the pinned rustc's LLVM and bpf-linker's must agree: a mismatch
//! otherwise surfaces as bpf-linker's opaque "Invalid record".
use anyhow::{Context as _, anyhow, bail};
use aya_build::Toolchain;
use crabpot_common::toolchain::{BPF_TOOLCHAIN, probe};

fn main() -> anyhow::Result<()> {
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
