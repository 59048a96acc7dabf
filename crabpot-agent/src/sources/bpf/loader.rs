//! Loading the embedded eBPF object and attaching its programs.
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use crabpot_common::{DENY_NAME_LEN, KernelOffsets, names};

use crate::sources::bpf::{btf, tracefs};

/// The kernel object built from `crabpot-ebpf` by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/crabpot"));

/// The embedded kernel object, for loaders other than [`load`] (e.g. the BPF LSM VM test).
pub fn object() -> &'static [u8] {
    EBPF_OBJECT
}

/// Program name → (tracepoint category, tracepoint name).
pub const TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("sys_enter_execve", "syscalls", "sys_enter_execve"),
    ("sys_enter_execveat", "syscalls", "sys_enter_execveat"),
    ("sys_enter_openat", "syscalls", "sys_enter_openat"),
    ("sys_enter_openat2", "syscalls", "sys_enter_openat2"),
    ("sys_enter_connect", "syscalls", "sys_enter_connect"),
    ("sys_enter_socket", "syscalls", "sys_enter_socket"),
    ("sys_enter_ptrace", "syscalls", "sys_enter_ptrace"),
    ("sys_enter_mount", "syscalls", "sys_enter_mount"),
    ("sys_enter_move_mount", "syscalls", "sys_enter_move_mount"),
    ("sys_enter_fsmount", "syscalls", "sys_enter_fsmount"),
    ("sys_exit_mount", "syscalls", "sys_exit_mount"),
    ("sys_exit_ptrace", "syscalls", "sys_exit_ptrace"),
    ("sys_exit_execve", "syscalls", "sys_exit_execve"),
    ("sys_exit_execveat", "syscalls", "sys_exit_execveat"),
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sched_process_fork", "sched", "sched_process_fork"),
    ("sys_enter_open", "syscalls", "sys_enter_open"),
    ("sys_enter_symlinkat", "syscalls", "sys_enter_symlinkat"),
    ("sys_enter_symlink", "syscalls", "sys_enter_symlink"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("cgroup_attach_task", "cgroup", "cgroup_attach_task"),
];

/// Tracepoints some architectures do not have (arm64 has no open(2)): skipped when absent.
const OPTIONAL: &[&str] = &["sys_enter_open", "sys_enter_symlink"];

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(transparent)]
    Tracefs(#[from] tracefs::TracefsError),
    #[error(
        "loading the eBPF object failed: {0}; the agent needs root (CAP_BPF, CAP_PERFMON) \
         and a kernel with BPF ring buffers (5.8+)"
    )]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the eBPF object has no program `{0}` (build mismatch: rebuild the agent)")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map `{0}` (build mismatch: rebuild the agent)")]
    MissingMap(&'static str),
    #[error("map `{name}`: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error(
        "cannot attach `{program}` to tracepoint {category}/{tracepoint}: {source}; the kernel \
         needs CONFIG_FTRACE_SYSCALLS and tracefs"
    )]
    Attach {
        program: &'static str,
        category: &'static str,
        tracepoint: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("ring buffer size {0} is not valid: it must be a power of two of at least 4096 bytes")]
    RingSize(u32),
}

pub struct BpfOptions {
    pub ring_buffer_bytes: u32,
}

/// The loaded programs and the maps the agent works with. Dropping it detaches everything.
pub struct KernelPipeline {
    /// Keeps the programs and their links alive.
    pub ebpf: Ebpf,
    pub events: RingBuf<MapData>,
    pub guard: crate::sources::guard::GuardMaps,
    pub dropped: PerCpuArray<MapData, u64>,
    /// Opens the kernel filter kept out of the ring buffer.
    pub filtered: PerCpuArray<MapData, u64>,
    pub policy: PolicyMaps,
    /// The programs can read the executed file and the cwd (struct offsets from BTF).
    pub offsets_valid: bool,
}

/// The maps through which the agent sets the kernel's policy.
pub struct PolicyMaps {
    pub rule_modes: Array<MapData, u32>,
    pub lsm_enforced: Array<MapData, u32>,
    pub allow_v4: LpmTrie<MapData, [u8; 6], u32>,
    pub allow_v6: LpmTrie<MapData, [u8; 18], u32>,
    /// Names a new program is stopped (or killed) for at its exec.
    pub deny_names: HashMap<MapData, [u8; DENY_NAME_LEN], u32>,
    /// `crabpot_common::control` switches.
    pub control: Array<MapData, u32>,
}

fn take<T>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, aya::maps::MapError>,
) -> Result<T, BpfError> {
    let map = ebpf.take_map(name).ok_or(BpfError::MissingMap(name))?;
    convert(map).map_err(|source| BpfError::Map { name, source })
}

/// A ring buffer must be a power of two of at least one page.
pub fn check_ring_size(size: u32) -> Result<(), BpfError> {
    if size < 4096 || !size.is_power_of_two() {
        return Err(BpfError::RingSize(size));
    }
    Ok(())
}

fn attach_task_readable(root: &std::path::Path) -> bool {
    let path = root.join("events/cgroup/cgroup_attach_task/format");
    std::fs::read_to_string(path).is_ok_and(|format| tracefs::attach_task_layout_ok(&format))
}

/// Load the object, set the globals the programs need and attach every tracepoint.
pub fn load(options: &BpfOptions) -> Result<KernelPipeline, BpfError> {
    check_ring_size(options.ring_buffer_bytes)?;
    let size = options.ring_buffer_bytes;
    let root = tracefs::ensure_mounted()?;
    let fork = tracefs::fork_pid_offsets(&root)?;
    let offsets = btf::running_kernel_offsets().unwrap_or_else(|reason| {
        tracing::warn!(
            "kernel struct offsets unavailable ({reason}): exec events carry no file identity \
             and relative opens no base directory; the agent reads /proc instead"
        );
        KernelOffsets::default()
    });
    let mut ebpf = EbpfLoader::new()
        .override_global(names::KERNEL_OFFSETS, &offsets, true)
        .override_global(names::FORK_PARENT_PID_OFFSET, &fork.parent_pid, true)
        .override_global(names::FORK_CHILD_PID_OFFSET, &fork.child_pid, true)
        .map_max_entries(names::EVENTS, size)
        .load(EBPF_OBJECT)
        .map_err(|e| BpfError::Load(Box::new(e)))?;
    for (program, category, tracepoint) in TRACEPOINTS {
        let present = root.join("events").join(category).join(tracepoint).exists();
        if !present && OPTIONAL.contains(program) {
            tracing::debug!("tracepoint {category}/{tracepoint} absent: `{program}` not attached");
            continue;
        }
        if *program == "cgroup_attach_task" && !attach_task_readable(&root) {
            tracing::warn!(
                "tracepoint cgroup/cgroup_attach_task has another record layout: a move out \
                 of the container's cgroup is caught at the moved process's next watched call"
            );
            continue;
        }
        let attach_error = |source| BpfError::Attach {
            program,
            category,
            tracepoint,
            source: Box::new(source),
        };
        let prog: &mut TracePoint = ebpf
            .program_mut(program)
            .ok_or(BpfError::MissingProgram(program))?
            .try_into()
            .map_err(attach_error)?;
        prog.load().map_err(attach_error)?;
        prog.attach(category, tracepoint).map_err(attach_error)?;
    }
    let events = take(&mut ebpf, names::EVENTS, RingBuf::try_from)?;
    let guard = crate::sources::guard::GuardMaps {
        cgroups: take(&mut ebpf, names::MONITORED_CGROUPS, HashMap::try_from)?,
        levels: take(&mut ebpf, names::GUARD_LEVELS, Array::try_from)?,
        paths: take(&mut ebpf, names::GUARD_PATHS, HashMap::try_from)?,
        tracked: take(&mut ebpf, names::TRACKED, HashMap::try_from)?,
        epoch: take(&mut ebpf, names::GUARD_EPOCH, Array::try_from)?,
    };
    let dropped = take(&mut ebpf, names::DROPPED, PerCpuArray::try_from)?;
    let filtered = take(&mut ebpf, names::FILTERED, PerCpuArray::try_from)?;
    let policy = PolicyMaps {
        deny_names: take(&mut ebpf, names::DENY_NAMES, HashMap::try_from)?,
        control: take(&mut ebpf, names::CONTROL, Array::try_from)?,
        rule_modes: take(&mut ebpf, names::RULE_MODES, Array::try_from)?,
        lsm_enforced: take(&mut ebpf, names::LSM_ENFORCED, Array::try_from)?,
        allow_v4: take(&mut ebpf, names::ALLOW_V4, LpmTrie::try_from)?,
        allow_v6: take(&mut ebpf, names::ALLOW_V6, LpmTrie::try_from)?,
    };
    Ok(KernelPipeline {
        ebpf,
        events,
        guard,
        dropped,
        filtered,
        policy,
        offsets_valid: offsets.valid == 1,
    })
}
