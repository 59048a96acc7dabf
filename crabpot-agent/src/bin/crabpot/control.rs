//! Commands that act on the guarded container: pause, resume, trust reset, break-glass shell.
use std::process::ExitCode;

use crabpot_agent::control::{self, Outcome};

use crate::{
    agent_api::{RequestError, control_request, control_request_with, operator_uid},
    args::AgentAccess,
};

/// `crabpot pause`: through Docker directly, so it works with no agent running.
pub(crate) async fn pause(container: &str) -> ExitCode {
    report(container, "paused", control::pause(container).await)
}

fn report(
    container: &str,
    verb: &str,
    outcome: Result<Outcome, control::ControlError>,
) -> ExitCode {
    match outcome {
        Ok(Outcome::Done) => {
            println!("container `{container}` {verb}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::AlreadyInState) => {
            println!("container `{container}` was already {verb}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("crabpot: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Resume through the running agent (unfreeze + audited trust reset); with no agent
/// answering, through Docker directly.
pub(crate) async fn resume(named: Option<&str>, access: &AgentAccess) -> ExitCode {
    let container = named.unwrap_or("crabpot");
    // Docker names are [a-zA-Z0-9][a-zA-Z0-9_.-]*: nothing to escape in the query.
    if !container
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        eprintln!("crabpot: `{container}` is not a container name");
        return ExitCode::FAILURE;
    }
    let path = match named {
        Some(name) => format!("/api/resume?container={name}"),
        None => "/api/resume".to_string(),
    };
    match control_request(access, &path) {
        Ok(text) => {
            print!("crabpot: container resumed; {text}");
            ExitCode::SUCCESS
        }
        Err(RequestError::NotRunning(why)) => {
            eprintln!("crabpot: {why}; asking Docker directly (no trust reset without the agent)");
            report(container, "resumed", control::resume(container).await)
        }
        Err(error) => {
            eprintln!("crabpot: {error}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn trust_reset(agent: &AgentAccess) -> ExitCode {
    match control_request(agent, "/api/trust/reset") {
        Ok(text) => {
            print!("crabpot: {text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("crabpot: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Announce the exec to the agent, then run `docker exec` with the exact argv announced.
pub(crate) fn shell(
    container: Option<String>,
    access: &AgentAccess,
    command: Vec<String>,
) -> ExitCode {
    let argv = if command.is_empty() {
        vec!["sh".to_string()]
    } else {
        command
    };
    let uid = operator_uid();
    let announce = crabpot_agent::ShellAnnounce {
        uid,
        argv: argv.clone(),
        container,
    };
    let grant = serde_json::to_string(&announce)
        .map_err(|e| RequestError::Other(e.to_string()))
        .and_then(|body| control_request_with(access, "/api/shell/announce", &body))
        .and_then(|text| {
            serde_json::from_str::<crabpot_agent::ShellGrant>(&text)
                .map_err(|e| RequestError::Other(format!("unexpected answer ({e}): {text}")))
        });
    let grant = match grant {
        Ok(grant) => grant,
        Err(error) => {
            eprintln!("crabpot: the agent did not accept the break-glass shell: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "crabpot: break-glass shell in `{}` announced as uid {uid} (audited)",
        grant.container
    );
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let mut docker = std::process::Command::new("docker");
    docker
        .arg("exec")
        .arg(if interactive { "-it" } else { "-i" })
        .arg(&grant.container_id)
        .args(&argv);
    match docker.status() {
        Ok(status) => status
            .code()
            .map_or(ExitCode::FAILURE, |c| ExitCode::from(c.clamp(0, 255) as u8)),
        Err(error) => {
            eprintln!("crabpot: cannot run docker exec: {error}");
            ExitCode::FAILURE
        }
    }
}
