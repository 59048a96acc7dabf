//! Pausing and resuming the container by hand (`crabpot pause` / `crabpot resume`). These
//! talk to Docker directly, so they work whether or not the agent runs; a running agent sees
//! the change through Docker's events.
use bollard::{Docker, errors::Error as DockerError};

use crate::sources::docker::{self, is_not_found};

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

pub async fn pause(name: &str) -> Result<Outcome, ControlError> {
    act(name, true).await
}

pub async fn resume(name: &str) -> Result<Outcome, ControlError> {
    act(name, false).await
}
