//! Drift: an executed file that is not part of the container's image.
//!
//! Content matching (exe_identity.rs) only knows the programs the image ships; a copy with
//! one byte changed, or any program written into the container after it started, is not
//! one of them. Such a file lives where the image is not: in the container's writable layer
//! (the overlay's `upperdir`, read from the container's own mountinfo, so it works for
//! Docker's overlay2 and containerd's overlayfs snapshotter alike), on another writable
//! mount (a tmpfs, a volume), or in no directory at all (a memfd, a deleted file). Files of
//! the image's lower layers are not drift; a read-only bind mount (Docker's `--init`) is the
//! operator's, not the container's, and is not drift either.
use std::{
    collections::HashMap,
    fs::{File, Metadata},
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::PathBuf,
    sync::Mutex,
};

use crate::sources::cgroup::unescape_octal;

/// Why an executed file is not part of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drift {
    /// In the container's writable layer: created or changed after the container started.
    WritableLayer { path: String },
    /// On another writable mount of the container (tmpfs, volume, read-write bind).
    WritableMount {
        path: String,
        mount_point: String,
        fstype: String,
    },
    /// A file with no name left: a memfd or a deleted file.
    Unlinked { path: String },
    /// Gone from the container a moment after it ran, with its process: not checkable, and
    /// what a dropper that deletes itself leaves.
    Vanished { path: String },
}

impl Drift {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Drift::WritableLayer { .. } => "written into the container's writable layer",
            Drift::WritableMount { .. } => "on a writable mount",
            Drift::Unlinked { .. } => "a memfd or deleted file",
            Drift::Vanished { .. } => "gone from the container right after it ran",
        }
    }

    /// The file's path as the container sees it (`/memfd:x (deleted)` for a memfd).
    pub(crate) fn path(&self) -> &str {
        match self {
            Drift::WritableLayer { path }
            | Drift::WritableMount { path, .. }
            | Drift::Unlinked { path }
            | Drift::Vanished { path } => path,
        }
    }
}

/// One line of a mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    mount_point: String,
    fstype: String,
    read_only: bool,
    /// The overlay's upper directory (host path), for an overlay mount.
    upper: Option<PathBuf>,
    /// The overlay's lower directories (host paths), topmost first.
    lowers: Vec<PathBuf>,
}

/// Parse a mountinfo text into mounts by id.
fn parse_mountinfo(text: &str) -> HashMap<u64, Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split_whitespace().collect();
            let id = fields.first()?.parse().ok()?;
            let mount_point = unescape_octal(fields.get(4)?);
            let read_only = fields.get(5)?.split(',').any(|o| o == "ro");
            let mut after = after.split_whitespace();
            let fstype = after.next()?.to_string();
            let options = after.nth(1).unwrap_or("");
            let option = |key: &str| {
                options
                    .split(',')
                    .find_map(|o| o.strip_prefix(key))
                    .map(unescape_octal)
            };
            let upper = option("upperdir=").map(PathBuf::from);
            let lowers = option("lowerdir=")
                .map(|dirs| dirs.split(':').map(PathBuf::from).collect())
                .unwrap_or_default();
            Some((
                id,
                Mount {
                    mount_point,
                    fstype,
                    read_only,
                    upper,
                    lowers,
                },
            ))
        })
        .collect()
}

/// The mounts of one container root, and which is the root.
#[derive(Debug, Default)]
struct RootMounts {
    mounts: HashMap<u64, Mount>,
    root: Option<u64>,
}

impl RootMounts {
    fn read(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
        let mounts = parse_mountinfo(&text);
        // The last mount on "/" is the one the container sees (later mounts stack on top).
        let root = text.lines().rev().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(4) == Some(&"/")).then(|| fields.first()?.parse().ok())?
        });
        Some(RootMounts { mounts, root })
    }
}

/// The mount id of an open file (`statx` with `STATX_MNT_ID`).
fn mount_id(file: &File) -> Option<u64> {
    // SAFETY: statx is plain data; zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd, an empty NUL-terminated path with AT_EMPTY_PATH, a live buffer.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    (rc == 0 && stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id)
}

/// The path of an open file as the process that opened it in the container sees it: the
/// kernel prints it relative to the mount's root, which for a container root is `/`.
fn container_path(file: &File) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// The file of the image's lower layers at `path`: the topmost layer that has it decides
/// (a whiteout, a character device, hides it).
fn lower_file(lowers: &[PathBuf], path: &str) -> Option<File> {
    let relative = path.trim_start_matches('/');
    for lower in lowers {
        let Ok(meta) = std::fs::symlink_metadata(lower.join(relative)) else {
            continue;
        };
        return meta
            .is_file()
            .then(|| File::open(lower.join(relative)).ok())
            .flatten();
    }
    None
}

/// Largest file compared byte for byte with its image original; a larger copy-up counts as
/// drift (no program the image ships here comes near it; node is ~120 MiB).
const MAX_COMPARED_BYTES: u64 = 512 << 20;

/// Whether two files have the same bytes.
fn same_content(a: &File, b: &File, size: u64) -> bool {
    use std::os::unix::fs::FileExt as _;
    if size > MAX_COMPARED_BYTES || b.metadata().map(|m| m.len()).ok() != Some(size) {
        return false;
    }
    let (mut left, mut right) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut offset = 0;
    while offset < size {
        let (Ok(n), Ok(m)) = (a.read_at(&mut left, offset), b.read_at(&mut right, offset)) else {
            return false;
        };
        if n == 0 || n != m || left[..n] != right[..n] {
            return false;
        }
        offset += n as u64;
    }
    true
}

/// Identity of one version of a file, for remembering verdicts.
type FileVersion = (u64, u64, u64, i64, i64);

fn version(meta: &Metadata) -> FileVersion {
    (
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.ctime(),
    )
}

/// Copy-up verdicts remembered at most.
const MAX_VERDICTS: usize = 4096;

/// Tells drift, with the container roots' mounts cached by the pid whose root they are.
#[derive(Default)]
pub(crate) struct DriftCheck {
    roots: Mutex<HashMap<u32, RootMounts>>,
    /// Files of the writable layer that are byte-for-byte their image original (copied up by
    /// a chmod, a hard link or a touch, not changed): not drift.
    copied_up: Mutex<HashMap<FileVersion, bool>>,
}

/// Container roots remembered at most (one per container run; chroots add none).
const MAX_ROOTS: usize = 64;

impl DriftCheck {
    /// Whether `file`, executed in the container whose main process is `container_pid`, is
    /// not part of its image. `None`: part of the image, or not known.
    pub(crate) fn check(&self, container_pid: u32, file: &File, meta: &Metadata) -> Option<Drift> {
        let path = container_path(file).unwrap_or_default();
        if meta.nlink() == 0 {
            return Some(Drift::Unlinked { path });
        }
        let mount_id = mount_id(file)?;
        let mut roots = self.roots.lock().ok()?;
        let known = roots
            .get(&container_pid)
            .is_some_and(|r| r.mounts.contains_key(&mount_id));
        if !known {
            // New root, or a mount made since we looked: read the mountinfo again.
            if roots.len() >= MAX_ROOTS {
                roots.retain(|pid, _| std::path::Path::new(&format!("/proc/{pid}")).exists());
            }
            roots.insert(container_pid, RootMounts::read(container_pid)?);
        }
        let root = roots.get(&container_pid)?;
        let Some(mount) = root.mounts.get(&mount_id) else {
            // Not a mount of the container at all: memfd_create's and the like.
            return Some(Drift::Unlinked { path });
        };
        if root.root == Some(mount_id) {
            let upper = mount.upper.as_ref()?;
            let in_upper = upper.join(path.trim_start_matches('/'));
            if !std::fs::symlink_metadata(&in_upper).is_ok_and(|m| m.is_file()) {
                return None; // served from the image's layers
            }
            let lowers = mount.lowers.clone();
            drop(roots);
            return (!self.unchanged_copy(&lowers, &path, file, meta))
                .then_some(Drift::WritableLayer { path });
        }
        (!mount.read_only).then(|| Drift::WritableMount {
            path,
            mount_point: mount.mount_point.clone(),
            fstype: mount.fstype.clone(),
        })
    }
}

impl DriftCheck {
    /// Whether the writable-layer file `file` at `path` is the image's own file copied up
    /// unchanged (remembered per file version: a write changes mtime and ctime).
    fn unchanged_copy(&self, lowers: &[PathBuf], path: &str, file: &File, meta: &Metadata) -> bool {
        let key = version(meta);
        if let Some(same) = self
            .copied_up
            .lock()
            .ok()
            .and_then(|c| c.get(&key).copied())
        {
            return same;
        }
        let same =
            lower_file(lowers, path).is_some_and(|lower| same_content(file, &lower, meta.size()));
        if let Ok(mut cache) = self.copied_up.lock() {
            if cache.len() >= MAX_VERDICTS {
                cache.clear();
            }
            cache.insert(key, same);
        }
        same
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
81 52 0:40 / / rw,relatime master:2 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/abc/diff,workdir=/var/lib/docker/overlay2/abc/work
83 81 0:44 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
97 83 0:48 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k
101 81 0:22 /usr/bin/docker-init /sbin/docker-init ro,relatime - ext4 /dev/vda rw
";

    #[test]
    fn reads_the_root_overlay_and_the_other_mounts() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(
            mounts[&81].upper,
            Some(PathBuf::from("/var/lib/docker/overlay2/abc/diff"))
        );
        assert_eq!(mounts[&81].fstype, "overlay");
        assert!(!mounts[&97].read_only);
        assert_eq!(mounts[&97].mount_point, "/dev/shm");
        assert!(mounts[&101].read_only);
        assert_eq!(mounts[&83].upper, None);
        assert_eq!(
            mounts[&81].lowers,
            vec![
                PathBuf::from("/var/lib/docker/overlay2/l/A"),
                PathBuf::from("/var/lib/docker/overlay2/l/B")
            ]
        );
        assert!(parse_mountinfo("garbage\n - \n").is_empty());
    }

    #[test]
    fn a_copy_up_is_told_from_a_change_by_content() {
        let dir = std::env::temp_dir().join(format!("crabpot-lower-{}", std::process::id()));
        let (top, bottom) = (dir.join("top"), dir.join("bottom"));
        for layer in [&top, &bottom] {
            std::fs::create_dir_all(layer.join("bin")).expect("dir");
        }
        std::fs::write(bottom.join("bin/tool"), b"original bytes").expect("write");
        std::fs::write(dir.join("same"), b"original bytes").expect("write");
        std::fs::write(dir.join("changed"), b"original bytez").expect("write");
        let lowers = vec![top.clone(), bottom.clone()];
        let check = DriftCheck::default();
        for (name, expected) in [("same", true), ("changed", false)] {
            let file = File::open(dir.join(name)).expect("open");
            let meta = file.metadata().expect("meta");
            assert_eq!(
                check.unchanged_copy(&lowers, "/bin/tool", &file, &meta),
                expected,
                "{name}"
            );
            assert_eq!(
                check.unchanged_copy(&lowers, "/bin/tool", &file, &meta),
                expected,
                "{name}"
            );
            assert!(!check.unchanged_copy(&lowers, "/bin/other", &file, &meta) || name == "same");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_deleted_file_is_drift() {
        let dir = std::env::temp_dir().join(format!("crabpot-drift-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("gone");
        std::fs::write(&path, b"x").expect("write");
        let file = File::open(&path).expect("open");
        std::fs::remove_file(&path).expect("remove");
        let meta = file.metadata().expect("meta");
        let check = DriftCheck::default();
        let found = check.check(std::process::id(), &file, &meta);
        assert!(
            matches!(&found, Some(Drift::Unlinked { path }) if path.contains("gone")),
            "{found:?}"
        );
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn a_file_of_the_hosts_root_is_not_drift_without_an_upper_layer() {
        // Our own root has no overlay upper dir: nothing there is "written since start".
        let file = File::open("/proc/self/exe").expect("open own exe");
        let meta = file.metadata().expect("meta");
        let check = DriftCheck::default();
        let found = check.check(std::process::id(), &file, &meta);
        assert!(
            !matches!(
                found,
                Some(Drift::WritableLayer { .. } | Drift::Unlinked { .. })
            ),
            "{found:?}"
        );
    }
}
