//! The toolchain that builds the kernel programs, named once for every user of it:
//! `crabpot-agent/build.rs` (aya-build), `cargo xtask setup|test|fuzz` and the BPF clippy.
//!
//! The BPF target needs a nightly (`-Z build-std=core`), and bpf-linker reads the bitcode
//! rustc emits with its own LLVM, which must not be older than rustc's. A floating `nightly`
//! moved to LLVM 23 while Debian ships LLVM 22 development packages only, so the nightly is
//! pinned by date to one whose LLVM major is [`BPF_LLVM_MAJOR`].

/// The dated nightly (also `crabpot-ebpf/rust-toolchain.toml`'s channel).
pub const BPF_TOOLCHAIN: &str = "nightly-2026-05-19";

/// The LLVM major of [`BPF_TOOLCHAIN`]'s rustc, and the one bpf-linker is built against
/// (Debian's `llvm-<N>-dev`, bpf-linker's `llvm-<N>` feature).
pub const BPF_LLVM_MAJOR: u32 = 22;

/// The bpf-linker release the set-up installs.
pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// The LLVM major in `rustc -vV` output (`LLVM version: 22.1.4`).
pub fn rustc_llvm_major(verbose_version: &str) -> Option<u32> {
    verbose_version
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version:"))
        .and_then(|version| version.trim().split('.').next())
        .and_then(|major| major.parse().ok())
}

/// The one-line message for a mismatch between the pinned rustc's LLVM and bpf-linker's.
pub fn mismatch_message(rustc_llvm: u32, linker_llvm: u32) -> MismatchMessage {
    MismatchMessage {
        rustc_llvm,
        linker_llvm,
    }
}

/// Displays as: both versions and the command that fixes the mismatch.
pub struct MismatchMessage {
    rustc_llvm: u32,
    linker_llvm: u32,
}

impl core::fmt::Display for MismatchMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "LLVM mismatch: rustc {BPF_TOOLCHAIN} uses LLVM {} but bpf-linker is built on LLVM \
             {} (expected {BPF_LLVM_MAJOR} for both); fix: `cargo install --locked --force \
             bpf-linker --version {BPF_LINKER_VERSION} --no-default-features --features \
             llvm-{BPF_LLVM_MAJOR}` with LLVM_PREFIX=/usr/lib/llvm-{BPF_LLVM_MAJOR}, or run \
             `cargo xtask setup`",
            self.rustc_llvm, self.linker_llvm
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toolchain_file_names_the_same_nightly() {
        let file = include_str!("../../crabpot-ebpf/rust-toolchain.toml");
        let channel = file
            .lines()
            .find_map(|line| line.trim().strip_prefix("channel = "))
            .map(|value| value.trim_matches('"'));
        assert_eq!(channel, Some(BPF_TOOLCHAIN));
        assert!(BPF_TOOLCHAIN.starts_with("nightly-20"), "pinned by date");
    }

    #[test]
    fn reads_the_llvm_major_of_rustc() {
        let out = "rustc 1.97.0-nightly (9eb3be26b 2026-05-18)\nbinary: rustc\n\
                   host: x86_64-unknown-linux-gnu\nLLVM version: 22.1.4\n";
        assert_eq!(rustc_llvm_major(out), Some(22));
        assert_eq!(rustc_llvm_major("rustc 1.0\n"), None);
    }

    #[test]
    fn reads_the_llvm_major_of_bpf_linker() {
        let ldd = "\tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x7f)\n";
        assert_eq!(linker_llvm_major("bpf-linker 0.13.0\n", ldd), Some(22));
        assert_eq!(linker_llvm_major("", "\tlibLLVM-19.so => /x\n"), Some(19));
        assert_eq!(linker_llvm_major("bpf-linker 0.9 (LLVM 21.1)", ""), Some(21));
        assert_eq!(linker_llvm_major("bpf-linker 0.13.0", "\tlibc.so.6\n"), None);
    }

    #[test]
    fn the_mismatch_is_one_line_with_both_versions_and_the_fix() {
        extern crate std;
        let text = std::format!("{}", mismatch_message(23, 22));
        assert!(!text.contains('\n'));
        assert!(text.contains("LLVM 23") && text.contains("LLVM 22"), "{text}");
        assert!(text.contains("cargo install --locked --force bpf-linker"), "{text}");
    }
}

/// The LLVM major bpf-linker was built on: from its `--version` line when that names LLVM,
/// else from the libLLVM it links (`libLLVM.so.22.1` / `libLLVM-22.so` in `ldd` output).
pub fn linker_llvm_major(version_output: &str, ldd_output: &str) -> Option<u32> {
    let after = |text: &str, marker: &str| -> Option<u32> {
        let rest = &text[text.find(marker)? + marker.len()..];
        let digits: &str = rest.split(|c: char| !c.is_ascii_digit()).next()?;
        digits.parse().ok()
    };
    after(version_output, "LLVM ")
        .or_else(|| after(ldd_output, "libLLVM.so."))
        .or_else(|| after(ldd_output, "libLLVM-"))
}

/// Running the tools (build scripts and xtask; needs `std`).
#[cfg(feature = "probe")]
pub mod probe {
    extern crate std;
    use std::{format, process::Command, string::String};

    use super::*;

    fn stdout_of(program: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|error| format!("cannot run {program}: {error}"))?;
        if !out.status.success() {
            return Err(format!(
                "{program} {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The LLVM major of the pinned toolchain's rustc.
    pub fn pinned_rustc_llvm() -> Result<u32, String> {
        let out = stdout_of("rustup", &["run", BPF_TOOLCHAIN, "rustc", "-vV"]).map_err(|e| {
            format!("{e}; install the pinned toolchain: `cargo xtask setup` (or `rustup toolchain install {BPF_TOOLCHAIN} --component rust-src,clippy`)")
        })?;
        rustc_llvm_major(&out)
            .ok_or_else(|| format!("no `LLVM version:` in `rustc +{BPF_TOOLCHAIN} -vV`"))
    }

    /// bpf-linker's version line (`bpf-linker 0.13.0`) and its LLVM major.
    pub fn bpf_linker() -> Result<(String, u32), String> {
        let version = stdout_of("bpf-linker", &["--version"])
            .map_err(|e| format!("{e}; install it: `cargo xtask setup`"))?;
        let path = stdout_of("which", &["bpf-linker"]).unwrap_or_default();
        let ldd = stdout_of("ldd", &[path.trim()]).unwrap_or_default();
        let major = linker_llvm_major(&version, &ldd).ok_or_else(|| {
            format!("cannot tell which LLVM bpf-linker at {} is built on (`--version`: {}; no libLLVM in ldd)", path.trim(), version.trim())
        })?;
        Ok((String::from(version.trim()), major))
    }

    /// Ok when the pinned rustc and bpf-linker share an LLVM major; else the one-line
    /// message naming both and the fix.
    pub fn check() -> Result<(), String> {
        let rustc = pinned_rustc_llvm()?;
        let (_, linker) = bpf_linker()?;
        if rustc != linker || rustc != BPF_LLVM_MAJOR {
            return Err(format!("{}", mismatch_message(rustc, linker)));
        }
        Ok(())
    }
}
