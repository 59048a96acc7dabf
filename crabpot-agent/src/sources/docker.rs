//! Connecting to the Docker engine with a clear message when it is not there.
use std::time::Duration;

use bollard::Docker;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker engine at {endpoint}: {source}. Is dockerd running? Start it \
         (`systemctl start docker`, or `dockerd &` without systemd) or point DOCKER_HOST at it"
    )]
    Unreachable {
        endpoint: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the Docker engine at {0} did not answer within 10 s")]
    Timeout(String),
}

fn endpoint() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// Connect, agree on an API version the daemon speaks, and check it answers.
pub(crate) async fn connect() -> Result<Docker, DockerError> {
    let unreachable = |source| DockerError::Unreachable {
        endpoint: endpoint(),
        source,
    };
    let docker = Docker::connect_with_local_defaults().map_err(unreachable)?;
    let attempt = async {
        let docker = docker.negotiate_version().await?;
        docker.ping().await?;
        Ok::<_, bollard::errors::Error>(docker)
    };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(result) => result.map_err(unreachable),
        Err(_) => Err(DockerError::Timeout(endpoint())),
    }
}

/// Whether a bollard error is Docker's "no such container".
pub(crate) fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
