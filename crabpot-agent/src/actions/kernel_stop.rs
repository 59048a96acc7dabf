//! A program the kernel stopped at its exec (SIGSTOP before its first instruction) waits
//! for the agent's judgement: a CRITICAL one keeps it stopped (the container is frozen
//! next); anything else was a false alarm (the health probe, the main process, a file found
//! innocent, an operator's exception or break-glass shell) and it is continued.

/// Send SIGCONT to a process the kernel stopped; what happened, for the log.
pub(crate) fn continue_stopped(tgid: u32) -> &'static str {
    let Ok(pid) = libc::pid_t::try_from(tgid) else {
        return "pid out of range";
    };
    // SAFETY: kill(2) with a plain pid and signal number has no memory effects.
    if unsafe { libc::kill(pid, libc::SIGCONT) } == 0 {
        "continued"
    } else {
        "already gone"
    }
}
