//! tracefs: making sure it is mounted, and reading tracepoint record layouts from it.
use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {0}; mount it \
         with `mount -t tracefs nodev /sys/kernel/tracing`"
    )]
    Mount(std::io::Error),
    #[error("cannot read the tracepoint format {path}: {source}")]
    Format {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the tracepoint format {path} has no usable `{field}` field")]
    Field { path: PathBuf, field: &'static str },
}

/// The tracefs root, mounting tracefs at /sys/kernel/tracing when no copy is mounted.
pub(crate) fn ensure_mounted() -> Result<PathBuf, TracefsError> {
    if let Some(found) = CANDIDATES
        .iter()
        .map(Path::new)
        .find(|root| root.join("events").is_dir())
    {
        return Ok(found.to_path_buf());
    }
    let target = CANDIDATES[0];
    let c = |s: &str| CString::new(s).map_err(|e| TracefsError::Mount(std::io::Error::other(e)));
    let (source, target_c, fstype) = (c("nodev")?, c(target)?, c("tracefs")?);
    // SAFETY: plain mount(2) with NUL-terminated strings that live across the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(TracefsError::Mount(std::io::Error::last_os_error()));
    }
    tracing::info!("mounted tracefs at {target}");
    Ok(PathBuf::from(target))
}

/// Byte offsets of the pid fields in a `sched/sched_process_fork` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForkOffsets {
    pub parent_pid: u32,
    pub child_pid: u32,
}

/// Offset of a 4-byte field named `field` in the text of a tracepoint `format` file.
pub(crate) fn field_offset(format: &str, field: &str) -> Option<u32> {
    field_layout(format, field).and_then(|(offset, size)| (size == 4).then_some(offset))
}

/// Offset and size of the field named `field` in the text of a tracepoint `format` file.
fn field_layout(format: &str, field: &str) -> Option<(u32, u32)> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let declaration = parts.next()?.strip_prefix("field:")?;
        if declaration.split_whitespace().last()? != field {
            return None;
        }
        let offset = parts
            .find_map(|p| p.strip_prefix("offset:"))?
            .parse()
            .ok()?;
        let size = parts.find_map(|p| p.strip_prefix("size:"))?.parse().ok()?;
        Some((offset, size))
    })
}

/// The `cgroup/cgroup_attach_task` layout the kernel program reads (crabpot-ebpf escape.rs).
const ATTACH_TASK_LAYOUT: [(&str, (u32, u32)); 5] = [
    ("dst_root", (8, 4)),
    ("dst_level", (12, 4)),
    ("dst_id", (16, 8)),
    ("pid", (24, 4)),
    ("dst_path", (28, 4)),
];

/// Whether the `cgroup_attach_task` record has the layout the kernel program expects.
pub(crate) fn attach_task_layout_ok(format: &str) -> bool {
    ATTACH_TASK_LAYOUT
        .iter()
        .all(|(field, layout)| field_layout(format, field) == Some(*layout))
}

/// Read the fork tracepoint's layout; the kernel program reads the first 64 bytes.
pub(crate) fn fork_pid_offsets(root: &Path) -> Result<ForkOffsets, TracefsError> {
    let path = root.join("events/sched/sched_process_fork/format");
    let format = std::fs::read_to_string(&path).map_err(|source| TracefsError::Format {
        path: path.clone(),
        source,
    })?;
    let usable = |field: &'static str| {
        field_offset(&format, field)
            .filter(|offset| offset % 4 == 0 && *offset <= 60)
            .ok_or(TracefsError::Field {
                path: path.clone(),
                field,
            })
    };
    Ok(ForkOffsets {
        parent_pid: usable("parent_pid")?,
        child_pid: usable("child_pid")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORK_6_18: &str = "name: sched_process_fork
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;
\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;
";

    const FORK_5_10: &str = "\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:1;
\tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:1;
\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;
";

    #[test]
    fn knows_the_attach_task_layout() {
        let format = "\tfield:int dst_root;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dst_level;\toffset:12;\tsize:4;\tsigned:1;
\tfield:u64 dst_id;\toffset:16;\tsize:8;\tsigned:0;
\tfield:int pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] dst_path;\toffset:28;\tsize:4;\tsigned:0;
";
        assert!(attach_task_layout_ok(format));
        assert!(!attach_task_layout_ok(
            &format.replace("offset:16;", "offset:20;")
        ));
        assert!(!attach_task_layout_ok(""));
    }

    #[test]
    fn reads_offsets_of_both_layouts() {
        assert_eq!(field_offset(FORK_6_18, "parent_pid"), Some(12));
        assert_eq!(field_offset(FORK_6_18, "child_pid"), Some(20));
        assert_eq!(field_offset(FORK_5_10, "parent_pid"), Some(24));
        assert_eq!(field_offset(FORK_5_10, "child_pid"), Some(44));
        assert_eq!(
            field_offset(FORK_5_10, "parent_comm"),
            None,
            "16-byte field"
        );
        assert_eq!(field_offset(FORK_6_18, "nope"), None);
        assert_eq!(field_offset("", "child_pid"), None);
    }
}
