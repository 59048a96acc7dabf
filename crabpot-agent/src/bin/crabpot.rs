//! `crabpot`: the operator's command — read alerts, pause and resume the container, reset
//! trust, audit its launch posture, launch it hardened (up, down, logs, restart), watch it
//! live (top). This file only dispatches; each command lives with its kind.
#[path = "crabpot/agent_api.rs"]
mod agent_api;
#[path = "crabpot/args.rs"]
mod args;
#[path = "crabpot/control.rs"]
mod control;
#[path = "crabpot/decisions.rs"]
mod decisions;
#[path = "crabpot/lifecycle.rs"]
mod lifecycle;
#[path = "crabpot/observe.rs"]
mod observe;
#[path = "crabpot/output.rs"]
mod output;
#[path = "crabpot/top.rs"]
mod top;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command, TrustAction};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Alerts(args) => observe::alerts(args),
        Command::Status {
            agent,
            instance,
            json,
        } => observe::status(&agent, instance.as_deref(), json),
        Command::Top { agent, interval_ms } => observe::top(&agent, interval_ms).await,
        Command::Pause { container } => control::pause(&container).await,
        Command::Resume { container, agent } => control::resume(container.as_deref(), &agent).await,
        Command::Shell {
            container,
            agent,
            command,
        } => control::shell(container, &agent, command),
        Command::Trust {
            action: TrustAction::Reset { agent },
        } => control::trust_reset(&agent),
        Command::Pending { agent, json } => decisions::pending(&agent, json),
        Command::Approve { id, always, agent } => decisions::approve(&agent, &id, always),
        Command::Deny {
            id,
            keep_frozen,
            agent,
        } => decisions::deny(&agent, &id, keep_frozen),
        Command::Install => lifecycle::install(),
        Command::Audit { container, json } => lifecycle::audit(&container, json).await,
        Command::Up(args) => lifecycle::up(args).await,
        Command::Down { name } => lifecycle::down(&name).await,
        Command::Logs { name, follow, tail } => lifecycle::logs(&name, follow, &tail).await,
        Command::Restart { name, wait } => lifecycle::restart(&name, wait).await,
        Command::Unload { container, all } => lifecycle::unload(&container, all),
    }
}
