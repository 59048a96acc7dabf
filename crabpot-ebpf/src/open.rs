//! open / openat / openat2: which path a container process opens, with flags. openat2
//! passes its flags and mode in a `struct open_how` (u64 flags, u64 mode, u64 resolve) in
//! user memory.
//!
//! Only the opens the policy needs reach the ring buffer (unless `--events` asks for all):
//! `/proc` however spelled (`//proc`, `/./proc`, `..`), paths relative to a directory in
//! procfs (the cwd or the dirfd, read from the task: the process may exit at once),
//! dotfiles (`~/.ssh/id_*`, `.aws/credentials`…), `/etc/shadow`-like files and, for the
//! moltbot profile, devices. Everything else is counted in `FILTERED`.
use aya_ebpf::{helpers::bpf_probe_read_user, macros::tracepoint, programs::TracePointContext};
use crabpot_common::{EventKind, OpenEvent, PATH_LEN, control, filtered, open_base};

use crate::{
    common::{
        arg, batched_wakeup, count_drop, count_filtered, fill_header, monitored_cgroup,
        read_user_str,
    },
    deny::starts_with,
    maps::{EVENTS, OPEN_SCRATCH},
    task,
};

const AT_FDCWD: i32 = -100;

#[tracepoint]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    unsafe {
        let flags: i64 = arg(&ctx, 2) as _;
        let mode: i64 = arg(&ctx, 3) as _;
        emit(&ctx, cgroup_id, flags as i32, mode as u32)
    }
}

/// open(path, flags, mode): the legacy call (x86_64 has it, arm64 does not); relative to the
/// cwd like openat with AT_FDCWD.
#[tracepoint]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    unsafe {
        let path: *const u8 = arg(&ctx, 0) as _;
        let flags: i64 = arg(&ctx, 1) as _;
        let mode: i64 = arg(&ctx, 2) as _;
        emit_path(cgroup_id, AT_FDCWD, path, flags as i32, mode as u32)
    }
}

/// openat2(dirfd, path, how, size).
#[tracepoint]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    let Some(cgroup_id) = monitored_cgroup() else {
        return 0;
    };
    unsafe {
        let how: *const u64 = arg(&ctx, 2) as _;
        let (flags, mode) = if how.is_null() {
            (0, 0)
        } else {
            (
                bpf_probe_read_user(how).unwrap_or(0),
                bpf_probe_read_user(how.add(1)).unwrap_or(0),
            )
        };
        emit(&ctx, cgroup_id, flags as i32, mode as u32)
    }
}

/// openat and openat2 have the dirfd and path in their first two arguments.
#[inline(always)]
unsafe fn emit(ctx: &TracePointContext, cgroup_id: u64, flags: i32, mode: u32) -> u32 {
    unsafe {
        let dirfd: i64 = arg(ctx, 0) as _;
        let path: *const u8 = arg(ctx, 1) as _;
        emit_path(cgroup_id, dirfd as i32, path, flags, mode)
    }
}

#[inline(always)]
unsafe fn emit_path(cgroup_id: u64, dirfd: i32, path: *const u8, flags: i32, mode: u32) -> u32 {
    let Some(event) = OPEN_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let event = unsafe { &mut *event };
    event.path_len = unsafe { read_user_str(path, &mut event.path) };
    event.base_flags = 0;
    event.base_depth = 0;
    let filtering = crate::maps::control(control::OPEN_FILTER) == 1;
    let mut wanted = !filtering || path_wanted(&event.path);
    if event.path.first().copied() != Some(b'/') {
        wanted |= relative_base(event, dirfd);
    }
    if !wanted {
        count_filtered(filtered::OPEN);
        return 0;
    }
    unsafe {
        fill_header(
            &raw mut event.header,
            EventKind::Open,
            core::mem::size_of::<OpenEvent>(),
            cgroup_id,
        );
    }
    event.dirfd = dirfd;
    event.flags = flags;
    event.mode = mode;
    // bpf_ringbuf_output copies in the kernel: the record never crosses the BPF stack.
    if EVENTS.output::<OpenEvent>(event, batched_wakeup()).is_err() {
        count_drop(EventKind::Open);
    }
    0
}

/// Record the base directory of a relative path (its names when in procfs); whether it
/// makes the open one the policy needs: a base in procfs, a dotted or `etc` directory
/// (secret files opened by a short name), or a base the kernel could not read.
#[inline(always)]
fn relative_base(event: &mut OpenEvent, dirfd: i32) -> bool {
    let dentry = if dirfd == AT_FDCWD {
        task::cwd_dentry()
    } else {
        task::fd_dentry(dirfd)
    };
    if dentry.is_null() {
        return true;
    }
    if task::in_procfs(dentry) {
        event.base_flags = open_base::PROC;
        if let Some(depth) = task::names_to_root(dentry, &mut event.base) {
            event.base_flags |= open_base::KNOWN;
            event.base_depth = depth;
        }
        return true;
    }
    let mut name = [0u8; 8];
    task::first_name_bytes(dentry, &mut name);
    name[0] == b'.' || (starts_with(&name, b"etc") && name[3] == 0)
}

/// Whether an open of `path` (as given) is one the policy needs, from its spelling alone.
#[inline(always)]
fn path_wanted(path: &[u8; PATH_LEN]) -> bool {
    // `.`/`..` anywhere, a dotfile or a relative `./x`: the normalised path may be anything.
    if path[0] == b'.' || has_slash_dot(path) {
        return true;
    }
    if path[0] != b'/' {
        return false;
    }
    // `//proc`: skip a few leading slashes (more is an odd spelling: passed on).
    let mut first = 0;
    for (i, byte) in path.iter().enumerate().take(LEADING_SLASHES).skip(1) {
        if *byte != b'/' {
            first = i;
            break;
        }
    }
    if first == 0 {
        return true;
    }
    let Some(rest) = path.get(first..first + 16) else {
        return true;
    };
    let proc_dir = starts_with(rest, b"proc") && matches!(rest[4], b'/' | 0);
    let secret = starts_with(rest, b"etc/shadow")
        || starts_with(rest, b"etc/gshadow")
        || starts_with(rest, b"etc/sudoers");
    let devices = crate::maps::control(control::WATCH_DEVICES) == 1
        && (starts_with(rest, b"dev/") || starts_with(rest, b"tmp/.X11"));
    proc_dir || secret || devices
}

/// Leading slashes looked past before the first name.
const LEADING_SLASHES: usize = 8;

/// Whether a component of `path` starts with a dot (`/.`). One pass that carries no state
/// between bytes, so the verifier's cost stays linear in the path length.
#[inline(always)]
fn has_slash_dot(path: &[u8; PATH_LEN]) -> bool {
    for i in 0..PATH_LEN - 1 {
        let byte = path[i];
        if byte == 0 {
            return false;
        }
        if byte == b'/' && path[i + 1] == b'.' {
            return true;
        }
    }
    false
}
