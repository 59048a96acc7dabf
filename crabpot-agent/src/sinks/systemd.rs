//! systemd `Type=notify`: READY=1 once the agent guards, WATCHDOG=1 while its loops run.
use std::{os::unix::net::UnixDatagram, time::Duration};

/// Send one notification to `$NOTIFY_SOCKET` (no-op when not under systemd).
pub(crate) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = UnixDatagram::unbound().and_then(|socket| {
        let path = path.to_string_lossy();
        if let Some(abstract_name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt as _;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)?;
            socket.send_to_addr(state.as_bytes(), &address)
        } else {
            socket.send_to(state.as_bytes(), path.as_ref())
        }
    });
    if let Err(error) = result {
        tracing::warn!("cannot notify systemd ({state}): {error}");
    }
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`), halved as it recommends.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Ping the watchdog for as long as the agent's runtime is alive.
pub(crate) async fn watchdog() {
    let Some(every) = watchdog_interval() else {
        return;
    };
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        notify("WATCHDOG=1");
    }
}
