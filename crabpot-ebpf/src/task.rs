//! What the kernel knows of the current task beyond the tracepoint's record: the executed
//! file (`mm->exe_file`), the argument vector the new program really got (`mm->arg_start`),
//! and the directory a relative path starts from (`fs->pwd`, or a dirfd's file).
//!
//! Aya has no CO-RE relocations, so the struct offsets come from the agent, which reads
//! them from the kernel's BTF (`/sys/kernel/btf/vmlinux`) and sets [`KERNEL_OFFSETS`] at
//! load time. With `valid` 0 nothing is read and callers fall back on the record alone.
use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
    bpf_probe_read_user_str_bytes,
};
use crabpot_common::{BASE_DEPTH, BASE_NAME_LEN, KernelOffsets};

/// Set by the agent at load time (see the module comment). Not all zero, so the static
/// lands in `.rodata`, where the loader's override finds it.
#[unsafe(no_mangle)]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
    valid: 0,
    task_mm: 0,
    task_fs: 0,
    task_files: 0,
    mm_exe_file: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    file_path: 0,
    file_inode: 0,
    path_dentry: 0,
    inode_ino: 0,
    inode_sb: 0,
    inode_nlink: 0,
    sb_dev: 0,
    sb_magic: 0,
    dentry_name: 0,
    dentry_parent: 0,
    dentry_sb: 0,
    qstr_name: 0,
    fs_pwd: 0,
    files_fdt: 0,
    fdt_max_fds: 0,
    fdt_fd: 0,
    _pad: 1,
};

/// `PROC_SUPER_MAGIC`: `s_magic` of a procfs superblock.
const PROC_SUPER_MAGIC: u64 = 0x9fa0;

/// One offset, read so that the loader's value (not the compile-time one) is used.
macro_rules! off {
    ($field:ident) => {
        offset_at(&raw const KERNEL_OFFSETS.$field)
    };
}

#[inline(always)]
fn offset_at(field: *const u32) -> usize {
    unsafe { core::ptr::read_volatile(field) as usize }
}

#[inline(always)]
pub fn offsets_valid() -> bool {
    off!(valid) == 1
}

/// Read a `T` at `base + offset` in kernel memory; `None` for a null base or a fault.
#[inline(always)]
unsafe fn read<T>(base: *const u8, offset: usize) -> Option<T> {
    if base.is_null() {
        return None;
    }
    unsafe { bpf_probe_read_kernel(base.add(offset) as *const T).ok() }
}

#[inline(always)]
fn current_task() -> *const u8 {
    unsafe { bpf_get_current_task() as *const u8 }
}

/// The executed file of the current task, as the kernel holds it.
pub struct Exe {
    pub ino: u64,
    pub dev: u32,
    pub nlink: u32,
}

/// The current task's `mm->exe_file`: its identity, and its dentry's name into `name`.
#[inline(always)]
pub fn exe(name: &mut [u8]) -> Option<Exe> {
    if !offsets_valid() {
        return None;
    }
    unsafe {
        let mm: *const u8 = read(current_task(), off!(task_mm))?;
        let file: *const u8 = read(mm, off!(mm_exe_file))?;
        let inode: *const u8 = read(file, off!(file_inode))?;
        let ino: u64 = read(inode, off!(inode_ino))?;
        let nlink: u32 = read(inode, off!(inode_nlink))?;
        let sb: *const u8 = read(inode, off!(inode_sb))?;
        let dev: u32 = read(sb, off!(sb_dev))?;
        let dentry: *const u8 = read(file, off!(file_path) + off!(path_dentry))?;
        let _ = dentry_name(dentry, name);
        Some(Exe { ino, dev, nlink })
    }
}

/// The name of `dentry` into `dest` (NUL-terminated, cut to fit).
#[inline(always)]
unsafe fn dentry_name(dentry: *const u8, dest: &mut [u8]) -> Option<()> {
    let name: *const u8 = unsafe { read(dentry, off!(dentry_name) + off!(qstr_name))? };
    if name.is_null() {
        return None;
    }
    unsafe { bpf_probe_read_kernel_str_bytes(name, dest).ok()? };
    Some(())
}

/// The first two entries of the argument vector the new program got, read from its own
/// stack (`mm->arg_start`): after `#!` the kernel put the interpreter in front, and no
/// other thread can have changed these since the exec copied them. Their lengths.
#[inline(always)]
pub fn new_argv(
    first: &mut [u8; crate::deny::ARG_BUF],
    second: &mut [u8; crate::deny::ARG_BUF],
) -> Option<(usize, usize)> {
    use crate::deny::ARG_BYTES;
    if !offsets_valid() {
        return None;
    }
    unsafe {
        let mm: *const u8 = read(current_task(), off!(task_mm))?;
        let start: u64 = read(mm, off!(mm_arg_start))?;
        let end: u64 = read(mm, off!(mm_arg_end))?;
        if start == 0 || end <= start {
            return None;
        }
        let len0 = bpf_probe_read_user_str_bytes(start as *const u8, &mut first[..ARG_BYTES])
            .ok()?
            .len();
        let next = start + len0 as u64 + 1;
        let len1 = if next < end {
            bpf_probe_read_user_str_bytes(next as *const u8, &mut second[..ARG_BYTES])
                .map(|s| s.len())
                .unwrap_or(0)
        } else {
            0
        };
        Some((len0, len1))
    }
}

/// The dentry of the current task's working directory.
#[inline(always)]
pub fn cwd_dentry() -> *const u8 {
    if !offsets_valid() {
        return core::ptr::null();
    }
    unsafe {
        read::<*const u8>(current_task(), off!(task_fs))
            .and_then(|fs| read(fs, off!(fs_pwd) + off!(path_dentry)))
            .unwrap_or(core::ptr::null())
    }
}

/// The dentry of the current task's open file `fd`.
#[inline(always)]
pub fn fd_dentry(fd: i32) -> *const u8 {
    if !offsets_valid() || fd < 0 {
        return core::ptr::null();
    }
    unsafe {
        let lookup = || -> Option<*const u8> {
            let files: *const u8 = read(current_task(), off!(task_files))?;
            let fdt: *const u8 = read(files, off!(files_fdt))?;
            let max: u32 = read(fdt, off!(fdt_max_fds))?;
            if fd as u32 >= max {
                return None;
            }
            let array: *const u8 = read(fdt, off!(fdt_fd))?;
            let file: *const u8 = read(array, fd as usize * 8)?;
            read(file, off!(file_path) + off!(path_dentry))
        };
        lookup().unwrap_or(core::ptr::null())
    }
}

/// Whether `dentry` lies in a procfs.
#[inline(always)]
pub fn in_procfs(dentry: *const u8) -> bool {
    unsafe {
        read::<*const u8>(dentry, off!(dentry_sb))
            .and_then(|sb| read::<u64>(sb, off!(sb_magic)))
            .is_some_and(|magic| magic == PROC_SUPER_MAGIC)
    }
}

/// The names of `dentry` and its parents up to its filesystem's root (not included),
/// innermost first. `Some(depth)` when the root was reached within [`BASE_DEPTH`] names.
#[inline(always)]
pub fn names_to_root(
    dentry: *const u8,
    out: &mut [[u8; BASE_NAME_LEN]; BASE_DEPTH],
) -> Option<u32> {
    let mut current = dentry;
    for (depth, slot) in out.iter_mut().enumerate() {
        let parent: *const u8 = unsafe { read(current, off!(dentry_parent))? };
        if parent == current {
            return Some(depth as u32);
        }
        unsafe { dentry_name(current, slot)? };
        current = parent;
    }
    let parent: *const u8 = unsafe { read(current, off!(dentry_parent))? };
    (parent == current).then_some(BASE_DEPTH as u32)
}

/// The first byte of `dentry`'s name (0 when unreadable).
#[inline(always)]
pub fn first_name_bytes(dentry: *const u8, dest: &mut [u8; 8]) {
    let _ = unsafe { dentry_name(dentry, dest) };
}
