//! Learn mode's session: set up before the tasks start (the policy in audit, no auto-pause),
//! a timer that ends the run when the time is up, and the proposed file written after the
//! last alert was recorded (also when a signal cut the run short).
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use crate::{
    cli::AgentArgs,
    policy::learn::{CarriedOver, Recorder},
    settings::Settings,
    sinks::learn_file::{self, Session},
};

pub(super) struct Learning {
    pub recorder: Arc<Recorder>,
    duration: Duration,
    output: PathBuf,
    carried: CarriedOver,
    started: String,
    started_at: Instant,
}

impl Learning {
    /// The session `--learn` asks for, with what of the configured policy it carries over
    /// (taken before learn mode changes it).
    pub(super) fn new(args: &AgentArgs, settings: &Settings) -> Option<Self> {
        let duration = args.learn?;
        let output = args.learn_output.clone().unwrap_or_else(|| {
            settings
                .monitor
                .alerts_log
                .with_file_name("monitor.learned.yml")
        });
        let carried = CarriedOver {
            container: settings.monitor.container.clone(),
            profiles: settings.profiles.clone(),
            auto_pause: settings.monitor.auto_pause,
            policy: settings.policy.clone(),
            exceptions: settings.exceptions.iter().map(|e| e.as_written()).collect(),
            file: settings.file.clone(),
        };
        Some(Learning {
            recorder: Arc::default(),
            duration,
            output,
            carried,
            started: crate::model::alert::now_rfc3339(),
            started_at: Instant::now(),
        })
    }

    /// Say loudly that nothing is enforced, until when, and where the result goes.
    pub(super) fn announce(&self) {
        let until = chrono::Local::now()
            + chrono::Duration::from_std(self.duration).unwrap_or(chrono::Duration::zero());
        tracing::warn!(
            "LEARN MODE until {}: every rule in audit (nothing blocked, killed, stopped or \
             frozen; no trust cost); what would be raised is recorded and written as INFO; \
             the proposed policy goes to {}",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            self.output.display()
        );
    }

    /// End the run when the time is up (a signal may end it first).
    pub(super) fn start_timer(&self, stop: &CancellationToken) {
        let (stop, duration) = (stop.clone(), self.duration);
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(duration) => {
                    tracing::info!("learn mode: the time is up, stopping to write the policy");
                    stop.cancel();
                }
                () = stop.cancelled() => {}
            }
        });
    }

    /// Write the proposed policy (after the last alert reached the recorder).
    pub(super) fn finish(self) -> anyhow::Result<()> {
        let elapsed = self.started_at.elapsed();
        // The timer fires at the duration; anything clearly earlier was a signal.
        let cut_short = elapsed + Duration::from_secs(1) < self.duration;
        let learned = self.recorder.snapshot();
        let session = Session {
            duration: self.duration,
            started: self.started,
            ended: crate::model::alert::now_rfc3339(),
            cut_short,
        };
        let text = learn_file::render(&learned, &self.carried, &session);
        learn_file::write_atomically(&self.output, &text)?;
        tracing::info!(
            "learn mode{}: proposed policy written to {} ({} destination(s), {} exception(s), \
             {} /proc read(s), {} not learnable); review it, then run with --config {}",
            if cut_short {
                " (cut short by a stop signal)"
            } else {
                ""
            },
            self.output.display(),
            learned.allow_entries().len(),
            learned.exceptions.len(),
            learned.proc_reads.len(),
            learned.unlearnable.len(),
            self.output.display()
        );
        Ok(())
    }
}
