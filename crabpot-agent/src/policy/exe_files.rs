//! Opening the files an exec names, safely: inside the container's root, never blocking on
//! a FIFO or device, and the `#!` line of scripts.
use std::{
    fs::{File, Metadata},
    os::{
        fd::{AsRawFd as _, FromRawFd as _},
        unix::fs::{FileExt as _, OpenOptionsExt as _},
    },
};

/// Open a path (or /proc magic link) as O_PATH, and only then, for a regular file, for
/// reading: a FIFO or device named by a hostile exec must never block or touch the agent.
pub(crate) fn open_regular(path: &str) -> Option<(File, Metadata)> {
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    reopen_regular(handle)
}

fn reopen_regular(handle: File) -> Option<(File, Metadata)> {
    let meta = handle.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
        .ok()?;
    Some((file, meta))
}

/// The root directory of process `proc_dir`, held open (it outlives the process).
pub(crate) fn open_root(proc_dir: &str) -> Option<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(format!("{proc_dir}/root"))
        .ok()
}

/// Open `path` (absolute, as the container sees it) inside the root of process `proc_dir`,
/// symlinks resolved within that root.
pub(crate) fn open_in_root(proc_dir: &str, path: &str) -> Option<(File, Metadata)> {
    open_at_root(&open_root(proc_dir)?, path)
}

/// Open `path` under the root directory `root`, symlinks resolved within it.
pub(crate) fn open_at_root(root: &File, path: &str) -> Option<(File, Metadata)> {
    let relative = std::ffi::CString::new(path.trim_start_matches('/')).ok()?;
    // SAFETY: open_how is plain data; zero is a valid value for every field.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT;
    // SAFETY: valid dirfd, NUL-terminated path and a live open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            relative.as_ptr(),
            std::ptr::from_ref(&how),
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this descriptor; the File owns it from here.
    reopen_regular(unsafe { File::from_raw_fd(fd as i32) })
}

/// Open `path` in the root of `proc_dir`, or of the container's main process when that
/// process is gone.
pub(crate) fn open_in_container(
    proc_dir: &str,
    container_pid: Option<u32>,
    path: &str,
) -> Option<(File, Metadata)> {
    open_in_root(proc_dir, path)
        .or_else(|| open_in_root(&format!("/proc/{}", container_pid?), path))
}

/// The interpreter and optional argument of a `#!` line, as the kernel splits it.
pub(crate) fn shebang(file: &File) -> Option<(String, Option<String>)> {
    let mut head = [0u8; 256];
    let n = file.read_at(&mut head, 0).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let end = line.iter().position(|b| *b == b'\n').unwrap_or(line.len());
    let line = std::str::from_utf8(&line[..end]).ok()?.trim();
    let (interpreter, arg) = match line.split_once([' ', '\t']) {
        Some((interpreter, arg)) => (interpreter, Some(arg.trim().to_string())),
        None => (line, None),
    };
    (!interpreter.is_empty()).then(|| (interpreter.to_string(), arg.filter(|a| !a.is_empty())))
}
