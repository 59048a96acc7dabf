//! What a process really executes, judged by the file rather than by any name it shows.
//!
//! A renamed copy, a hard link, a symlink with an innocent name, an `execveat` of an open
//! file descriptor or a `memfd_create` file all still run the same bytes. On the first exec
//! from a container root the agent indexes the denylisted programs it finds in that root's
//! usual bin directories: their inode (device, inode number) and a keyed hash of their
//! content. An executed file is then identified by inode (links, symlinks) or, when its size
//! matches an indexed program, by content (copies, memfd). The keyed SipHash uses a random
//! key per agent, so content cannot be crafted to collide; a copy with any byte changed is
//! no longer recognised (see README: a known limit of content matching).
//!
//! For multi-call binaries (busybox, toybox) the applet comes from argv[0], as they decide.
use std::{
    collections::{HashMap, HashSet, hash_map::RandomState},
    fs::{File, Metadata},
    hash::{BuildHasher as _, Hasher as _},
    io::Read as _,
    os::unix::fs::MetadataExt as _,
    sync::Mutex,
};

use crate::policy::{
    denylist::{MULTICALL, applet, basename, builtin_category, executable_name},
    drift::{Drift, DriftCheck},
    exe_files::{open_at_root, open_in_container, open_regular, open_root, shebang},
};

const BIN_DIRS: &[&str] = &["/bin", "/usr/bin", "/sbin", "/usr/sbin", "/usr/local/bin"];
const AT_FDCWD: i32 = -100;
const AT_EMPTY_PATH: u32 = 0x1000;
/// Files larger than this are never hashed.
const MAX_HASHED_BYTES: u64 = 64 << 20;
const MAX_CACHED: usize = 4096;
/// Container roots indexed at most (a container has one; chroots add more).
const MAX_ROOTS: usize = 64;
/// Interpreters followed through `#!` lines (the kernel allows a few levels).
const MAX_SCRIPT_DEPTH: usize = 4;

/// What an indexed file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identity {
    /// A multi-call binary: argv decides the program.
    Multicall,
    /// One program (possibly known by several names, e.g. sh and dash).
    Program(String),
}

impl Identity {
    /// The program this identity runs with `argv`.
    pub(crate) fn name(&self, argv: &[String]) -> String {
        match self {
            Identity::Multicall => applet(argv),
            Identity::Program(name) => name.clone(),
        }
    }
}

/// What [`ExeIdentity::exec_names`] found out about an exec.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ExecFiles {
    /// Names of the indexed programs the executed file(s) are.
    pub names: Vec<String>,
    /// The exec ran an open file descriptor (execveat AT_EMPTY_PATH, /dev/fd/N, memfd).
    pub fileless: bool,
    /// Some file could be opened to judge (false: the process was gone already).
    pub opened: bool,
    /// The executed file is not part of the container's image.
    pub drift: Option<Drift>,
}

/// An exec as the kernel reported it at syscall entry.
pub(crate) struct ExecTarget<'a> {
    pub tgid: u32,
    /// The guarded container's main process: its root stands in when `tgid` is gone.
    pub container_pid: Option<u32>,
    pub filename: &'a str,
    pub dirfd: i32,
    pub flags: u32,
    pub argv: &'a [String],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileKey {
    fn of(meta: &Metadata) -> Self {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

#[derive(Default)]
struct State {
    roots: HashSet<(u64, u64)>,
    by_inode: HashMap<(u64, u64), Identity>,
    by_content: HashMap<(u64, u64), Identity>,
    sizes: HashSet<u64>,
    verdicts: HashMap<FileKey, Option<Identity>>,
}

/// Identifies executed files against the programs of the guarded container's image.
pub(crate) struct ExeIdentity {
    names: Vec<String>,
    key: RandomState,
    state: Mutex<State>,
    drift: DriftCheck,
}

/// What one exec's judging works with.
struct Judging<'a> {
    proc_dir: &'a str,
    container_pid: Option<u32>,
    state: &'a mut State,
    names: &'a mut Vec<String>,
}

impl Judging<'_> {
    fn push(&mut self, name: String) {
        if !name.is_empty() && !self.names.contains(&name) {
            self.names.push(name);
        }
    }
}

/// The fd an exec runs from, for `execveat(fd, "", AT_EMPTY_PATH)` and /dev/fd/N paths.
fn exec_fd(target: &ExecTarget) -> Option<i32> {
    if target.filename.is_empty() && target.flags & AT_EMPTY_PATH != 0 {
        return Some(target.dirfd);
    }
    ["/dev/fd/", "/proc/self/fd/", "/proc/thread-self/fd/"]
        .iter()
        .find_map(|prefix| target.filename.strip_prefix(prefix)?.parse().ok())
}

impl ExeIdentity {
    /// Index the denylisted `names` (and the multi-call binaries) of each container root.
    pub(crate) fn new(names: &[String]) -> Self {
        ExeIdentity {
            names: names.to_vec(),
            key: RandomState::new(),
            state: Mutex::default(),
            drift: DriftCheck::default(),
        }
    }

    fn content_hash(&self, mut file: &File, size: u64) -> Option<u64> {
        if size > MAX_HASHED_BYTES {
            return None;
        }
        let mut hasher = self.key.build_hasher();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            hasher.write(&buf[..n]);
        }
        Some(hasher.finish())
    }

    /// Index the programs of the root of `proc_dir` once per root directory.
    fn index_root(&self, proc_dir: &str, state: &mut State) {
        // Held open: the process may exit while we look, its root must not vanish midway.
        let Some(root_dir) = open_root(proc_dir) else {
            return;
        };
        let Ok(root) = root_dir.metadata() else {
            return;
        };
        // Bounded: a process that chroots into fresh directories cannot make us index forever.
        if state.roots.len() >= MAX_ROOTS || !state.roots.insert((root.dev(), root.ino())) {
            return;
        }
        let mut found: HashMap<(u64, u64), (Vec<String>, File, u64)> = HashMap::new();
        let names = self
            .names
            .iter()
            .map(String::as_str)
            .chain(MULTICALL.iter().copied());
        for name in names {
            for dir in BIN_DIRS {
                let Some((file, meta)) = open_at_root(&root_dir, &format!("{dir}/{name}")) else {
                    continue;
                };
                let entry = found
                    .entry((meta.dev(), meta.ino()))
                    .or_insert_with(|| (Vec::new(), file, meta.size()));
                if !entry.0.iter().any(|n| n == name) {
                    entry.0.push(name.to_string());
                }
            }
        }
        for (inode, (names, file, size)) in found {
            // One file behind names of different kinds (a shell and a network tool) is a
            // multi-call binary even when not called busybox: argv[0] picks the program.
            // Aliases of one kind (sh, dash) are one program under any name.
            let kinds: HashSet<&str> = names.iter().map(|n| builtin_category(n)).collect();
            let identity =
                if kinds.len() > 1 || names.iter().any(|n| MULTICALL.contains(&n.as_str())) {
                    Identity::Multicall
                } else {
                    Identity::Program(names[0].clone())
                };
            tracing::debug!(?names, ?identity, size, "indexed executable");
            if let Some(hash) = self.content_hash(&file, size) {
                state.by_content.insert((size, hash), identity.clone());
                state.sizes.insert(size);
            }
            state.by_inode.insert(inode, identity);
        }
        state.verdicts.clear();
    }

    fn identify(&self, file: &File, meta: &Metadata, state: &mut State) -> Option<Identity> {
        let key = FileKey::of(meta);
        if let Some(verdict) = state.verdicts.get(&key) {
            return verdict.clone();
        }
        let verdict = state
            .by_inode
            .get(&(key.dev, key.ino))
            .cloned()
            .or_else(|| {
                if !state.sizes.contains(&key.size) {
                    return None;
                }
                let hash = self.content_hash(file, key.size)?;
                state.by_content.get(&(key.size, hash)).cloned()
            });
        if state.verdicts.len() >= MAX_CACHED {
            state.verdicts.clear();
        }
        state.verdicts.insert(key, verdict.clone());
        verdict
    }

    /// The names the program started by this exec is known by, from the file it runs;
    /// no names when no file could be found or it is not an indexed program.
    pub(crate) fn exec_names(&self, target: &ExecTarget) -> ExecFiles {
        let proc_dir = format!("/proc/{}", target.tgid);
        let mut files = Vec::new();
        let fileless = exec_fd(target).is_some();
        let mut vanished = None;
        if let Some(fd) = exec_fd(target) {
            // Before the exec the descriptor names the file; after it, /proc/<pid>/exe does.
            files.extend(open_regular(&format!("{proc_dir}/fd/{fd}")));
            files.extend(open_regular(&format!("{proc_dir}/exe")));
        } else if target.filename == "/proc/self/exe" {
            files.extend(open_regular(&format!("{proc_dir}/exe")));
        } else if let Some(path) = self.absolute(&proc_dir, target) {
            match open_in_container(&proc_dir, target.container_pid, &path) {
                Some(found) => files.push(found),
                // Replaced or removed already: what the process runs now.
                None => match open_regular(&format!("{proc_dir}/exe")) {
                    Some(found) => files.push(found),
                    None => vanished = Some(path),
                },
            }
        }
        let root_pid = target.container_pid.unwrap_or(target.tgid);
        let drift = match files.first() {
            Some((file, meta)) => self.drift.check(root_pid, file, meta),
            // It ran, and neither it nor its process is there a moment later: a file deleted
            // right after its exec is what a dropper does. Said only when the container's
            // root could be looked in (not for a process gone with its own root).
            None => vanished
                .filter(|_| open_root(&format!("/proc/{root_pid}")).is_some())
                .map(|path| Drift::Vanished { path }),
        };
        let mut found = ExecFiles {
            fileless,
            opened: !files.is_empty(),
            drift,
            ..ExecFiles::default()
        };
        let Ok(mut state) = self.state.lock() else {
            return found;
        };
        if let Some(pid) = target.container_pid {
            self.index_root(&format!("/proc/{pid}"), &mut state);
        }
        self.index_root(&proc_dir, &mut state);
        let mut judge = Judging {
            proc_dir: &proc_dir,
            container_pid: target.container_pid,
            state: &mut state,
            names: &mut found.names,
        };
        for (file, meta) in &files {
            self.judge_file(&mut judge, file, meta, target.argv, 0);
        }
        found
    }

    /// Name the program `file` is; for a script, the interpreter of its `#!` line, as the
    /// kernel runs it (no exec syscall names the interpreter).
    fn judge_file(
        &self,
        judge: &mut Judging,
        file: &File,
        meta: &Metadata,
        argv: &[String],
        depth: usize,
    ) {
        if let Some(identity) = self.identify(file, meta, judge.state) {
            judge.push(identity.name(argv));
            return;
        }
        if depth >= MAX_SCRIPT_DEPTH {
            return;
        }
        let Some((interpreter, arg)) = shebang(file) else {
            return;
        };
        if basename(&interpreter) == "env"
            && let Some(program) = arg.as_deref().and_then(|a| {
                a.split_whitespace()
                    .find(|w| !w.starts_with('-') && !w.contains('='))
            })
        {
            judge.push(basename(program).to_string()); // #!/usr/bin/env bash
        }
        let mut next: Vec<String> = vec![interpreter.clone()];
        next.extend(arg);
        next.extend(argv.iter().cloned());
        judge.push(executable_name(&interpreter, &next));
        if let Some((file, meta)) =
            open_in_container(judge.proc_dir, judge.container_pid, &interpreter)
        {
            self.judge_file(judge, &file, &meta, &next, depth + 1);
        }
    }

    /// The exec's path made absolute as the container sees it (relative to its cwd/dirfd).
    fn absolute(&self, proc_dir: &str, target: &ExecTarget) -> Option<String> {
        if target.filename.starts_with('/') {
            return Some(target.filename.to_string());
        }
        let base = if target.dirfd == AT_FDCWD {
            format!("{proc_dir}/cwd")
        } else {
            format!("{proc_dir}/fd/{}", target.dirfd)
        };
        let base = std::fs::read_link(base).ok()?;
        Some(format!("{}/{}", base.to_string_lossy(), target.filename))
    }

    /// The program a running process executes, by `/proc/<pid>/exe`; `None` when that
    /// cannot be read, `Some(None)` when it is not an indexed program.
    pub(crate) fn running_name(&self, pid: u32, argv: &[String]) -> Option<Option<String>> {
        let proc_dir = format!("/proc/{pid}");
        let (file, meta) = open_regular(&format!("{proc_dir}/exe"))?;
        let mut state = self.state.lock().ok()?;
        self.index_root(&proc_dir, &mut state);
        Some(
            self.identify(&file, &meta, &mut state)
                .map(|identity| identity.name(argv)),
        )
    }
}

#[cfg(test)]
#[path = "exe_identity_tests.rs"]
mod tests;
