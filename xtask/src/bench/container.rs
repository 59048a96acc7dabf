//! The container each bench stage guards: its own unique name, removed when dropped.
use std::{
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::Context as _;

use crate::cmd;

pub(super) struct BenchContainer {
    pub name: String,
}

impl BenchContainer {
    /// `docker run -d` the test image under a unique name, with `files` copied in
    /// (host path, path in the container).
    pub(super) fn start(stage: &str, image: &str, files: &[(&Path, &str)]) -> anyhow::Result<Self> {
        let name = format!("crabpot-bench-{stage}-{}", std::process::id());
        let _ = cmd::succeeds("docker", &["rm", "-f", &name]);
        cmd::output("docker", &["run", "-d", "--name", &name, image])
            .with_context(|| format!("starting the bench container {name}"))?;
        let container = BenchContainer { name };
        for (from, to) in files {
            let from = from.to_string_lossy().into_owned();
            let to = format!("{}:{to}", container.name);
            cmd::output("docker", &["cp", &from, &to])
                .with_context(|| format!("copying {from} into the container"))?;
        }
        Ok(container)
    }

    pub(super) fn main_pid(&self) -> anyhow::Result<u32> {
        let pid = cmd::output("docker", &["inspect", "-f", "{{.State.Pid}}", &self.name])?;
        pid.trim()
            .parse()
            .with_context(|| format!("container {} has no main pid ({pid})", self.name))
    }

    /// `docker exec` a command, returning its standard output (it must succeed).
    pub(super) fn exec(&self, command: &[&str]) -> anyhow::Result<String> {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend_from_slice(command);
        cmd::output("docker", &args)
    }

    /// Start a `docker exec` without waiting for it.
    pub(super) fn spawn_exec(&self, command: &[&str]) -> anyhow::Result<Child> {
        Command::new("docker")
            .args(["exec", &self.name])
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting docker exec")
    }
}

impl BenchContainer {
    /// Start a `docker exec` whose standard output is collected.
    pub(super) fn spawn_exec_piped(&self, command: &[&str]) -> anyhow::Result<Child> {
        Command::new("docker")
            .args(["exec", &self.name])
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting docker exec")
    }
}

impl Drop for BenchContainer {
    fn drop(&mut self) {
        let _ = cmd::succeeds("docker", &["rm", "-f", &self.name]);
    }
}
