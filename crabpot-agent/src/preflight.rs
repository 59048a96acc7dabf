//! Start-up checks that turn a confusing kernel error into an instruction.
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PreflightError {
    #[error(
        "crabpot-agent must run as root: it loads eBPF programs (CAP_BPF, CAP_PERFMON, \
         CAP_SYS_ADMIN) and talks to the Docker socket. Run it with `sudo crabpot-agent …`"
    )]
    NotRoot,
}

pub(crate) fn require_root() -> Result<(), PreflightError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err(PreflightError::NotRoot)
    }
}

/// What the kernel offers, as far as start-up can tell without loading anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelFeatures {
    pub btf: bool,
    /// `Some(true)` when `bpf` is among the active LSMs, `None` when securityfs is not
    /// readable.
    pub bpf_lsm: Option<bool>,
}

impl KernelFeatures {
    pub(crate) fn probe() -> Self {
        let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").ok();
        KernelFeatures {
            btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
            bpf_lsm: lsm.map(|list| list.trim().split(',').any(|name| name == "bpf")),
        }
    }

    /// Log what is missing and what it costs.
    pub(crate) fn report(&self) {
        if !self.btf {
            tracing::warn!(
                "kernel BTF is missing (/sys/kernel/btf/vmlinux): BPF LSM enforcement is \
                 unavailable; build the kernel with CONFIG_DEBUG_INFO_BTF=y. Syscall \
                 tracepoints still work."
            );
        }
        match self.bpf_lsm {
            Some(true) => tracing::info!("BPF LSM is active"),
            Some(false) => tracing::info!(
                "BPF LSM is not active (boot with `lsm=...,bpf` to enable in-kernel blocking \
                 of mount and ptrace)"
            ),
            None => tracing::info!("securityfs not mounted: BPF LSM status unknown"),
        }
    }
}

/// Raise RLIMIT_MEMLOCK for kernels that still charge BPF maps to it (before 5.11). A
/// failure is harmless on newer kernels, so it is only logged.
pub(crate) fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid, initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); not needed on kernels 5.11 and later",
            std::io::Error::last_os_error()
        );
    }
}
