//! Pausing and resuming the container by hand (`crabpot pause` / `crabpot resume`). These
//! talk to Docker directly, so they work whether or not the agent runs; a running agent sees
//! the change through Docker's events.
use bollard::{Docker, errors::Error as DockerError, query_parameters::InspectContainerOptions};

use crate::{
    actions::freezer::Freezer,
    sources::{
        cgroup::cgroup_of_pid,
        docker::{self, is_not_found},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Docker(#[from] docker::DockerError),
    #[error("container `{0}` not found (is it named differently? use --container NAME)")]
    NotFound(String),
    #[error("container `{name}`: {source}")]
    Request {
        name: String,
        #[source]
        source: DockerError,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    AlreadyInState,
}

async fn act(name: &str, pause: bool) -> Result<Outcome, ControlError> {
    let client: Docker = docker::connect().await?;
    let result = if pause {
        client.pause_container(name).await
    } else {
        client.unpause_container(name).await
    };
    if !pause && thaw_direct_freeze(&client, name).await {
        return Ok(Outcome::Done);
    }
    match result {
        Ok(()) => Ok(Outcome::Done),
        Err(error) if is_not_found(&error) => Err(ControlError::NotFound(name.to_string())),
        Err(DockerError::DockerResponseServerError {
            status_code: 409,
            message,
        }) if message.contains("paused") => Ok(Outcome::AlreadyInState),
        Err(source) => Err(ControlError::Request {
            name: name.to_string(),
            source,
        }),
    }
}

/// The agent freezes the cgroup itself before `docker pause`; when that pause failed, Docker
/// does not know the container is frozen. Thaw such a leftover; `true` when there was one.
async fn thaw_direct_freeze(client: &Docker, name: &str) -> bool {
    let Ok(inspect) = client
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
    else {
        return false;
    };
    let Some(pid) = inspect
        .state
        .and_then(|s| s.pid)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0)
    else {
        return false;
    };
    let Ok(cgroup) = cgroup_of_pid(pid) else {
        return false;
    };
    Freezer::thaw_leftover(pid, &cgroup.directory).unwrap_or(false)
}

pub async fn pause(name: &str) -> Result<Outcome, ControlError> {
    act(name, true).await
}

pub async fn resume(name: &str) -> Result<Outcome, ControlError> {
    act(name, false).await
}
