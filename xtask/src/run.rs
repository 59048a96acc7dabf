//! `cargo xtask run`: the newcomer's one command to see the agent guard a container.
use std::{os::unix::process::CommandExt as _, process::Command};

use anyhow::Context as _;

use crate::{cmd, setup};

const CONTAINER: &str = "crabpot";

pub(crate) fn run(agent_args: &[String]) -> anyhow::Result<()> {
    let image = setup::setup()?;
    let agent = setup::build_release_agent()?;
    ensure_container(&image)?;
    eprintln!("xtask: starting {} --openclaw", agent.display());
    let error = Command::new(&agent)
        .arg("--openclaw")
        .args(agent_args)
        .exec();
    Err(error).with_context(|| format!("starting {}", agent.display()))
}

/// Create the demo container from the local image when no `crabpot` container exists; start
/// it when it exists but is stopped. An existing container is never replaced.
fn ensure_container(image: &str) -> anyhow::Result<()> {
    let state = cmd::output(
        "docker",
        &[
            "ps",
            "-a",
            "--filter",
            "name=^crabpot$",
            "--format",
            "{{.State}}",
        ],
    )?;
    match state.trim() {
        "" => {
            eprintln!("xtask: creating the demo container `{CONTAINER}` from {image}");
            cmd::run(
                "docker",
                &[
                    "run",
                    "-d",
                    "--name",
                    CONTAINER,
                    "--init",
                    "-p",
                    "127.0.0.1:18789:18789",
                    image,
                ],
            )
        }
        "running" | "paused" => Ok(()),
        _ => cmd::run("docker", &["start", CONTAINER]),
    }
}
