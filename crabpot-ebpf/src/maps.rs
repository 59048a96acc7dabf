//! Maps shared by all programs. Names must match `crabpot_common::names`.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use crabpot_common::rule;

/// Default ring-buffer size; the agent may override it at load time.
pub const EVENTS_BYTES: u32 = 4 << 20;

/// Records for the agent.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// cgroup v2 ids of the guarded container(s) → reserved flags. Written by the agent.
#[map]
pub static MONITORED_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(64, 0);

/// Ring-buffer reservation failures, indexed by `EventKind` value.
#[map]
pub static DROPPED: PerCpuArray<u64> = PerCpuArray::with_max_entries(8, 0);

/// Task id → id of the task that forked it, for forks inside monitored cgroups.
#[map]
pub static PARENTS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(16384, 0);

/// Policy mode (`crabpot_common::mode`) of each rule (`crabpot_common::rule`). Written by
/// the agent; all zero (off) until it does.
#[map]
pub static RULE_MODES: Array<u32> = Array::with_max_entries(rule::COUNT, 0);

/// The mode of `rule`, `mode::OFF` when unreadable.
#[inline(always)]
pub fn rule_mode(rule: u32) -> u32 {
    RULE_MODES.get(rule).copied().unwrap_or(crabpot_common::mode::OFF)
}
