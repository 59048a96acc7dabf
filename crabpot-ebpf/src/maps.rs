//! Maps shared by all programs. Names must match `crabpot_common::names`.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use crabpot_common::{DENY_NAME_LEN, ExecEvent, GuardPath, OpenEvent, control, filtered, rule};

/// Default ring-buffer size; the agent may override it at load time.
pub const EVENTS_BYTES: u32 = 4 << 20;

/// Records for the agent.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// cgroup v2 ids of the guarded container(s) → their depth in the cgroup2 tree (root is 0).
/// Written by the agent.
#[map]
pub static MONITORED_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(64, 0);

/// Bit L set when a guarded cgroup sits at depth L: the depths at which a task's ancestor is
/// compared with `MONITORED_CGROUPS`, so that child cgroups of the container stay guarded.
/// Written by the agent.
#[map]
pub static GUARD_LEVELS: Array<u64> = Array::with_max_entries(1, 0);

/// Bumped whenever the guard changes, so that `GUARD_MEMO` entries made before are not used:
/// [0] by the agent (cgroups added or removed, processes seeded), [1] by the kernel (a
/// process tracked). Each side only increments its own slot, so their sum only grows.
#[map]
pub static GUARD_EPOCH: Array<u64> = Array::with_max_entries(2, 0);

/// Per-CPU memo of the last caller judged by `common::monitored_cgroup`: most syscalls on a
/// CPU come from the task that made the last one, and the memo spares them the hash lookups
/// (cgroup, ancestors, tracked) that dominate the cost for processes outside the container.
#[map]
pub static GUARD_MEMO: PerCpuArray<GuardMemo> = PerCpuArray::with_max_entries(1, 0);

/// One memo entry: who was judged, under which epoch, and the verdict (0: not guarded).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GuardMemo {
    pub cgroup: u64,
    pub guard: u64,
    pub tgid: u32,
    pub _pad: u32,
    pub epoch: u64,
}

/// Guarded cgroup id → its path from the cgroup2 root, to tell a move inside the guarded
/// subtree from one out of it. Written by the agent.
#[map]
pub static GUARD_PATHS: HashMap<u64, GuardPath> = HashMap::with_max_entries(64, 0);

/// Processes that belong to a guarded container, whatever cgroup they are in now: tgid →
/// the guarded cgroup id. Filled at fork and exec (and by the agent from `cgroup.procs` when
/// it starts guarding), emptied at exit. Not LRU: an entry must never be pushed out.
#[map]
pub static TRACKED: HashMap<u32, u64> = HashMap::with_max_entries(65536, 0);

/// Tracked processes already reported outside their subtree (one record per process).
#[map]
pub static ESCAPE_REPORTED: LruHashMap<u32, u32> = LruHashMap::with_max_entries(1024, 0);

/// Ring-buffer reservation failures, indexed by `EventKind` value.
#[map]
pub static DROPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(16, 0);

/// Task id → id of the task that forked it, for forks inside monitored cgroups.
#[map]
pub static PARENTS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(16384, 0);

/// Exec requests seen at `sys_enter`, by thread id, until the kernel says whether they ran
/// (see `exec.rs`). LRU: a thread killed mid-exec leaves an entry that ages out.
#[map]
pub static PENDING_EXECS: LruHashMap<u32, ExecEvent> = LruHashMap::with_max_entries(1024, 0);

/// Per-CPU room to build an exec record before it is stashed (it exceeds the BPF stack).
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU room to build an open record before deciding whether it is sent.
#[map]
pub static OPEN_SCRATCH: PerCpuArray<OpenEvent> = PerCpuArray::with_max_entries(1, 0);

/// Records the kernel kept out of the ring buffer (the policy does not need them), per kind
/// (`crabpot_common::filtered`).
#[map]
pub static FILTERED: PerCpuArray<u64> = PerCpuArray::with_max_entries(filtered::COUNT, 0);

/// Names a new program must not run as (see `deny.rs`). Written by the agent from its
/// denylist; value unused.
#[map]
pub static DENY_NAMES: HashMap<[u8; DENY_NAME_LEN], u32> = HashMap::with_max_entries(256, 0);

/// One per-CPU word the programs pass values through to make them unknown to the
/// verifier (see `deny::opaque`).
#[map]
pub static OPAQUE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Switches the agent sets (`crabpot_common::control`); all 0 until it does.
#[map]
pub static CONTROL: Array<u32> = Array::with_max_entries(control::COUNT, 0);

/// The value of switch `index`, 0 when unreadable.
#[inline(always)]
pub fn control(index: u32) -> u32 {
    CONTROL.get(index).copied().unwrap_or(0)
}

/// Policy mode (`crabpot_common::mode`) of each rule (`crabpot_common::rule`). Written by
/// the agent; all zero (off) until it does.
#[map]
pub static RULE_MODES: Array<u32> = Array::with_max_entries(rule::COUNT, 0);

/// The mode of `rule`, `mode::OFF` when unreadable.
#[inline(always)]
pub fn rule_mode(rule: u32) -> u32 {
    RULE_MODES
        .get(rule)
        .copied()
        .unwrap_or(crabpot_common::mode::OFF)
}

/// Allowed IPv4 destinations: key data is the address then the port (network order), so an
/// entry of prefix 32 + 16 is one address and port, a prefix of at most 32 any port.
#[map]
pub static ALLOW_V4: LpmTrie<[u8; 6], u32> = LpmTrie::with_max_entries(1024, 0);

/// Allowed IPv6 destinations, laid out like [`ALLOW_V4`].
#[map]
pub static ALLOW_V6: LpmTrie<[u8; 18], u32> = LpmTrie::with_max_entries(1024, 0);

/// 1 at a rule's index when a BPF LSM program enforces it (the agent sets this after the
/// LSM programs attached); the tracepoints then leave blocking to it instead of killing.
#[map]
pub static LSM_ENFORCED: Array<u32> = Array::with_max_entries(rule::COUNT, 0);

/// The verdict for a rule match seen at syscall entry, and whether to kill the caller: where
/// BPF LSM enforces the rule the call is refused there; elsewhere a blocking rule can only
/// kill.
#[inline(always)]
pub fn entry_verdict(rule: u32) -> (u32, bool) {
    use crabpot_common::{mode, verdict};
    match rule_mode(rule) {
        mode::OFF => (verdict::NONE, false),
        mode::LOG => (verdict::LOG, false),
        mode::ALERT => (verdict::ALERT, false),
        mode::AUDIT => (verdict::AUDIT, false),
        _ if LSM_ENFORCED.get(rule).copied().unwrap_or(0) == 1 => (verdict::BLOCKED, false),
        _ => (verdict::KILLED, true),
    }
}

/// When a refused destination (address, IP version and protocol) was last reported, and
/// how many of its packets went unreported since: one record a second per destination, so a
/// flood does not flood the ring.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RateSlot {
    pub last_ns: u64,
    pub suppressed: u32,
    pub _pad: u32,
}

#[map]
pub static PACKET_REPORTS: LruHashMap<[u8; 20], RateSlot> = LruHashMap::with_max_entries(4096, 0);
