//! CrabPot kernel programs.
//!
//! Every program starts with the cgroup filter in [`common::monitored_cgroup`]: a task whose
//! cgroup v2 id is not in `MONITORED_CGROUPS` returns at once. A per-CPU memo of the last
//! caller judged spares the hash lookups, so the host outside the guarded container usually
//! pays two helper calls and two array reads. Events go through the `EVENTS` ring
//! buffer; a failed reservation is counted per kind in `DROPPED`, never lost silently.
#![no_std]
// For `atomic_xadd`: the guard epoch is bumped from several CPUs at once.
#![allow(internal_features)]
#![feature(core_intrinsics)]
#![no_main]

mod common;
mod connect;
mod deny;
mod dns;
mod escape;
mod exec;
mod lineage;
mod link;
mod lsm;
mod maps;
mod mount;
mod net_policy;
mod open;
mod packet;
mod ptrace;
mod refused;
mod task;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
