//! Enforcement that outlives the agent. The cgroup hooks (connect, sendmsg, socket, and the
//! DNS-reply reader) are bpf_links pinned in bpffs under `/sys/fs/bpf/crabpot/<container>/`,
//! so a crash, a `kill -9` or a restart of the agent leaves them attached — and with them
//! the policy maps they hold, as last written. A new agent attaches its own hooks first,
//! then removes the previous pins (cgroup links always run side by side, so there is no
//! unguarded moment). `crabpot unload` removes them for good.
use std::{
    ffi::CString,
    fs, io,
    path::{Path, PathBuf},
};

pub(crate) const BPFFS: &str = "/sys/fs/bpf";
pub(crate) const PIN_ROOT: &str = "/sys/fs/bpf/crabpot";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error(
        "bpffs is not mounted at {BPFFS} and mounting it failed: {0}; mount it with \
         `mount -t bpf bpf {BPFFS}`"
    )]
    Mount(io::Error),
    #[error("`{0}` cannot name a pin directory (Docker names are [a-zA-Z0-9][a-zA-Z0-9_.-]*)")]
    Name(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> PinError + '_ {
    move |source| PinError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn is_bpffs(path: &str) -> bool {
    let Ok(c_path) = CString::new(path) else {
        return false;
    };
    // SAFETY: statfs is plain integers, for which all-zero is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs writes into the struct we own; the path is NUL-terminated.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    // f_type is i64 here but another integer type on other architectures.
    #[allow(trivial_numeric_casts)]
    let f_type = stat.f_type as i64;
    rc == 0 && f_type == BPF_FS_MAGIC
}

/// Mount bpffs at /sys/fs/bpf when it is not there (hosts without systemd lack it).
pub(crate) fn ensure_bpffs() -> Result<(), PinError> {
    if is_bpffs(BPFFS) {
        return Ok(());
    }
    let c = |s: &str| CString::new(s).map_err(|e| PinError::Mount(io::Error::other(e)));
    let (source, target, fstype) = (c("bpf")?, c(BPFFS)?, c("bpf")?);
    // SAFETY: plain mount(2) with NUL-terminated strings that live across the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(PinError::Mount(io::Error::last_os_error()));
    }
    tracing::info!("mounted bpffs at {BPFFS}");
    Ok(())
}

/// The pin directory of a container's hooks.
pub(crate) fn container_dir(container: &str) -> Result<PathBuf, PinError> {
    let valid = container
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && container
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(PinError::Name(container.to_string()));
    }
    Ok(Path::new(PIN_ROOT).join(container))
}

/// Create the container's pin directory; the pin file name of hook `program` on cgroup
/// `cgroup_id` for this agent process.
pub(crate) fn pin_path(dir: &Path, cgroup_id: u64, program: &str) -> Result<PathBuf, PinError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    Ok(dir.join(format!("{cgroup_id}-{program}-{}", std::process::id())))
}

/// Remove the pins in `dir` except `keep` (unpinned links with no other holder detach);
/// returns how many were removed. A missing directory has none.
pub(crate) fn remove_pins(dir: &Path, keep: &[PathBuf]) -> Result<usize, PinError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(io_error(dir)(error)),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry.map_err(io_error(dir))?.path();
        if keep.contains(&path) {
            continue;
        }
        fs::remove_file(&path).map_err(io_error(&path))?;
        removed += 1;
    }
    if keep.is_empty() {
        fs::remove_dir(dir).map_err(io_error(dir))?;
    }
    Ok(removed)
}

/// `crabpot unload`: remove the pinned hooks of `container` (all containers when `None`).
/// Hooks still held by a running agent stay until it exits.
pub fn unload(container: Option<&str>) -> Result<usize, PinError> {
    let dirs = match container {
        Some(name) => vec![container_dir(name)?],
        None => match fs::read_dir(PIN_ROOT) {
            Ok(entries) => entries.filter_map(Result::ok).map(|e| e.path()).collect(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(io_error(Path::new(PIN_ROOT))(error)),
        },
    };
    let mut removed = 0;
    for dir in dirs {
        removed += remove_pins(&dir, &[])?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_cannot_escape_the_pin_root() {
        assert_eq!(
            container_dir("crabpot").ok(),
            Some(PathBuf::from("/sys/fs/bpf/crabpot/crabpot"))
        );
        for bad in ["", "../etc", "a/b", ".hidden", "x y"] {
            assert!(container_dir(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn removing_pins_keeps_ours_and_drops_the_rest() {
        let dir = std::env::temp_dir().join(format!("crabpot-pins-{}", std::process::id()));
        let ours = pin_path(&dir, 7, "connect4").expect("pin path");
        let old = dir.join("7-connect4-1");
        fs::write(&ours, "").expect("write");
        fs::write(&old, "").expect("write");
        assert_eq!(remove_pins(&dir, std::slice::from_ref(&ours)).ok(), Some(1));
        assert!(ours.exists() && !old.exists());
        assert_eq!(remove_pins(&dir, &[]).ok(), Some(1));
        assert!(!dir.exists());
        assert_eq!(remove_pins(&dir, &[]).ok(), Some(0));
    }
}
