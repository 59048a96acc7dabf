//! Every signal the agent answers, handled in one place: SIGTERM and SIGINT stop it (the
//! cancellation token every task follows), SIGHUP asks for a configuration reload.
use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;

pub(crate) struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Install the handlers before any task runs, so no signal meets the default action.
    pub(crate) fn install() -> anyhow::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hangup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    /// Until a stop signal: then cancel `stop`. Each SIGHUP is passed to `reload`.
    pub(crate) async fn run(mut self, stop: CancellationToken, reload: mpsc::Sender<()>) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                _ = self.interrupt.recv() => { tracing::info!("SIGINT: stopping"); break; }
                Some(()) = self.hangup.recv() => {
                    // A reload already queued covers this one too.
                    let _ = reload.try_send(());
                }
                () = stop.cancelled() => return,
            }
        }
        stop.cancel();
    }
}
