//! BPF LSM hooks: the layer that refuses a call instead of killing the caller. Each program
//! checks the cgroup filter first, then its rule's mode: only `mode::BLOCK` refuses (-EPERM);
//! every other mode, and every task outside a guarded cgroup, gets the verdict of the LSMs
//! that ran before (0 when none refused). Events stay with the tracepoints, which see the
//! same calls at syscall entry.
//!
//! Kernels that refuse LSM programs (no `bpf` in the LSM list, no BTF, trampolines blocked)
//! simply never load these; the tracepoints in the same object work without them.
use aya_ebpf::{macros::lsm, programs::LsmContext};
use crabpot_common::{mode, rule};

use crate::{common::monitored_cgroup_unmemoized, maps::rule_mode};

const EPERM: i32 = 1;
/// `PTRACE_MODE_ATTACH` in the mode of `ptrace_access_check`: attach, seize, /proc/<pid>/mem,
/// process_vm_*. Read-only checks (ps reading /proc/<pid>/stat) stay allowed.
const PTRACE_MODE_ATTACH: u32 = 0x02;

/// The verdict for a call under `rule`: the previous LSM's refusal wins, then our rule.
#[inline(always)]
fn decide(rule: u32, previous: i32) -> i32 {
    if previous != 0 {
        return previous;
    }
    if monitored_cgroup_unmemoized().is_none() {
        return 0;
    }
    if rule_mode(rule) == mode::BLOCK {
        -EPERM
    } else {
        0
    }
}

/// `sb_mount(dev_name, path, type, flags, data)`: mount(2), including remounts and binds.
#[lsm(hook = "sb_mount")]
pub fn lsm_sb_mount(ctx: LsmContext) -> i32 {
    decide(rule::MOUNT, ctx.arg(5))
}

/// `move_mount(from_path, to_path)`: attaching a mount made with fsopen/fsmount or open_tree.
#[lsm(hook = "move_mount")]
pub fn lsm_move_mount(ctx: LsmContext) -> i32 {
    decide(rule::MOUNT, ctx.arg(2))
}

/// `ptrace_access_check(child, mode)`: the caller (tracer) is the one checked.
#[lsm(hook = "ptrace_access_check")]
pub fn lsm_ptrace_access_check(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(2);
    let access: u32 = ctx.arg(1);
    if access & PTRACE_MODE_ATTACH == 0 {
        return previous;
    }
    decide(rule::PTRACE, previous)
}

/// `ptrace_traceme(parent)`: the caller asks to be traced.
#[lsm(hook = "ptrace_traceme")]
pub fn lsm_ptrace_traceme(ctx: LsmContext) -> i32 {
    decide(rule::PTRACE, ctx.arg(1))
}

/// `bprm_check_security(bprm)`: every exec. Blocking it is opt-in (rule EXEC is never BLOCK
/// by default) since it refuses every program start in the container.
#[lsm(hook = "bprm_check_security")]
pub fn lsm_bprm_check_security(ctx: LsmContext) -> i32 {
    decide(rule::EXEC, ctx.arg(1))
}
