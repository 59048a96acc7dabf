//! The BPF LSM layer: programs that refuse a mount, ptrace or exec (-EPERM) instead of
//! killing the caller. Kernels differ in whether they allow it at all (BTF, the `bpf` LSM in
//! the boot-time LSM list, trampolines), so attaching is all or nothing and never fails the
//! agent: it reports [`LsmOutcome::Unavailable`] with the reason and the tracepoints carry on.
use std::{
    borrow::{Borrow, BorrowMut},
    error::Error,
    fmt, fs,
    path::Path,
};

use aya::{
    Btf, Ebpf,
    maps::{Array, HashMap, MapData, MapError},
    programs::{Lsm, ProgramError},
};

/// Kernel BTF, needed to resolve the `bpf_lsm_*` attach points.
pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
/// The active LSMs, comma separated (securityfs).
pub const LSM_LIST_PATH: &str = "/sys/kernel/security/lsm";

/// Program name in the eBPF object → LSM hook it attaches to.
pub const LSM_PROGRAMS: &[(&str, &str)] = &[
    ("lsm_sb_mount", "sb_mount"),
    ("lsm_move_mount", "move_mount"),
    ("lsm_ptrace_access_check", "ptrace_access_check"),
    ("lsm_ptrace_traceme", "ptrace_traceme"),
    ("lsm_bprm_check_security", "bprm_check_security"),
];

/// What [`attach_lsm`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LsmOutcome {
    /// Every program in [`LSM_PROGRAMS`] is attached; their names.
    Attached(Vec<&'static str>),
    /// None is attached (any partial attachment was undone), and why.
    Unavailable { reason: String },
}

impl fmt::Display for LsmOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LsmOutcome::Attached(names) => write!(f, "BPF LSM attached: {}", names.join(", ")),
            LsmOutcome::Unavailable { reason } => write!(f, "BPF LSM unavailable: {reason}"),
        }
    }
}

/// Whether this kernel can run BPF LSM programs at all: BTF present and `bpf` among the
/// active LSMs. `Err` names what is missing and how to get it.
pub fn check_kernel_support() -> Result<(), String> {
    check_support(Path::new(BTF_PATH), Path::new(LSM_LIST_PATH))
}

/// Mount securityfs at /sys/kernel/security when the LSM list is not there (as tracefs is
/// mounted for the tracepoints); a failure shows up in [`check_kernel_support`].
fn mount_securityfs() {
    if Path::new(LSM_LIST_PATH).exists() {
        return;
    }
    // SAFETY: plain mount(2) with NUL-terminated literals.
    let rc = unsafe {
        libc::mount(
            c"securityfs".as_ptr(),
            c"/sys/kernel/security".as_ptr(),
            c"securityfs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        tracing::info!("mounted securityfs at /sys/kernel/security");
    }
}

fn check_support(btf: &Path, lsm_list: &Path) -> Result<(), String> {
    if !btf.exists() {
        return Err(format!(
            "no kernel BTF at {} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)",
            btf.display()
        ));
    }
    let active = fs::read_to_string(lsm_list).map_err(|error| {
        format!(
            "cannot read the active LSM list {} ({error}); mount securityfs with \
             `mount -t securityfs securityfs /sys/kernel/security`",
            lsm_list.display()
        )
    })?;
    if !active.trim().split(',').any(|name| name == "bpf") {
        return Err(format!(
            "the `bpf` LSM is not active (active: {}); boot with CONFIG_BPF_LSM=y and `bpf` in \
             the `lsm=` kernel argument, e.g. lsm={},bpf",
            active.trim(),
            active.trim()
        ));
    }
    Ok(())
}

/// Load and attach every program of [`LSM_PROGRAMS`] from `ebpf` (already loaded with the
/// embedded object). All or nothing: on any failure the ones already attached are detached
/// and unloaded again. Never panics.
pub fn attach_lsm(ebpf: &mut Ebpf) -> LsmOutcome {
    mount_securityfs();
    if let Err(reason) = check_kernel_support() {
        return LsmOutcome::Unavailable { reason };
    }
    let btf = match Btf::from_sys_fs() {
        Ok(btf) => btf,
        Err(error) => {
            return LsmOutcome::Unavailable {
                reason: format!("cannot parse kernel BTF {BTF_PATH}: {}", chain(&error)),
            };
        }
    };
    let mut attached = Vec::with_capacity(LSM_PROGRAMS.len());
    for (index, (program, hook)) in LSM_PROGRAMS.iter().enumerate() {
        if let Err(reason) = attach_one(ebpf, program, hook, &btf) {
            // Includes the failing one: it may be loaded without being attached.
            for (name, _) in &LSM_PROGRAMS[..=index] {
                unload(ebpf, name);
            }
            return LsmOutcome::Unavailable { reason };
        }
        attached.push(*program);
    }
    LsmOutcome::Attached(attached)
}

fn attach_one(ebpf: &mut Ebpf, program: &'static str, hook: &str, btf: &Btf) -> Result<(), String> {
    let lsm: &mut Lsm = ebpf
        .program_mut(program)
        .ok_or_else(|| {
            format!(
                "the eBPF object has no program `{program}` (build mismatch: rebuild the agent)"
            )
        })?
        .try_into()
        .map_err(|error: ProgramError| format!("`{program}` is not an LSM program: {error}"))?;
    lsm.load(hook, btf)
        .map_err(|error| failure("loading", program, hook, &error))?;
    lsm.attach()
        .map_err(|error| failure("attaching", program, hook, &error))?;
    Ok(())
}

fn unload(ebpf: &mut Ebpf, program: &str) {
    let lsm: Option<&mut Lsm> = ebpf
        .program_mut(program)
        .and_then(|program| program.try_into().ok());
    if let Some(lsm) = lsm {
        // Not loaded is the only expected error, and harmless here.
        let _ignored = lsm.unload();
    }
}

fn failure(step: &str, program: &str, hook: &str, error: &ProgramError) -> String {
    let detail = chain(error);
    let hint = if detail.contains("Operation not permitted") || detail.contains("os error 1)") {
        "; the kernel refused it (EPERM): the agent needs root (CAP_BPF, CAP_MAC_ADMIN), and \
         some kernels or hypervisors block the BPF trampolines LSM programs need"
    } else {
        ""
    };
    format!("{step} `{program}` on LSM hook {hook} failed: {detail}{hint}")
}

/// An error and its sources not already in its text, `: `-separated (aya puts the errno in
/// the source).
fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Set the mode (`crabpot_common::mode`) of one rule (`crabpot_common::rule`) in RULE_MODES.
pub fn set_rule_mode<T: BorrowMut<MapData>>(
    rule_modes: &mut Array<T, u32>,
    rule: u32,
    mode: u32,
) -> Result<(), MapError> {
    rule_modes.set(rule, mode, 0)
}

/// Guard the cgroup v2 `id` (its directory's inode number): add it to MONITORED_CGROUPS.
pub fn monitor_cgroup<T: BorrowMut<MapData>>(
    monitored: &mut HashMap<T, u64, u32>,
    id: u64,
) -> Result<(), MapError> {
    monitored.insert(id, 0, 0)
}

/// Whether `id` is in MONITORED_CGROUPS.
pub fn is_monitored<T: Borrow<MapData>>(monitored: &HashMap<T, u64, u32>, id: u64) -> bool {
    monitored.get(&id, 0).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("crabpot-lsm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    #[test]
    fn support_needs_btf_and_bpf_in_the_lsm_list() {
        let btf = temp_file("btf", "");
        let with = temp_file("with", "lockdown,capability,yama,bpf\n");
        let without = temp_file("without", "lockdown,capability,yama\n");
        assert_eq!(check_support(&btf, &with), Ok(()));
        let missing_bpf = check_support(&btf, &without).expect_err("bpf not active");
        assert!(
            missing_bpf.contains("lsm=lockdown,capability,yama,bpf"),
            "{missing_bpf}"
        );
        let no_btf = check_support(Path::new("/nonexistent/btf"), &with).expect_err("no BTF");
        assert!(no_btf.contains("CONFIG_DEBUG_INFO_BTF"), "{no_btf}");
        let no_list = check_support(&btf, Path::new("/nonexistent/lsm")).expect_err("no list");
        assert!(no_list.contains("securityfs"), "{no_list}");
    }
}
