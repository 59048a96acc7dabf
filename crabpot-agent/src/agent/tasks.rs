//! The agent's long-running tasks: each one named, all stopped by one cancellation token,
//! joined with a deadline. A task that ends on its own while the agent runs is logged by
//! name (it was a listener or a watcher that gave up), not silently lost.
use std::{future::Future, time::Duration};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub(crate) struct Tasks {
    set: JoinSet<&'static str>,
    stop: CancellationToken,
}

impl Tasks {
    /// Tasks stopped by `stop` (or by a child of it).
    pub(crate) fn new(stop: CancellationToken) -> Self {
        Self {
            set: JoinSet::new(),
            stop,
        }
    }

    /// Run `task` until it ends or the agent stops, whichever is first. Cancellation takes
    /// effect at the task's next await point, never in the middle of a write.
    pub(crate) fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let stop = self.stop.clone();
        let _ = self.set.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = task => {
                    if !stop.is_cancelled() {
                        tracing::warn!("task `{name}` ended while the agent runs");
                    }
                }
            }
            name
        });
    }

    /// Cancel every task and wait for them, at most `deadline`; what is still running then
    /// is aborted and named.
    pub(crate) async fn stop(mut self, deadline: Duration) {
        self.stop.cancel();
        let until = tokio::time::Instant::now() + deadline;
        loop {
            match tokio::time::timeout_at(until, self.set.join_next()).await {
                Ok(None) => return,
                Ok(Some(Err(error))) if error.is_panic() => {
                    tracing::error!("a task panicked: {error}");
                }
                Ok(Some(_)) => {}
                Err(_) => break,
            }
        }
        tracing::warn!(
            "{} task(s) still running {deadline:?} after the stop: aborted",
            self.set.len()
        );
        self.set.abort_all();
        while self.set.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_cancels_every_task_and_returns() {
        let token = CancellationToken::new();
        let mut tasks = Tasks::new(token.clone());
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        tasks.spawn("forever", async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        tasks.spawn("done", async {});
        tasks.stop(Duration::from_secs(5)).await;
        assert!(token.is_cancelled());
        // The cancelled task dropped what it held.
        assert!(rx.recv().await.is_none());
    }
}
