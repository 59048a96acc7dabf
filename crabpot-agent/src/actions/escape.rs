//! Killing a process of the container that another process moved out of the guarded cgroup
//! (the kernel kills a process that moves itself; it can only signal the current task).
pub(crate) fn kill_escaped(pid: u32) {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return;
    };
    if raw <= 1 {
        return;
    }
    // SAFETY: pidfd_open on a pid number; the fd (if any) is ours and closed below. A pidfd
    // pins the process, so the signal cannot reach a later process given the same number.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    if fd < 0 {
        tracing::info!("process {pid} that left the container's cgroup is already gone");
        return;
    }
    let fd = fd as libc::c_int;
    // SAFETY: pidfd_send_signal with our pidfd, no siginfo; then close our fd.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    let error = std::io::Error::last_os_error();
    // SAFETY: the pidfd is ours and used no more.
    unsafe { libc::close(fd) };
    if rc == 0 {
        tracing::warn!("killed process {pid}: it left the container's cgroup");
    } else {
        tracing::error!("cannot kill process {pid} that left the container's cgroup: {error}");
    }
}
